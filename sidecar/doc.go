// Package sidecar is the data plane: it authenticates relay keys, picks an upstream account,
// relays Messages API requests with unbuffered streaming and records token usage.
package sidecar
