package jsonscan_test

import (
	"strings"
	"testing"

	"github.com/claude-relay/claude-relay/internal/jsonscan"
)

func TestObjectVisitsOnlyTopLevelKeys(t *testing.T) {
	doc := `{"a": {"b": 1, "c": [1, {"d": "}"}]}, "e" : "x\"y", "f": true, "g": [ ] , "h": -1.5e3}`
	var keys []string
	s := jsonscan.New([]byte(doc))
	ok := s.Object(func(key []byte) bool {
		keys = append(keys, string(key))
		return s.Skip()
	})
	if !ok {
		t.Fatal("a well-formed object was not walked to its end")
	}
	if got, want := strings.Join(keys, ","), "a,e,f,g,h"; got != want {
		t.Fatalf("got keys %s, want %s", got, want)
	}
	if s.Pos() != len(doc) {
		t.Fatalf("cursor at %d, want %d (the end)", s.Pos(), len(doc))
	}
}

func TestStringDecodesEscapes(t *testing.T) {
	tests := []struct{ in, want string }{
		{`"plain"`, "plain"},
		{`"a\"b\\c\u00e9\n"`, "a\"b\\c\u00e9\n"},
	}
	for _, tt := range tests {
		got, ok := jsonscan.New([]byte(tt.in)).String()
		if !ok || got != tt.want {
			t.Errorf("String(%s): got %q %v, want %q", tt.in, got, ok, tt.want)
		}
	}
	if _, ok := jsonscan.New([]byte(`12`)).String(); ok {
		t.Error("String of a number: got ok, want false")
	}
}

func TestMalformedDocumentsStopWithoutPanic(t *testing.T) {
	for _, doc := range []string{``, `{`, `{"a"`, `{"a":`, `{"a":"unterminated`, `{"a":[1,2`, `{"a":1,`, `[1]`, `{"a":"\`, `nul`} {
		s := jsonscan.New([]byte(doc))
		if s.Object(func([]byte) bool { return s.Skip() }) {
			t.Errorf("Object(%q): got true, want false", doc)
		}
	}
}

func TestValueReturnsTheRawBytes(t *testing.T) {
	s := jsonscan.New([]byte(`{"x": {"y": [1, "]"]} , "z": 2}`))
	var raw string
	s.Object(func(key []byte) bool {
		if string(key) == "x" {
			v, ok := s.Value()
			raw = string(v)
			return ok
		}
		return s.Skip()
	})
	if want := `{"y": [1, "]"]}`; raw != want {
		t.Fatalf("got %s, want %s", raw, want)
	}
}

func FuzzObjectNeverPanics(f *testing.F) {
	for _, seed := range []string{`{"a":1}`, `{"model":"x","messages":[{"role":"user"}]}`, `{"a":"\u00`, `{{{`} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, doc string) {
		s := jsonscan.New([]byte(doc))
		s.Object(func([]byte) bool { _, _ = s.Value(); return true })
		if s.Pos() < 0 || s.Pos() > len(doc) {
			t.Fatalf("cursor %d outside the document of %d bytes", s.Pos(), len(doc))
		}
	})
}

func TestArrayVisitsEachElement(t *testing.T) {
	s := jsonscan.New([]byte(`[ 1, "a,]", {"b": [2]} , [] ]`))
	var got []string
	if !s.Array(func() bool {
		v, ok := s.Value()
		got = append(got, string(v))
		return ok
	}) {
		t.Fatal("a well-formed array was not walked to its end")
	}
	if want := `1|"a,]"|{"b": [2]}|[]`; strings.Join(got, "|") != want {
		t.Fatalf("got %s, want %s", strings.Join(got, "|"), want)
	}
	for _, doc := range []string{`[`, `[1`, `[1,`, `[1 2]`, `{}`} {
		s := jsonscan.New([]byte(doc))
		if s.Array(func() bool { return s.Skip() }) {
			t.Errorf("Array(%q): got true, want false", doc)
		}
	}
	if !jsonscan.New([]byte(`[]`)).Array(func() bool { t.Error("fn called for an empty array"); return true }) {
		t.Error("Array([]): got false, want true")
	}
}

func TestMatchKeyComparesAsEncodingJSONMatchesFields(t *testing.T) {
	tests := []struct {
		raw       string
		match, ok bool
	}{
		{`model`, true, true},
		{`Model`, true, true},
		{`MODEL`, true, true},
		{`mod\u0065l`, true, true},
		{`\u004dODEL`, true, true},
		{`models`, false, true},
		{`mode`, false, true},
		{`mod\u00e9l`, false, true},
		{"mod\xffl", false, true},
		{`mo\del`, false, false},
		{"mod\x01el", false, false},
	}
	for _, tt := range tests {
		match, ok := jsonscan.MatchKey([]byte(tt.raw), "model")
		if match != tt.match || ok != tt.ok {
			t.Errorf("MatchKey(%q): got %v %v, want %v %v", tt.raw, match, ok, tt.match, tt.ok)
		}
	}
	// Unicode folding as encoding/json does it: the Kelvin sign is a "k".
	if match, _ := jsonscan.MatchKey([]byte("\u212aey"), "key"); !match {
		t.Error(`MatchKey("\u212aey", "key"): got false, want true`)
	}
}

func TestStringIsDecodedAsEncodingJSONDecodesIt(t *testing.T) {
	tests := []struct {
		in   string
		want string
		ok   bool
	}{
		{"\"caf\xc3\xa9\"", "café", true},
		{"\"bad \xff byte\"", "bad \uFFFD byte", true},
		{"\"a\x01b\"", "", false},
		{`"\ud800"`, "\uFFFD", true},
		{`"\x"`, "", false},
	}
	for _, tt := range tests {
		got, ok := jsonscan.New([]byte(tt.in)).String()
		if got != tt.want || ok != tt.ok {
			t.Errorf("String(%q): got %q %v, want %q %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestMatchKeyOnAPlainKeyDoesNotAllocate(t *testing.T) {
	key := []byte("max_tokens")
	if n := testing.AllocsPerRun(100, func() { jsonscan.MatchKey(key, "model") }); n != 0 {
		t.Errorf("got %v allocations, want 0", n)
	}
}
