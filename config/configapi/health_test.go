package configapi

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestHealthSurvivesTheHeaderRoundTrip(t *testing.T) {
	h := &Health{
		Status: "degraded", Version: "1.2.3", Uptime: 42, CheckedAt: time.Unix(1_700_000_000, 0).UTC(),
		Components: map[string]Component{
			"redis":       {Status: "error", Error: "dial tcp 10.0.0.7:6379: connect: connection refused\nsecond line ünïcode"},
			"plugin.auth": {Status: "ok", Details: json.RawMessage(`{"path":"/opt/claude-relay/plugins/auth-apikey","pid":123}`)},
		},
	}
	v, err := EncodeHealth(h)
	if err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(v, "\r\n \"{") {
		t.Fatalf("header value %q is not header-safe", v)
	}
	got, err := DecodeHealth(v)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(h, got); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
}

func TestOversizedHealthIsSentWithoutDetails(t *testing.T) {
	h := &Health{Status: "ok", Components: map[string]Component{
		"plugin.auth": {Status: "error", Error: strings.Repeat("e", 3*MaxErrorLen), Details: json.RawMessage(`"` + strings.Repeat("d", MaxHealthLen) + `"`)},
	}}
	v, err := EncodeHealth(h)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeHealth(v)
	if err != nil {
		t.Fatal(err)
	}
	c := got.Components["plugin.auth"]
	if c.Status != "error" || c.Details != nil || len(c.Error) != MaxErrorLen {
		t.Errorf("got status %q, %d bytes of details, %d of error; want the status, no details, the error cut to %d", c.Status, len(c.Details), len(c.Error), MaxErrorLen)
	}
}

func TestBadHealthHeaderIsRefused(t *testing.T) {
	for _, v := range []string{"not base64!", "bm90IGpzb24", strings.Repeat("A", MaxHealthLen*2)} {
		if h, err := DecodeHealth(v); err == nil {
			t.Errorf("DecodeHealth(%.20q…): got %+v, want an error", v, h)
		}
	}
	if h, err := DecodeHealth(""); h != nil || err != nil {
		t.Errorf(`DecodeHealth(""): got %v, %v, want no report`, h, err)
	}
}
