// Command auth-apikey is the default auth provider plugin: relay keys checked against Redis.
// The host starts it and sends the Redis address, credentials and pepper through Configure.
package main

import (
	"github.com/claude-relay/claude-relay/plugins/auth-apikey/apikey"
	"github.com/claude-relay/claude-relay/plugins/contract"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	contract.ServeAuth(apikey.ProviderName, apikey.New(version))
}
