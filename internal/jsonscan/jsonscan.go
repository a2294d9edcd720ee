// Package jsonscan reads a few fields of a JSON document without decoding the rest.
//
// The relay looks at the model and metadata of request bodies and at the usage of response
// bodies that can be megabytes long. A Scanner walks object keys and skips every other value
// byte-wise, so one pass finds what is needed with no allocation beyond the values returned.
// It does not validate: a malformed document yields what was found before the fault, and
// the upstream (or the client) is the judge of validity.
package jsonscan

import (
	"bytes"
	"encoding/json"
	"strings"
)

// Scanner is a cursor over a JSON document.
type Scanner struct {
	b []byte
	i int
}

// New returns a Scanner at the start of b.
func New(b []byte) *Scanner { return &Scanner{b: b} }

// Pos is the cursor's offset in the document.
func (s *Scanner) Pos() int { return s.i }

// SetPos moves the cursor to offset i (clamped to the document).
func (s *Scanner) SetPos(i int) { s.i = min(max(i, 0), len(s.b)) }

// Bytes returns the document.
func (s *Scanner) Bytes() []byte { return s.b }

// Peek returns the byte at the cursor, or 0 at the end.
func (s *Scanner) Peek() byte {
	if s.i >= len(s.b) {
		return 0
	}
	return s.b[s.i]
}

// WS skips whitespace.
func (s *Scanner) WS() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// Eat consumes c if it is at the cursor.
func (s *Scanner) Eat(c byte) bool {
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// RawString consumes the string at the cursor and returns the bytes between its quotes,
// escapes left as they are.
func (s *Scanner) RawString() ([]byte, bool) {
	if !s.Eat('"') {
		return nil, false
	}
	start := s.i
	for {
		j := bytes.IndexAny(s.b[s.i:], "\"\\")
		if j < 0 {
			s.i = len(s.b)
			return nil, false
		}
		s.i += j
		if s.b[s.i] == '\\' {
			s.i += 2
			if s.i > len(s.b) {
				s.i = len(s.b)
				return nil, false
			}
			continue
		}
		raw := s.b[start:s.i]
		s.i++
		return raw, true
	}
}

// String consumes and decodes the string at the cursor, exactly as encoding/json does
// (escapes decoded, invalid UTF-8 replaced by U+FFFD). It reports false when the value
// there is not a string, consuming nothing, or not a well-formed one (a bad escape, a raw
// control character).
func (s *Scanner) String() (string, bool) {
	if s.Peek() != '"' {
		return "", false
	}
	start := s.i
	raw, ok := s.RawString()
	if !ok {
		return "", false
	}
	if plain(raw) {
		return string(raw), true
	}
	var v string
	if json.Unmarshal(s.b[start:s.i], &v) != nil {
		return "", false
	}
	return v, true
}

// plain reports whether the raw bytes of a string are its value: printable ASCII with no
// escape. Anything else goes through encoding/json.
func plain(raw []byte) bool {
	for _, c := range raw {
		if c < 0x20 || c >= 0x7f || c == '\\' {
			return false
		}
	}
	return true
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// MatchKey reports whether an object key, as Object passes it (the raw bytes between its
// quotes), names the field name the way encoding/json matches a struct field's name: after
// decoding escapes, exactly or case-insensitively (Unicode simple folding, so "MODEL",
// "Model" and "mod\u0065l" all name "model"). ok is false when the key is not a
// well-formed JSON string, which makes its document malformed.
func MatchKey(raw []byte, name string) (match, ok bool) {
	if plain(raw) {
		if len(raw) != len(name) {
			return false, true
		}
		for i, c := range raw {
			if lower(c) != lower(name[i]) {
				return false, true
			}
		}
		return true, true
	}
	q := make([]byte, 0, len(raw)+2) // a rare key: escaped or not ASCII
	q = append(append(append(q, '"'), raw...), '"')
	var key string
	if json.Unmarshal(q, &key) != nil {
		return false, false
	}
	return strings.EqualFold(key, name), true
}

// Skip consumes the value at the cursor: a string, an object or array (brackets counted
// outside strings), or a literal.
func (s *Scanner) Skip() bool {
	if s.i >= len(s.b) {
		return false
	}
	switch s.b[s.i] {
	case '"':
		_, ok := s.RawString()
		return ok
	case '{', '[':
		depth := 0
		for s.i < len(s.b) {
			j := bytes.IndexAny(s.b[s.i:], "\"{}[]")
			if j < 0 {
				s.i = len(s.b)
				return false
			}
			s.i += j
			switch s.b[s.i] {
			case '"':
				if _, ok := s.RawString(); !ok {
					return false
				}
				continue
			case '{', '[':
				depth++
			default:
				depth--
			}
			s.i++
			if depth == 0 {
				return true
			}
		}
		return false
	default:
		for s.i < len(s.b) {
			switch s.b[s.i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return true
			}
			s.i++
		}
		return true
	}
}

// Value consumes the value at the cursor and returns its raw bytes (a sub-slice).
func (s *Scanner) Value() ([]byte, bool) {
	s.WS()
	start := s.i
	if !s.Skip() {
		return nil, false
	}
	return s.b[start:s.i], true
}

// Object walks the object at the cursor. For each key it places the cursor on the value and
// calls fn, which must consume that value (Skip, String, Value or a nested Object) and
// return true to go on. Object reports whether it reached the closing brace: false when the
// value at the cursor is not an object, when the object is malformed, or when fn stopped.
func (s *Scanner) Object(fn func(key []byte) bool) bool {
	s.WS()
	if !s.Eat('{') {
		return false
	}
	for {
		s.WS()
		if s.Eat('}') {
			return true
		}
		key, ok := s.RawString()
		if !ok {
			return false
		}
		s.WS()
		if !s.Eat(':') {
			return false
		}
		s.WS()
		if !fn(key) {
			return false
		}
		s.WS()
		if !s.Eat(',') {
			s.WS()
			return s.Eat('}')
		}
	}
}

// Array walks the array at the cursor. For each element it places the cursor on it and
// calls fn, which must consume it and return true to go on. Array reports whether it
// reached the closing bracket.
func (s *Scanner) Array(fn func() bool) bool {
	s.WS()
	if !s.Eat('[') {
		return false
	}
	s.WS()
	if s.Eat(']') {
		return true
	}
	for {
		s.WS()
		if !fn() {
			return false
		}
		s.WS()
		if s.Eat(']') {
			return true
		}
		if !s.Eat(',') {
			return false
		}
	}
}
