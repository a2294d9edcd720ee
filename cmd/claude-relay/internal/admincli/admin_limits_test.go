package admincli

import (
	"flag"
	"io"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/controlplane/adminapi"
)

func TestKeyLimitFlagsAreGeneratedFromTheLimitTable(t *testing.T) {
	fs := flag.NewFlagSet("keys create", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var m manageFlags
	keyRuleFlags(fs, &m)
	// The flag names are the CLI's contract: the table must keep producing exactly these.
	want := []string{"concurrency", "cost-day", "cost-month", "cost-total", "cost-week", "rpd", "rpm", "tpd", "tpm"}
	var got, args []string
	for d := range config.Limits() {
		if d.Flag == "" {
			continue
		}
		got = append(got, d.Flag)
		if fs.Lookup(d.Flag) == nil {
			t.Errorf("limit %s: flag -%s is not registered", d.Name, d.Flag)
		}
		args = append(args, "-"+d.Flag, "4")
	}
	slices.Sort(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("limit flags (-want +got):\n%s", diff)
	}
	if m.limits.api() != nil {
		t.Errorf("no flag given: got overrides %+v, want nil", m.limits.api())
	}
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	var wantLimits config.KeyLimits
	for d := range config.Limits() {
		if d.Overridable() {
			if err := d.SetOverride(&wantLimits, "4"); err != nil {
				t.Fatal(err)
			}
		}
	}
	if diff := cmp.Diff(&wantLimits, m.limits.api()); diff != "" {
		t.Errorf("overrides from every flag (-want +got):\n%s", diff)
	}
	if err := fs.Parse([]string{"-rpm", "1.5"}); err == nil {
		t.Error("-rpm 1.5: got no error, want \"must be an integer\"")
	}
}

func TestKeysCreateSendsEveryLimitFlag(t *testing.T) {
	e := loggedInCLI(t)
	args := []string{"keys", "create", "--json", "--name", "limited"}
	var want config.KeyLimits
	for d := range config.Limits() {
		if d.Overridable() {
			args = append(args, "--"+d.Flag, "6")
			if err := d.SetOverride(&want, "6"); err != nil {
				t.Fatal(err)
			}
		}
	}
	created := decodeJSON[adminapi.CreateKeyResponse](t, e.must("", args...))
	if diff := cmp.Diff(&want, created.Key.Limits); diff != "" {
		t.Errorf("created key's limits (-want +got):\n%s", diff)
	}
}
