// Package deploytest checks the deployment files (systemd units, Docker image, compose, nginx and logrotate examples) against the binary they deploy.
package deploytest
