package config

import "strings"

// knownClients maps the client names a policy's clients list may use to
// User-Agent globs. The globs name the product, never a version, so they keep
// matching new releases: Claude Code sends "claude-cli/<version> (…)", the
// official SDKs "Anthropic/<language> <version>".
var knownClients = map[string][]string{
	"claude_code":   {"claude-cli/*", "claude-code/*"},
	"anthropic_sdk": {"Anthropic/*"},
}

// KnownClients returns the client names a policy may list, with their
// User-Agent globs.
func KnownClients() map[string][]string {
	out := make(map[string][]string, len(knownClients))
	for k, v := range knownClients {
		out[k] = append([]string(nil), v...)
	}
	return out
}

// AllowsClient reports whether the policy lets a client with this
// User-Agent in. Each entry of Clients is a known client name or a
// User-Agent glob; the comparison ignores case. A nil list allows any client.
func (p *Policy) AllowsClient(userAgent string) bool {
	if p == nil || p.Clients == nil {
		return true
	}
	ua := strings.ToLower(strings.TrimSpace(userAgent))
	for _, c := range p.Clients {
		globs, ok := knownClients[c]
		if !ok {
			globs = []string{c}
		}
		for _, g := range globs {
			if MatchGlob(strings.ToLower(g), ua) {
				return true
			}
		}
	}
	return false
}
