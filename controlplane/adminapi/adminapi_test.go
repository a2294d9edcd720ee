package adminapi

import "testing"

func TestETagRoundTripsAndParseETagRefusesOtherTags(t *testing.T) {
	for _, rev := range []int64{1, 7, 1234567890123} {
		got, ok := ParseETag(ETag(rev))
		if !ok || got != rev {
			t.Errorf("ParseETag(%s): got (%d, %t), want (%d, true)", ETag(rev), got, ok, rev)
		}
	}
	if got, ok := ParseETag(" 12 "); !ok || got != 12 {
		t.Errorf(`ParseETag(" 12 "): got (%d, %t), want (12, true)`, got, ok)
	}
	for _, bad := range []string{"", `""`, `"0"`, `"-1"`, `"+3"`, `W/"3"`, `"3", "4"`, `"x"`, `"3`, "*", `"99999999999999999999"`} {
		if got, ok := ParseETag(bad); ok {
			t.Errorf("ParseETag(%q): got (%d, true), want refused", bad, got)
		}
	}
}
