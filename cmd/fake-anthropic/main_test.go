package main

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestAPIKeyFlagAcceptsRepeatsAndCommas(t *testing.T) {
	var l stringList
	for _, v := range []string{"a,b", " c ", ",,d,"} {
		if err := l.Set(v); err != nil {
			t.Fatalf("set %q: %v", v, err)
		}
	}
	if diff := cmp.Diff([]string{"a", "b", "c", "d"}, []string(l)); diff != "" {
		t.Errorf("keys (-want +got):\n%s", diff)
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown log level", []string{"-log-level", "loud"}, "log-level"},
		{"zero deltas", []string{"-deltas", "0"}, "deltas"},
		{"unknown flag", []string{"-nope"}, "parse flags"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := run(tt.args)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error: got %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}
