package config

import (
	"fmt"
	"net/textproto"
	"slices"
	"strings"
)

// DefaultResponseHeaders returns the upstream response headers every client gets: what
// the Anthropic SDKs and Claude Code read (content type, the request id their errors quote,
// retry-after[-ms] and x-should-retry for their retries, the anthropic-ratelimit-* family,
// including Claude Code's anthropic-ratelimit-unified-*), and what a body needs to be read
// (length, encoding, caching). A final "*" matches any suffix. server.response_headers adds
// to them ("*" alone passes everything but neverResponseHeaders); every other upstream
// header is dropped.
func DefaultResponseHeaders() []string {
	return []string{
		"Content-Type", "Content-Length", "Content-Encoding", "Cache-Control",
		"Request-Id", "Retry-After", "Retry-After-Ms", "X-Should-Retry",
		"Anthropic-Ratelimit-*",
	}
}

// neverResponseHeaders are upstream response headers no configuration passes to clients:
// cookies (an upstream's session is the account's, not the client's), the account's
// organization id, hop-by-hop headers, and the relay's own headers, which only the relay
// sets.
var neverResponseHeaders = []string{
	"Set-Cookie", "Set-Cookie2", "Anthropic-Organization-Id",
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade",
	"X-Relay-Error", "X-Relay-Request-Id",
}

// headerFilter is a compiled response-header allowlist; names are canonical
// (textproto.CanonicalMIMEHeaderKey), as http.Header keys are.
type headerFilter struct {
	exact    map[string]bool // false: never passed
	prefixes []string
}

func newHeaderFilter(extra []string) headerFilter {
	f := headerFilter{exact: make(map[string]bool)}
	for _, h := range append(DefaultResponseHeaders(), extra...) {
		if prefix, ok := strings.CutSuffix(h, "*"); ok {
			f.prefixes = append(f.prefixes, textproto.CanonicalMIMEHeaderKey(prefix))
			continue
		}
		f.exact[textproto.CanonicalMIMEHeaderKey(h)] = true
	}
	for _, h := range neverResponseHeaders {
		f.exact[h] = false
	}
	return f
}

func (f headerFilter) pass(name string) bool {
	if ok, listed := f.exact[name]; listed {
		return ok
	}
	for _, p := range f.prefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// PassResponseHeader reports whether an upstream response header reaches the client.
// name must be canonical, as the keys of an http.Header from Go's client are.
func (rt *Runtime) PassResponseHeader(name string) bool { return rt.responseHeaders.pass(name) }

// checkResponseHeader reports why an entry of server.response_headers is not usable.
func checkResponseHeader(h string) error {
	name, _ := strings.CutSuffix(h, "*")
	if h != "*" && (!isToken(name) || strings.Contains(name, "*")) {
		return fmt.Errorf("%q is not a header name (letters, digits and -, optionally ending in * to match any suffix)", h)
	}
	if slices.Contains(neverResponseHeaders, textproto.CanonicalMIMEHeaderKey(name)) && !strings.HasSuffix(h, "*") {
		return fmt.Errorf("%q is never passed to clients (cookies, the account's organization id, hop-by-hop and the relay's own headers are always withheld)", h)
	}
	return nil
}
