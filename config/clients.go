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

// maxClientKind bounds the User-Agent family ClientKind returns.
const maxClientKind = 32

// ClientKind names the client a User-Agent belongs to: a known client name (claude_code,
// anthropic_sdk), else its product token lower-cased ("curl" for "curl/8.5.0"), at most
// 32 bytes; "unknown" when there is none. Never a version.
func ClientKind(userAgent string) string {
	ua := strings.ToLower(strings.TrimSpace(userAgent))
	for name, globs := range knownClients {
		for _, g := range globs {
			if MatchGlob(strings.ToLower(g), ua) {
				return name
			}
		}
	}
	if i := strings.IndexAny(ua, "/ ;("); i >= 0 {
		ua = ua[:i]
	}
	if len(ua) > maxClientKind {
		ua = ua[:maxClientKind]
	}
	if ua == "" {
		return "unknown"
	}
	return ua
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
