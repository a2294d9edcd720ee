package crs

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
)

// maxSubjects is how many names a note lists before "and N more".
const maxSubjects = 5

// mappings is how CRS's objects land in claude-relay, printed with every plan.
var mappings = [][2]string{
	{"API key (sha256(key + ENCRYPTION_KEY))", "the same cr_ secret: found by its CRS hash until its first use, then re-indexed under claude-relay's HMAC"},
	{"name, description, tags, owner, enabled", "the same (tags and group names made valid index names)"},
	{"expiresAt / activation days or hours", "fixed expiry / expiry after first use"},
	{"restrictedModels (deny list)", "denied_models"},
	{"allowedClients claude_code", "clients = [claude_code]"},
	{"concurrencyLimit, totalCostLimit", "concurrency, cost_total_usd (seeded with what the key spent)"},
	{"dailyCostLimit, weeklyOpusCostLimit", "cost_per_day_usd, cost_per_week_usd (UTC days, weeks from Monday)"},
	{"rateLimitWindow + requests/tokenLimit/cost", "the closest stricter fixed UTC window (each key listed below)"},
	{"claudeAccountId / claudeConsoleAccountId", "a binding to the imported account, or to the group (group:<id>)"},
	{"Claude OAuth account", "claude_oauth: access and refresh token, expiry, scopes, proxy, priority, schedulable"},
	{"Claude Console account", "anthropic_api_key (api.anthropic.com) or anthropic_compatible: key, base URL, proxy, priority, schedulable"},
	{"daily usage per key and model", "usage per key, model and UTC day: split by CRS's hourly hashes where it still has them (7 days), else on the UTC day holding most of the CRS day"},
	{"all-time usage per key", "the key's all-time total (older than the daily history included)"},
	{"daily usage per account", "usage per account and UTC day, priced with claude-relay's price table"},
}

// Write prints the plan: what was found, how it maps, and every note, grouped.
func (p *Plan) Write(w io.Writer) {
	fmt.Fprintf(w, "\nFound in CRS (days in UTC%+d):\n", p.TimezoneOffset)
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "  kind\tfound\timport\n")
	fmt.Fprintf(tw, "  API keys\t%d\t%d (%s)\n", p.Found["API keys"], len(p.Keys), p.statusLine())
	oauth, console := 0, 0
	for _, a := range p.Accounts {
		if a.Kind == "Claude OAuth" {
			oauth++
		} else {
			console++
		}
	}
	fmt.Fprintf(tw, "  Claude OAuth accounts\t%d\t%d\n", p.Found["Claude OAuth accounts"], oauth)
	fmt.Fprintf(tw, "  Claude Console accounts\t%d\t%d\n", p.Found["Claude Console accounts"], console)
	fmt.Fprintf(tw, "  account groups\t%d\t%d\n", p.Found["account groups"], len(p.Groups))
	others := make([]string, 0, len(p.Others))
	for k := range p.Others {
		others = append(others, k)
	}
	sort.Strings(others)
	for _, o := range others {
		fmt.Fprintf(tw, "  %s accounts\t%d\t0\n", o, p.Others[o])
	}
	fmt.Fprintf(tw, "  daily usage (keys × models, accounts)\t%d, %d\t%d, %d (%d split exactly by hour)\n", p.KeyDays, p.AccountDays, p.KeyDays, p.AccountDays, p.DaysByHour)
	tw.Flush()
	if p.Verified > 0 {
		fmt.Fprintf(w, "CRS encryption key: verified (%d encrypted fields open with it)\n", p.Verified)
	} else {
		fmt.Fprintf(w, "CRS encryption key: not verifiable (no encrypted account field); keys authenticate only if it is CRS's ENCRYPTION_KEY\n")
	}
	fmt.Fprintf(w, "\nHow CRS maps:\n")
	tw = tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	for _, m := range mappings {
		fmt.Fprintf(tw, "  %s\t→ %s\n", m[0], m[1])
	}
	for _, g := range p.Groups {
		fmt.Fprintf(tw, "  group %q\t→ group %s (%d accounts)\n", g.CRSName, g.Name, g.Members)
	}
	tw.Flush()
	cat := ""
	for _, n := range p.Notes() {
		if n.Category != cat {
			cat = n.Category
			fmt.Fprintf(w, "\n%s:\n", strings.ToUpper(cat[:1])+cat[1:])
		}
		fmt.Fprintf(w, "  - %s: %s\n", n.Message, subjects(n.Subjects))
	}
}

func (p *Plan) statusLine() string {
	var parts []string
	for _, s := range []string{"active", "disabled", "expired", "deleted"} {
		if n := p.KeyStatus[s]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, s))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func subjects(list []string) string {
	if len(list) <= maxSubjects {
		return strings.Join(quoteAll(list), ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(quoteAll(list[:maxSubjects]), ", "), len(list)-maxSubjects)
}

func quoteAll(list []string) []string {
	out := make([]string, len(list))
	for i, s := range list {
		if strings.HasPrefix(s, `"`) {
			out[i] = s
		} else {
			out[i] = fmt.Sprintf("%q", s)
		}
	}
	return out
}
