package console

import (
	"errors"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/claude-relay/claude-relay/controlplane/adminapi"
	"github.com/claude-relay/claude-relay/controlplane/adminclient"
)

// notices are the messages a redirect after a change may name (?done=…): fixed texts, so a
// crafted link cannot put words in the console's mouth.
var notices = map[string]string{
	"logged-out":  "You are logged out.",
	"updated":     "Saved.",
	"enabled":     "The key is enabled.",
	"disabled":    "The key is disabled: requests with it are refused until it is enabled again.",
	"revoked":     "The key is revoked: requests with it are refused from now on.",
	"deleted":     "The key is deleted. It can be restored for a while.",
	"restored":    "The key is restored.",
	"added":       "The account is added.",
	"unparked":    "The park is cleared: the account is scheduled again.",
	"schedulable": "Saved: the account's scheduling changed.",
	"acc-deleted": "The account is deleted.",
}

// funcs are the template functions: numbers, money and times formatted for people.
var funcs = template.FuncMap{
	"num":     formatNumber,
	"usd":     formatUSD,
	"ago":     func(t time.Time) string { return relative(time.Now(), t) },
	"agoPtr":  func(t *time.Time) string { return relativePtr(time.Now(), t) },
	"abs":     absolute,
	"absPtr":  func(t *time.Time) string { return absolutePtr(t) },
	"join":    strings.Join,
	"iso":     func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"agoText": func(s string) string { return textTime(s, func(t time.Time) string { return relative(time.Now(), t) }) },
	"absText": func(s string) string {
		return textTime(s, func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") })
	},
	"ms":       formatMillis,
	"isoPtr":   func(t *time.Time) string { return isoPtr(t) },
	"seconds":  func(s int64) string { return (time.Duration(s) * time.Second).String() },
	"plural":   plural,
	"list":     func(s ...string) []string { return s },
	"pct":      func(f *float64) string { return formatPercent(f) },
	"capsText": capsText,
	"frac":     func(f *float64) string { return strconv.FormatFloat(*f, 'f', 3, 64) },
}

// formatPercent is a fraction as a whole percentage ("37%"); "" for none.
func formatPercent(f *float64) string {
	if f == nil {
		return ""
	}
	return strconv.FormatFloat(*f*100, 'f', 0, 64) + "%"
}

// capsText lists an account's caps in words.
func capsText(c *adminapi.AccountCaps) string {
	var parts []string
	if c.MaxConcurrency > 0 {
		parts = append(parts, formatInt(int64(c.MaxConcurrency))+" at once")
	}
	if c.TokensPer5h > 0 {
		parts = append(parts, formatInt(c.TokensPer5h)+" tokens / 5 h")
	}
	if c.CostPer5hUSD > 0 {
		parts = append(parts, formatUSD(c.CostPer5hUSD)+" / 5 h")
	}
	if c.TokensPerDay > 0 {
		parts = append(parts, formatInt(c.TokensPerDay)+" tokens / day")
	}
	if c.CostPerDayUSD > 0 {
		parts = append(parts, formatUSD(c.CostPerDayUSD)+" / day")
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// formatNumber is formatInt for the integer types templates hold.
func formatNumber(v any) string {
	switch n := v.(type) {
	case int:
		return formatInt(int64(n))
	case int64:
		return formatInt(n)
	case int32:
		return formatInt(int64(n))
	}
	return fmt.Sprint(v)
}

// formatInt writes n with thousands separators: 1234567 → "1,234,567".
func formatInt(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// formatUSD writes dollars for people: "$0.0042" below a cent, "$1,234.50" above.
func formatUSD(v float64) string {
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return "—"
	case v == 0:
		return "$0.00"
	case math.Abs(v) < 0.01:
		return fmt.Sprintf("$%.4f", v)
	}
	cents := int64(math.Round(v * 100))
	sign := ""
	if cents < 0 {
		sign, cents = "-", -cents
	}
	return fmt.Sprintf("%s$%s.%02d", sign, formatInt(cents/100), cents%100)
}

// relative says how long ago (or in how long) t is from now: "just now", "5 min ago",
// "in 3 h", "2 days ago".
func relative(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	future := d < 0
	if future {
		d = -d
	}
	var s string
	switch {
	case d < 45*time.Second:
		return "just now"
	case d < time.Hour:
		s = fmt.Sprintf("%d min", int(d.Round(time.Minute)/time.Minute))
	case d < 48*time.Hour:
		s = fmt.Sprintf("%d h", int(d.Round(time.Hour)/time.Hour))
	default:
		s = fmt.Sprintf("%d days", int(d/(24*time.Hour)))
	}
	if future {
		return "in " + s
	}
	return s + " ago"
}

func relativePtr(now time.Time, t *time.Time) string {
	if t == nil {
		return "never"
	}
	return relative(now, *t)
}

// absolute is t in UTC, to the minute.
func absolute(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04 UTC")
}

func absolutePtr(t *time.Time) string {
	if t == nil {
		return ""
	}
	return absolute(*t)
}

func isoPtr(t *time.Time) string {
	if t == nil {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// apiMessage is what the admin API said went wrong, or the error itself.
func apiMessage(err error) string {
	var ae *adminclient.APIError
	if errors.As(err, &ae) && ae.Message != "" {
		return ae.Message
	}
	return err.Error()
}

func capitalize(s string) string {
	r, n := utf8.DecodeRuneInString(s)
	if n == 0 {
		return s
	}
	return string(unicode.ToUpper(r)) + s[n:]
}

// statusOf is the HTTP status to answer a failed admin call with.
func statusOf(err error) int {
	var ae *adminclient.APIError
	if errors.As(err, &ae) && ae.StatusCode >= 400 {
		return ae.StatusCode
	}
	return http.StatusBadGateway
}

// fail shows the error page for a failed admin call (v carries the session's navigation).
func (c *Console) fail(w http.ResponseWriter, r *http.Request, v view, err error) {
	status := statusOf(err)
	if status >= 500 {
		c.log.Error("admin API call failed", "path", r.URL.Path, "error", err)
	}
	v.Error = capitalize(apiMessage(err)) + "."
	c.render(w, r, status, "error", v)
}

func asAPIError(err error, target **adminclient.APIError) bool { return errors.As(err, target) }

// plural is n with the noun in the number it takes: "1 key", "1,200 keys".
func plural(n any, one, many string) string {
	s := formatNumber(n)
	if s == "1" {
		return s + " " + one
	}
	return s + " " + many
}

// textTime formats an RFC 3339 time given as text with f; text that is not one stays as it is.
func textTime(s string, f func(time.Time) string) string {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return s
	}
	return f(t)
}

// formatMillis is a duration in milliseconds as people read it: "850 ms", "12.4 s".
func formatMillis(ms int64) string {
	if ms < 1000 {
		return formatInt(ms) + " ms"
	}
	return strconv.FormatFloat(float64(ms)/1000, 'f', 1, 64) + " s"
}
