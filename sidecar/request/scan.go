// Package request reads what the relay needs from a Messages request body (the model,
// metadata.user_id, the first message, max_tokens) without decoding it, and splices a
// mapped model name into it.
package request

import (
	"encoding/json"
	"errors"
	"math"
	"strconv"

	"github.com/claude-relay/claude-relay/internal/jsonscan"
)

// Fields are what the relay needs from a Messages request body.
type Fields struct {
	// Model is the top-level "model" string; it is set only when ModelStatus is
	// ModelFound.
	Model string
	// ModelStatus says whether the body names one model, and if not, why (the zero
	// value is ModelMissing).
	ModelStatus ModelStatus
	// ModelStart and ModelEnd delimit the model's JSON string token in the body, quotes
	// included (body[ModelStart:ModelEnd]); both are 0 unless ModelStatus is ModelFound.
	ModelStart, ModelEnd int
	// UserID is "metadata.user_id".
	UserID string
	// FirstMessage is the raw JSON of messages[0] (a sub-slice of the body, not a copy).
	FirstMessage []byte
	// MaxTokens is the top-level "max_tokens" rounded up, at most MaxTokensCap; when more
	// than one key names it (case ignored, as for the model) the largest. It bounds the
	// output a reservation counts on (sidecar/limits); 0 when absent, negative or not a
	// number (the upstream refuses such a Messages request before it costs anything).
	MaxTokens int64
}

// MaxTokensCap bounds Fields.MaxTokens: any request asking for more is worth refusing by
// every budget, and the bound keeps worst-case arithmetic far from overflow.
const MaxTokensCap = 1 << 40

// ModelStatus is what Scan concluded about a body's model.
type ModelStatus uint8

// The model rules, model_map and parking by model family act on the model Scan finds, so
// it must be the one the upstream will act on, whatever parser the upstream uses. Scan
// therefore reads keys as encoding/json matches them to a struct field (escapes decoded,
// case ignored: what a Go upstream sees), and a body in which two keys could name the
// model is not guessed at: exact-match parsers take one of them, case-insensitive ones the
// last, so it is refused.
const (
	// ModelMissing: the body is a JSON object with no key naming the model (or empty).
	ModelMissing ModelStatus = iota
	// ModelFound: exactly one top-level key names the model, and its value is a string.
	ModelFound
	// ModelDuplicated: more than one top-level key names the model ("model" twice, or
	// "model" and "Model", or "mod\u0065l").
	ModelDuplicated
	// ModelNotString: the key naming the model holds something other than a string.
	ModelNotString
	// BodyMalformed: the body is not a JSON object the scanner could walk to its end.
	BodyMalformed
)

// Problem says, for the client, why a body's model cannot be determined; "" for
// ModelFound.
func (m ModelStatus) Problem() string {
	switch m {
	case ModelFound:
		return ""
	case ModelMissing:
		return `the request body has no "model": name the model to use`
	case ModelDuplicated:
		return `the request body names "model" more than once (keys are compared with escapes decoded and case ignored, as JSON decoders may compare them); send it once`
	case ModelNotString:
		return `"model" must be a string, such as "claude-sonnet-4-5"`
	default:
		return "the request body is not a well-formed JSON object"
	}
}

// Scan reads "model", "metadata.user_id" and the raw first element of "messages" from a
// JSON object without decoding the rest: it walks the top-level keys and skips every other
// value byte-wise, so a 10 MB body of messages costs one pass and no allocation beyond the
// two strings. It walks the whole top level, so that every key that could name the model
// is seen (see ModelStatus); values it skips are not validated, which the upstream does.
func Scan(body []byte) Fields {
	var f Fields
	if len(body) == 0 {
		return f
	}
	seen := false
	s := jsonscan.New(body)
	ok := s.Object(func(key []byte) bool {
		isModel, ok := jsonscan.MatchKey(key, "model")
		switch {
		case !ok:
			f.ModelStatus = BodyMalformed
			return false
		case isModel:
			return scanModel(s, &f, &seen)
		case len(key) == len("max_tokens") && isMaxTokens(key):
			return scanMaxTokens(s, &f)
		case string(key) == "metadata": // no allocation: the compiler compares in place
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
		case string(key) == "messages":
			return firstMessage(s, &f)
		}
		return s.Skip()
	})
	if f.ModelStatus == ModelDuplicated || f.ModelStatus == ModelNotString {
		f.Model, f.ModelStart, f.ModelEnd = "", 0, 0
		return f
	}
	if s.WS(); !ok || s.Pos() != len(body) {
		return Fields{ModelStatus: BodyMalformed}
	}
	return f
}

// scanModel reads the value of a key that names the model; it stops the walk when the
// body cannot name one model.
func scanModel(s *jsonscan.Scanner, f *Fields, seen *bool) bool {
	if *seen {
		f.ModelStatus = ModelDuplicated
		return false
	}
	*seen = true
	if s.Peek() != '"' {
		f.ModelStatus = ModelNotString
		return false
	}
	start := s.Pos()
	v, ok := s.String()
	if !ok {
		f.ModelStatus = BodyMalformed
		return false
	}
	f.Model, f.ModelStatus, f.ModelStart, f.ModelEnd = v, ModelFound, start, s.Pos()
	return true
}

// isMaxTokens reports whether a key names "max_tokens" as a case-insensitive decoder sees
// it (only plain keys: an escaped one is no cheaper to fake than to send plainly, and a
// reservation errs on the large side either way by taking the largest).
func isMaxTokens(key []byte) bool {
	m, _ := jsonscan.MatchKey(key, "max_tokens")
	return m
}

// scanMaxTokens reads a max_tokens value: a number is rounded up and capped; anything else
// is skipped (and leaves MaxTokens as it was).
func scanMaxTokens(s *jsonscan.Scanner, f *Fields) bool {
	raw, ok := s.Value()
	if !ok {
		return false
	}
	if len(raw) == 0 || (raw[0] != '-' && (raw[0] < '0' || raw[0] > '9')) {
		return true
	}
	v, err := strconv.ParseFloat(string(raw), 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return true
	}
	n := int64(MaxTokensCap)
	if v < MaxTokensCap {
		n = int64(max(math.Ceil(v), 0))
	}
	f.MaxTokens = max(f.MaxTokens, n)
	return true
}

// ReplaceModel returns body with the model string Scan found (f) replaced by model, as a new
// slice; body itself is not modified. Everything else stays byte for byte. When f holds no
// model span it returns body unchanged.
func ReplaceModel(body []byte, f Fields, model string) []byte {
	if f.ModelStatus != ModelFound || f.ModelEnd <= f.ModelStart || f.ModelEnd > len(body) {
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
