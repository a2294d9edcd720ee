package console_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	"github.com/claude-relay/claude-relay/controlplane/adminclient"
	"github.com/claude-relay/claude-relay/store"
)

// BenchmarkDashboardFirstRender renders the dashboard of an installation with 10,000 keys and
// 30 days of hourly usage (500 keys active a day, 3 models), the default 24-hour view and the
// 30-day one, against a bare read of the same data (one pipeline of HGETALLs of the report
// hashes the view reads, nothing summed), the dashboard of an empty installation and what the
// first console did to sum a day (list every key, read the usage of each used today), in the
// same run. The target is under 300 ms a render and 200 KB a page.
func BenchmarkDashboardFirstRender(b *testing.B) {
	full := newSite(b, 0)
	seedInstallation(b, full.st, 10000, 30, 500)
	empty := newSite(b, 0)
	fb, eb := full.browser(), empty.browser()
	fb.login()
	eb.login()

	baseline := measure(b, eb, 20)
	listStart := time.Now()
	for range 3 {
		sumByListing(b, full.admin)
	}
	list := time.Since(listStart) / 3
	now := time.Now().UTC()
	bareDay := bareRead(b, full.st, dashboardHashes(full.st, now, false), 10)
	bareMonth := bareRead(b, full.st, dashboardHashes(full.st, now, true), 5)
	var size int
	start := time.Now()
	n := 0
	for b.Loop() {
		p := fb.get("/ui/")
		if p.status != http.StatusOK || !strings.Contains(p.body, `id="total-requests"`) {
			b.Fatalf("dashboard: %d\n%s", p.status, p.body)
		}
		size = len(p.body)
		n++
	}
	per := time.Since(start) / time.Duration(n)
	month := measurePath(b, fb, "/ui/?range=30d", 5)
	b.ReportMetric(float64(per.Milliseconds()), "ms/render")
	b.ReportMetric(float64(per)/float64(bareDay), "x-bare-read")
	b.ReportMetric(float64(per)/float64(baseline), "x-empty-dashboard")
	b.ReportMetric(float64(size), "bytes/page")
	b.ReportMetric(float64(list)/float64(per), "x-faster-than-listing")
	b.ReportMetric(float64(month.Milliseconds()), "ms/30-day-render")
	b.ReportMetric(float64(month)/float64(bareMonth), "x-bare-30-day-read")
	b.Logf("dashboard with 10,000 keys: %s a render (target < 300ms), %d bytes; a bare read of its 24 hourly hashes: %s (ratio %.1f); "+
		"empty installation: %s (ratio %.1f); summing today by listing the 10,000 keys and reading each used key's day (the first console's way): %s, %.1fx the render; "+
		"the 30-day dashboard: %s; a bare read of its 30 daily hashes: %s (ratio %.1f)",
		per.Round(time.Millisecond), size, bareDay.Round(time.Millisecond), float64(per)/float64(bareDay),
		baseline.Round(time.Microsecond), float64(per)/float64(baseline), list.Round(time.Millisecond), float64(list)/float64(per),
		month.Round(time.Millisecond), bareMonth.Round(time.Millisecond), float64(month)/float64(bareMonth))
}

// dashboardHashes are the report hashes the dashboard's view reads at now: the 24 hours
// ending with the current one, or the 30 UTC days ending with today.
func dashboardHashes(st *store.Store, now time.Time, month bool) []string {
	var keys []string
	if month {
		today := now.Truncate(24 * time.Hour)
		for d := 29; d >= 0; d-- {
			keys = append(keys, st.Schema().UsageDay(today.AddDate(0, 0, -d)))
		}
		return keys
	}
	hour := now.Truncate(time.Hour)
	for h := 23; h >= 0; h-- {
		keys = append(keys, st.Schema().UsageHour(hour.Add(-time.Duration(h)*time.Hour)))
	}
	return keys
}

// bareRead is the mean time of n pipelines of HGETALLs of keys: the data a report sums, read
// and nothing more.
func bareRead(b *testing.B, st *store.Store, keys []string, n int) time.Duration {
	ctx := context.Background()
	start := time.Now()
	for range n {
		fields := 0
		cmds, err := st.Client().Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, k := range keys {
				p.HGetAll(ctx, k)
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		for _, c := range cmds {
			fields += len(c.(*redis.MapStringStringCmd).Val())
		}
		if fields == 0 {
			b.Fatalf("the bare read of %d hashes found no usage", len(keys))
		}
	}
	return time.Since(start) / time.Duration(n)
}

// measure is the mean time of n dashboard renders.
func measure(b *testing.B, br *browser, n int) time.Duration { return measurePath(b, br, "/ui/", n) }

// measurePath is the mean time of n renders of the page at path.
func measurePath(b *testing.B, br *browser, path string, n int) time.Duration {
	start := time.Now()
	for range n {
		if p := br.get(path); p.status != http.StatusOK {
			b.Fatalf("%s: %d\n%s", path, p.status, p.body)
		}
	}
	return time.Since(start) / time.Duration(n)
}

// sumByListing is how the first console summed today's usage: every key listed, then the
// day of each key used today (up to 200), 16 at a time.
func sumByListing(b *testing.B, api *adminclient.Client) {
	ctx := context.Background()
	keys, err := api.ListAllKeys(ctx, adminclient.KeyQuery{})
	if err != nil {
		b.Fatal(err)
	}
	day := time.Now().UTC().Truncate(24 * time.Hour)
	var used []string
	for _, k := range keys {
		if k.LastUsedAt != nil && !k.LastUsedAt.Before(day) && len(used) < 200 {
			used = append(used, k.ID)
		}
	}
	var g errgroup.Group
	g.SetLimit(16)
	for _, id := range used {
		g.Go(func() error {
			_, err := api.KeyUsage(ctx, id, day.Format(time.DateOnly))
			return err
		})
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
}

// seedInstallation creates keys and days of hourly usage: active keys a day, three models
// each, each key in its own hour of the day (so every hour has usage), today's keys marked
// used today.
func seedInstallation(b *testing.B, st *store.Store, keys, days, active int) {
	ctx := context.Background()
	var ids []string
	for len(ids) < keys {
		specs := make([]store.KeySpec, 0, 1000)
		for i := len(ids); i < keys && len(specs) < 1000; i++ {
			specs = append(specs, store.KeySpec{Name: fmt.Sprintf("member-%05d", i), Owner: "team", Tags: []string{"bench"}})
		}
		created, err := st.CreateKeys(ctx, specs)
		if err != nil {
			b.Fatal(err)
		}
		for _, c := range created {
			ids = append(ids, c.Key.ID)
		}
	}
	now := time.Now().UTC()
	models := []string{"claude-sonnet-4-5-20250929", "claude-haiku-4-5-20251001", "claude-opus-4-1-20250805"}
	for d := range days {
		day := now.Add(-time.Duration(d) * 24 * time.Hour)
		var recs []store.UsageRecord
		for i := range active {
			id := ids[(d*active+i*7)%len(ids)]
			at := day.Add(-time.Duration(i%24) * time.Hour)
			for m, model := range models {
				recs = append(recs, store.UsageRecord{KeyID: id, AccountID: "acct", Model: model, At: at,
					Usage: store.Usage{Requests: int64(24 + m), InputTokens: 12000, OutputTokens: 3400, CostMicroUSD: 91000}})
			}
			if d == 0 {
				if err := st.TouchKey(ctx, id, now); err != nil {
					b.Fatal(err)
				}
			}
		}
		if err := st.RecordUsage(ctx, recs...); err != nil {
			b.Fatal(err)
		}
	}
}
