//go:build !relaytest

package app

import "github.com/claude-relay/claude-relay/config"

// applyFunc is what the config client applies through. Test builds (-tags relaytest) add a
// hook that refuses chosen snapshots; release builds apply as they are.
func applyFunc(apply func(*config.Snapshot) error) func(*config.Snapshot) error { return apply }
