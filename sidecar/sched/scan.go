package sched

import (
	"encoding/json"

	"github.com/claude-relay/claude-relay/internal/jsonscan"
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
	s := jsonscan.New(body)
	s.Object(func(key []byte) bool {
		switch string(key) { // no allocation: the compiler compares in place
		case "model":
			start := s.Pos()
			if v, ok := s.String(); ok {
				f.Model, f.ModelStart, f.ModelEnd = v, start, s.Pos()
				return true
			}
		case "metadata":
			if s.Peek() == '{' {
				return s.Object(func(key []byte) bool {
					if string(key) == "user_id" {
						if v, ok := s.String(); ok {
							f.UserID = v
							return true
						}
					}
					return s.Skip()
				})
			}
		case "messages":
			return firstMessage(s, &f)
		}
		return s.Skip()
	})
	return f
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

// firstMessage records the raw first element of the messages array at the cursor and
// skips the rest of the array.
func firstMessage(s *jsonscan.Scanner, f *Fields) bool {
	if s.Peek() != '[' {
		return s.Skip()
	}
	open := s.Pos()
	s.Eat('[')
	s.WS()
	if p := s.Peek(); p != ']' && p != 0 {
		v, ok := s.Value()
		if !ok {
			return false
		}
		f.FirstMessage = v
	}
	s.SetPos(open)
	return s.Skip()
}
