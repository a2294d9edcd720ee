// Package configdisttest checks configuration distribution end to end with real processes: a control plane and sidecars built from cmd/claude-relay, a real Redis and the fake upstream.
package configdisttest
