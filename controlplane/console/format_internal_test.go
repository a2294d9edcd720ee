package console

import (
	"testing"
	"time"
)

func TestNumbersAreFormattedForPeople(t *testing.T) {
	for _, c := range []struct {
		in   int64
		want string
	}{{0, "0"}, {999, "999"}, {1000, "1,000"}, {1234567, "1,234,567"}, {-45000, "-45,000"}} {
		if got := formatInt(c.in); got != c.want {
			t.Errorf("formatInt(%d): got %q, want %q", c.in, got, c.want)
		}
	}
	for _, c := range []struct {
		in   float64
		want string
	}{{0, "$0.00"}, {0.00042, "$0.0004"}, {0.5, "$0.50"}, {1234.505, "$1,234.51"}, {-2, "-$2.00"}} {
		if got := formatUSD(c.in); got != c.want {
			t.Errorf("formatUSD(%v): got %q, want %q", c.in, got, c.want)
		}
	}
}

func TestTimesAreRelative(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		at   time.Time
		want string
	}{
		{time.Time{}, "never"},
		{now.Add(-10 * time.Second), "just now"},
		{now.Add(-5 * time.Minute), "5 min ago"},
		{now.Add(3 * time.Hour), "in 3 h"},
		{now.Add(-72 * time.Hour), "3 days ago"},
	} {
		if got := relative(now, c.at); got != c.want {
			t.Errorf("relative(%v): got %q, want %q", c.at, got, c.want)
		}
	}
	if got := absolute(now); got != "2026-12-03 12:00 UTC" {
		t.Errorf("absolute: got %q", got)
	}
}

func TestLoginNeverSendsTheBrowserOffTheConsole(t *testing.T) {
	for in, want := range map[string]string{
		"/ui/keys?status=active": "/ui/keys?status=active",
		"":                       "/ui/",
		"https://evil.example/":  "/ui/",
		"//evil.example/ui/":     "/ui/",
		"/ui/\\evil":             "/ui/",
		"/admin/keys":            "/ui/",
	} {
		if got := localPath(in); got != want {
			t.Errorf("localPath(%q): got %q, want %q", in, got, want)
		}
	}
}

func TestRatesAreFormattedForPeople(t *testing.T) {
	for _, c := range []struct {
		n, of int64
		want  string
	}{{0, 0, "–"}, {3, 0, "–"}, {0, 500, "0 %"}, {12, 500, "2.4 %"}, {1, 3, "33.3 %"}, {1, 10_000, "< 0.1 %"},
		{9_999, 10_000, "> 99.9 %"}, {7, 7, "100 %"}, {5, 1_000, "0.5 %"}} {
		if got := formatRate(c.n, c.of); got != c.want {
			t.Errorf("formatRate(%d, %d): got %q, want %q", c.n, c.of, got, c.want)
		}
	}
}

func TestNameAccountsShowsNamesAndKeepsUnknownIDs(t *testing.T) {
	charts := []chart{{Legend: []legendItem{{Name: "a1"}, {Name: "gone"}}}, {Legend: []legendItem{{Name: "a1"}}}}
	nameAccounts(charts, map[string]string{"a1": "console-main"})
	if got := []string{charts[0].Legend[0].Name, charts[0].Legend[1].Name, charts[1].Legend[0].Name}; got[0] != "console-main" || got[1] != "gone" || got[2] != "console-main" {
		t.Errorf("legends %v, want [console-main gone console-main]", got)
	}
}
