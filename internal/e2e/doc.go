// Package e2e tests the built claude-relay binary as separate processes: signals, restarts, scale-out.
package e2e
