package config

import (
	"errors"
	"fmt"
	"strings"
)

// Request paths are checked before they are matched against routes, because the relay
// forwards them with an account's credential: a path that an upstream, or a gateway in
// front of it, would normalise differently from the relay could reach an endpoint outside
// every route (/v1/models/%2e%2e/files is the Files API once the dot segment is resolved).
// So a path must be plain: made of pathChars only, with no "." or ".." segment and no
// percent-encoded slash, in its raw or its decoded form. The characters cover every path
// of the Anthropic API (ids are letters, digits, "-" and "_"; model ids may carry "." "@"
// ":"); "%" (after decoding: a double encoding), "\", ";" and the rest of the
// sub-delimiters, which some servers treat as separators, are refused.

// pathChars marks the bytes a decoded request path may contain.
var pathChars = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "-._~:@/" {
		t[c] = true
	}
	return t
}()

// errDotSegment is CheckRequestPath's answer to a "." or ".." segment.
var errDotSegment = errors.New(`the request path contains a dot segment ("." or "..", possibly percent-encoded); send the path without it`)

// errEncodedSlash is CheckRequestPath's answer to a %2F in the raw path.
var errEncodedSlash = errors.New("the request path contains an encoded slash (%2F); send the path unencoded")

// CheckRequestPath reports why a request path must not be forwarded, or nil when it is
// plain. escaped is the path as the client sent it (url.URL.EscapedPath), decoded its
// percent-decoded form (url.URL.Path). The error's text is meant for the client.
func CheckRequestPath(escaped, decoded string) error {
	if !strings.HasPrefix(decoded, "/") {
		return fmt.Errorf("the request path %q does not start with \"/\"", decoded)
	}
	for i := 0; i < len(decoded); i++ {
		if !pathChars[decoded[i]] {
			return fmt.Errorf("the request path contains %q: the relay forwards only paths made of letters, digits and - . _ ~ : @ /", decoded[i:i+1])
		}
	}
	for rest := decoded[1:]; ; {
		seg, tail, more := strings.Cut(rest, "/")
		if seg == "." || seg == ".." {
			return errDotSegment
		}
		if !more {
			break
		}
		rest = tail
	}
	// Only a percent-encoded path can hide a slash: decoded has already passed.
	if escaped != decoded {
		for i := 0; i+2 < len(escaped); i++ {
			if escaped[i] == '%' && escaped[i+1] == '2' && (escaped[i+2] == 'f' || escaped[i+2] == 'F') {
				return errEncodedSlash
			}
		}
	}
	return nil
}
