package config

import "strings"

// MatchGlob reports whether s matches pattern, where "*" matches any run of
// characters (including none) and every other character matches itself. It
// does not allocate.
func MatchGlob(pattern, s string) bool {
	first, rest, found := strings.Cut(pattern, "*")
	if !found {
		return pattern == s
	}
	if !strings.HasPrefix(s, first) {
		return false
	}
	s = s[len(first):]
	for {
		var part string
		part, rest, found = strings.Cut(rest, "*")
		if !found {
			// part is the last literal: it must end s.
			return strings.HasSuffix(s, part)
		}
		i := strings.Index(s, part)
		if i < 0 {
			return false
		}
		s = s[i+len(part):]
	}
}
