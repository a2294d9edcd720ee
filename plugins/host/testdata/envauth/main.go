// Command envauth is a test-only auth plugin: it accepts the credential "env" and reports its
// whole environment as the principal's attributes, so tests can prove what a plugin sees.
package main

import (
	"context"
	"os"
	"strings"

	"github.com/claude-relay/claude-relay/plugins/contract"
)

type envAuth struct{}

func (envAuth) Configure(context.Context, map[string]string) error { return nil }

func (envAuth) Info(context.Context) (contract.Info, error) {
	return contract.Info{Name: "envauth", Version: "test"}, nil
}

func (envAuth) Authenticate(_ context.Context, req contract.AuthRequest) (contract.AuthResult, error) {
	if req.Credential != "env" {
		return contract.AuthResult{Refusal: "only the credential \"env\" is accepted"}, nil
	}
	attrs := map[string]string{}
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		attrs[k] = v
	}
	return contract.AuthResult{Principal: contract.Principal{KeyID: "env", Attributes: attrs}}, nil
}

func main() {
	contract.PluginLogger("envauth").Info("envauth plugin starting", "marker", "stderr-relogged")
	contract.ServeAuth("envauth", envAuth{})
}
