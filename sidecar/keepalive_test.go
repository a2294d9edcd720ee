package sidecar

import "testing"

func TestWantsStreamReadsOnlyATopLevelTrue(t *testing.T) {
	for _, c := range []struct {
		body string
		want bool
	}{
		{`{"model":"m","stream":true}`, true},
		{`{"stream" : true, "model":"m"}`, true},
		{`{"stream":false}`, false},
		{`{"stream":"true"}`, false},
		{`{"metadata":{"stream":true},"model":"m"}`, false},
		{`{"messages":[{"stream":true}]}`, false},
		{`{"Stream":true}`, false},
		{``, false},
		{`{"stream":tru`, false},
		{`[true]`, false},
	} {
		if got := wantsStream([]byte(c.body)); got != c.want {
			t.Errorf("wantsStream(%s) = %v, want %v", c.body, got, c.want)
		}
	}
}
