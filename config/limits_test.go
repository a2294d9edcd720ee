package config

import (
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// tableNames returns the names of the table's limits, of those a key may override when
// overridable is set.
func tableNames(overridable bool) []string {
	var out []string
	for d := range Limits() {
		if !overridable || d.Overridable() {
			out = append(out, d.Name)
		}
	}
	slices.Sort(out)
	return out
}

// notLimits are number fields of a policy that are settings, not counted limits: the
// concurrency queue's length bound.
var notLimits = map[string]bool{"queue_max": true}

// numericFields returns the names (by tag) of a struct's plain number fields and pointers
// to them: its limits. Named number types (time.Duration) and notLimits are settings.
func numericFields(typ reflect.Type, tag string) []string {
	var out []string
	for f := range typ.Fields() {
		if name, _, _ := strings.Cut(f.Tag.Get(tag), ","); notLimits[name] {
			continue
		}
		t := f.Type
		if t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		switch t {
		case reflect.TypeFor[int](), reflect.TypeFor[int64](), reflect.TypeFor[float64]():
			name, _, _ := strings.Cut(f.Tag.Get(tag), ",")
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

func TestEveryLimitFieldIsInTheLimitTable(t *testing.T) {
	tests := []struct {
		name        string
		typ         reflect.Type
		tag         string
		overridable bool
	}{
		{"policyHCL (HCL)", reflect.TypeFor[policyHCL](), "hcl", false},
		{"Policy (snapshot)", reflect.TypeFor[Policy](), "json", false},
		{"KeyLimits (config, store and admin API)", reflect.TypeFor[KeyLimits](), "json", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tableNames(tt.overridable), numericFields(tt.typ, tt.tag)); diff != "" {
				t.Errorf("limit fields (-table +struct): a limit is in one and not the other:\n%s", diff)
			}
		})
	}
}

// setFields returns the names (by tag) of v's fields that are not zero.
func setFields(v any, tag string) []string {
	rv := reflect.ValueOf(v).Elem()
	var out []string
	for i := range rv.NumField() {
		if !rv.Field(i).IsZero() {
			name, _, _ := strings.Cut(rv.Type().Field(i).Tag.Get(tag), ",")
			out = append(out, name)
		}
	}
	return out
}

func TestLimitTableAccessorsReachTheFieldTheyName(t *testing.T) {
	for d := range Limits() {
		t.Run(d.Name, func(t *testing.T) {
			var p Policy
			var h policyHCL
			seven, sevenF := int64(7), 7.0
			if d.Float() {
				*d.polFloat(&p), *d.hclFloat(&h) = 7, &sevenF
			} else {
				*d.polInt(&p), *d.hclInt(&h) = 7, &seven
			}
			if got := setFields(&p, "json"); !slices.Equal(got, []string{d.Name}) {
				t.Errorf("Policy accessor sets %v, want [%s]", got, d.Name)
			}
			if got := setFields(&h, "hcl"); !slices.Equal(got, []string{d.Name}) {
				t.Errorf("policyHCL accessor sets %v, want [%s]", got, d.Name)
			}
			if !d.Overridable() {
				if d.Flag != "" {
					t.Errorf("a limit a key cannot override has CLI flag %q", d.Flag)
				}
				return
			}
			var k KeyLimits
			if err := d.SetOverride(&k, "7"); err != nil {
				t.Fatal(err)
			}
			if got := setFields(&k, "json"); !slices.Equal(got, []string{d.Name}) {
				t.Errorf("KeyLimits accessor sets %v, want [%s]", got, d.Name)
			}
			if got := d.OverrideString(&k); got != "7" {
				t.Errorf("OverrideString: got %q, want 7", got)
			}
			if d.Flag == "" || d.Usage == "" {
				t.Errorf("an overridable limit needs a CLI flag and its usage, got %q, %q", d.Flag, d.Usage)
			}
		})
	}
}

func TestLimitNamesAndFlagsAreUnique(t *testing.T) {
	names, flags := map[string]bool{}, map[string]bool{}
	for d := range Limits() {
		if names[d.Name] || (d.Flag != "" && flags[d.Flag]) {
			t.Errorf("%s (flag %q) is in the table twice", d.Name, d.Flag)
		}
		names[d.Name], flags[d.Flag] = true, true
		if got, ok := LimitByName(d.Name); !ok || got.Name != d.Name {
			t.Errorf("LimitByName(%q): got %q, %v", d.Name, got.Name, ok)
		}
	}
	if _, ok := LimitByName("models"); ok {
		t.Error("LimitByName(models): got a limit, want none (models is a rule, not a limit)")
	}
}

// everyLimit returns a policy with every limit set, each to a value of its own, and a rule
// of each other kind.
func everyLimit() Policy {
	p := Policy{Models: []string{"claude-*"}, DeniedModels: []string{"claude-3*"}, Clients: []string{"claude_code"},
		LimitMode: LimitModeReserve, LimitModes: map[string]string{"cost_total_usd": LimitModeCharge}}
	i := 0
	for d := range Limits() {
		i++
		if d.Float() {
			*d.polFloat(&p) = float64(i) + 0.25
		} else {
			*d.polInt(&p) = int64(i)
		}
	}
	return p
}

func TestKeyOverrideReplacesEachLimitAndNothingElse(t *testing.T) {
	base := everyLimit()
	for d := range Limits() {
		if !d.Overridable() {
			continue
		}
		t.Run(d.Name, func(t *testing.T) {
			var k KeyLimits
			if err := d.SetOverride(&k, "1000"); err != nil {
				t.Fatal(err)
			}
			want := everyLimit()
			if d.Float() {
				*d.polFloat(&want) = 1000
			} else {
				*d.polInt(&want) = 1000
			}
			if diff := cmp.Diff(&want, base.WithKeyLimits(k)); diff != "" {
				t.Errorf("policy with the override (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(everyLimit(), base); diff != "" {
				t.Errorf("the base policy changed (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("every override on no policy", func(t *testing.T) {
		var k KeyLimits
		var want Policy
		for d := range Limits() {
			if d.Overridable() {
				if err := d.SetOverride(&k, "3"); err != nil {
					t.Fatal(err)
				}
				if d.Float() {
					*d.polFloat(&want) = 3
				} else {
					*d.polInt(&want) = 3
				}
			}
		}
		if diff := cmp.Diff(&want, (*Policy)(nil).WithKeyLimits(k)); diff != "" {
			t.Errorf("policy (-want +got):\n%s", diff)
		}
	})
	t.Run("no override", func(t *testing.T) {
		if got := base.WithKeyLimits(KeyLimits{}); got != &base {
			t.Errorf("got a copy %p, want the base policy %p itself", got, &base)
		}
	})
}

func TestFullConfigFixtureSetsEveryLimit(t *testing.T) {
	snap, srcs, diags := Loader{LookupEnv: testEnv}.Load(filepath.Join("testdata", "valid", "full.hcl"))
	if diags.HasErrors() {
		t.Fatalf("got errors, want none:\n%s", srcs.FormatDiagnostics(diags))
	}
	team := snap.Policies["team"]
	for d := range Limits() {
		if d.Max(&team) <= 0 {
			t.Errorf("policy \"team\" of testdata/valid/full.hcl does not set %s: set every limit there", d.Name)
		}
	}
}

func TestEveryNegativeLimitIsRefusedAtItsAttribute(t *testing.T) {
	for d := range Limits() {
		t.Run(d.Name, func(t *testing.T) {
			src := fmt.Sprintf("policy \"p\" {\n  %s = -1\n}\n", d.Name)
			_, _, diags := LoadFiles(map[string][]byte{"a.hcl": []byte(src)})
			var found bool
			for _, dg := range diags {
				if dg.Summary == "Negative limit" && strings.HasPrefix(dg.Detail, d.Name+" ") &&
					dg.Subject != nil && dg.Subject.Start.Line == 2 {
					found = true
				}
			}
			if !found {
				t.Errorf("got %v, want a \"Negative limit\" error for %s at line 2", diags, d.Name)
			}
		})
	}
}

func TestSetOverrideRefusesWhatIsNotANumber(t *testing.T) {
	rpm, _ := LimitByName("requests_per_minute")
	cost, _ := LimitByName("cost_per_day_usd")
	conv, _ := LimitByName("conversation_requests_per_minute")
	var k KeyLimits
	tests := []struct {
		name string
		def  LimitDef
		in   string
		want string
	}{
		{"fraction for a count", rpm, "1.5", "must be an integer"},
		{"word for a cost", cost, "lots", "must be a number"},
		{"limit a key cannot override", conv, "1", "a key cannot override conversation_requests_per_minute"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.def.SetOverride(&k, tt.in)
			if err == nil || err.Error() != tt.want {
				t.Errorf("got %v, want %q", err, tt.want)
			}
		})
	}
	if !k.IsZero() {
		t.Errorf("refused values were stored: %+v", k)
	}
}

func TestBudgetLimitsAreTheKeysTokenAndCostLimits(t *testing.T) {
	want := []string{"tokens_per_minute", "tokens_per_day", "cost_per_day_usd", "cost_per_week_usd", "cost_per_month_usd", "cost_total_usd"}
	if diff := cmp.Diff(want, BudgetLimits()); diff != "" {
		t.Errorf("BudgetLimits (-want +got):\n%s", diff)
	}
}
