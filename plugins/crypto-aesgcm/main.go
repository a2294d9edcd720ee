// Command crypto-aesgcm is the default crypto provider plugin: AES-256-GCM envelopes with key
// ids, so keys can be rotated. The host starts it and sends its keys through Configure.
package main

import (
	"github.com/claude-relay/claude-relay/plugins/contract"
	"github.com/claude-relay/claude-relay/plugins/crypto-aesgcm/aesgcm"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	contract.ServeCrypto(aesgcm.ProviderName, aesgcm.NewProvider(version))
}
