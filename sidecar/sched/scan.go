package sched

import (
	"bytes"
	"encoding/json"
)

// Fields are what the relay needs from a Messages request body.
type Fields struct {
	// Model is the top-level "model" string.
	Model string
	// ModelStart and ModelEnd delimit the model's JSON string token in the body, quotes
	// included (body[ModelStart:ModelEnd]); both are 0 when no string model was found.
	ModelStart, ModelEnd int
	// UserID is "metadata.user_id".
	UserID string
	// FirstMessage is the raw JSON of messages[0] (a sub-slice of the body, not a copy).
	FirstMessage []byte
}

// Scan reads "model", "metadata.user_id" and the raw first element of "messages" from a
// JSON object without decoding the rest: it walks the top-level keys and skips every other
// value byte-wise, so a 10 MB body of messages costs one pass and no allocation beyond the
// two strings. A malformed body yields what was found before the fault; the upstream is the
// judge of validity.
func Scan(body []byte) Fields {
	var f Fields
	s := scanner{b: body}
	s.ws()
	if !s.eat('{') {
		return f
	}
	for {
		s.ws()
		if s.eat('}') {
			return f
		}
		key, ok := s.rawString()
		if !ok {
			return f
		}
		s.ws()
		if !s.eat(':') {
			return f
		}
		s.ws()
		switch string(key) { // no allocation: the compiler compares in place
		case "model":
			start := s.i
			if v, ok := s.stringValue(); ok {
				f.Model, f.ModelStart, f.ModelEnd = v, start, s.i
			} else if !s.skip() {
				return f
			}
		case "metadata":
			if !s.metadata(&f) {
				return f
			}
		case "messages":
			if !s.firstMessage(&f) {
				return f
			}
		default:
			if !s.skip() {
				return f
			}
		}
		s.ws()
		if !s.eat(',') {
			s.ws()
			s.eat('}')
			return f
		}
	}
}

// ReplaceModel returns body with the model string Scan found (f) replaced by model, as a new
// slice; body itself is not modified. Everything else stays byte for byte. When f holds no
// model span it returns body unchanged.
func ReplaceModel(body []byte, f Fields, model string) []byte {
	if f.ModelEnd <= f.ModelStart || f.ModelEnd > len(body) {
		return body
	}
	quoted, err := json.Marshal(model)
	if err != nil { // cannot happen for a string; keep the body rather than corrupt it
		return body
	}
	out := make([]byte, 0, len(body)-(f.ModelEnd-f.ModelStart)+len(quoted))
	out = append(out, body[:f.ModelStart]...)
	out = append(out, quoted...)
	return append(out, body[f.ModelEnd:]...)
}

type scanner struct {
	b []byte
	i int
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) eat(c byte) bool {
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// rawString returns the bytes between the quotes of the string at the cursor, escapes
// left as they are.
func (s *scanner) rawString() ([]byte, bool) {
	if !s.eat('"') {
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

// stringValue decodes the string at the cursor, if there is one.
func (s *scanner) stringValue() (string, bool) {
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return "", false
	}
	start := s.i
	raw, ok := s.rawString()
	if !ok {
		return "", false
	}
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw), true
	}
	var v string
	if json.Unmarshal(s.b[start:s.i], &v) != nil {
		return "", false
	}
	return v, true
}

// skip moves past the value at the cursor: a string, or an object or array (brackets
// counted outside strings), or a literal.
func (s *scanner) skip() bool {
	if s.i >= len(s.b) {
		return false
	}
	switch s.b[s.i] {
	case '"':
		_, ok := s.rawString()
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
				if _, ok := s.rawString(); !ok {
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

// metadata finds user_id in the metadata object at the cursor.
func (s *scanner) metadata(f *Fields) bool {
	if !s.eat('{') {
		return s.skip()
	}
	for {
		s.ws()
		if s.eat('}') {
			return true
		}
		key, ok := s.rawString()
		if !ok {
			return false
		}
		s.ws()
		if !s.eat(':') {
			return false
		}
		s.ws()
		if string(key) == "user_id" {
			if v, ok := s.stringValue(); ok {
				f.UserID = v
			} else if !s.skip() {
				return false
			}
		} else if !s.skip() {
			return false
		}
		s.ws()
		if !s.eat(',') {
			s.ws()
			return s.eat('}')
		}
	}
}

// firstMessage records the raw first element of the messages array at the cursor and
// skips the rest of the array.
func (s *scanner) firstMessage(f *Fields) bool {
	if s.i >= len(s.b) || s.b[s.i] != '[' {
		return s.skip()
	}
	open := s.i
	s.i++
	s.ws()
	if s.i < len(s.b) && s.b[s.i] != ']' {
		start := s.i
		if !s.skip() {
			return false
		}
		f.FirstMessage = s.b[start:s.i]
	}
	s.i = open
	return s.skip()
}
