package crs
