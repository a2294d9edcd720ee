//go:build relaytest

package app

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"

	"github.com/claude-relay/claude-relay/config"
)

// envTestRefuseConfig is a test hook, compiled only with -tags relaytest (the binary the
// distribution tests build): a sidecar refuses (NACKs) every snapshot whose JSON contains
// this value, so the tests can show a NACK end to end. Release builds do not have it.
const envTestRefuseConfig = "CLAUDE_RELAY_TEST_REFUSE_CONFIG"

// applyFunc is what the config client applies through, with the test hook when it is set.
func applyFunc(apply func(*config.Snapshot) error) func(*config.Snapshot) error {
	refuse := os.Getenv(envTestRefuseConfig)
	if refuse == "" {
		return apply
	}
	return func(s *config.Snapshot) error {
		if b, err := json.Marshal(s); err == nil && bytes.Contains(b, []byte(refuse)) {
			return fmt.Errorf("refused by the %s test hook", envTestRefuseConfig)
		}
		return apply(s)
	}
}
