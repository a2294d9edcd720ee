package limits

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/internal/testredis"
	"github.com/claude-relay/claude-relay/store"
)

// TestPlainAdmissionDecidesAsTheFullScript runs the same random history of admissions,
// finishes, charges, dead sidecars and passing time against two keys, one admitted with
// plainAdmitScript and one with admitScript, and requires the same reply to every admission
// and the same state after it: lease count, every counter's value, and an expiry on every key
// that should have one.
func TestPlainAdmissionDecidesAsTheFullScript(t *testing.T) {
	rdb, prefix := testredis.New(t)
	ctx := context.Background()
	now := time.Date(2026, 12, 3, 23, 58, 0, 0, time.UTC)
	l := New(rdb, store.NewSchema(prefix), Options{Now: func() time.Time { return now }, LeaseTTL: 3 * time.Second})
	defer l.Close()
	set := Set{Concurrency: 3, Counted: []Limit{
		{Name: "cost_total_usd", Kind: Cost, Window: Total, Max: 80_000},
		{Name: "tokens_per_day", Kind: Tokens, Window: Day, Max: 3000},
		{Name: "requests_per_minute", Kind: Requests, Window: Minute, Max: 7},
	}}
	rng := rand.New(rand.NewPCG(7, 19))
	held := map[string][]*Lease{}
	seen := map[int64]int{} // replies by kind: -1 admitted, 0 concurrency, i the i-th counter
	admit := func(keyID string, plain bool) ([]int64, *Lease) {
		lease := &Lease{l: l, keyID: keyID, set: set}
		call, _ := l.fullAdmitCall(keyID, set, Usage{}, now, lease, 0)
		if plain {
			call, _ = l.plainAdmitCall(keyID, set, now, lease)
		}
		res, err := call.script.Run(ctx, rdb, call.keys, call.args...).Int64Slice()
		if err != nil {
			t.Fatal(err)
		}
		return res, lease
	}
	state := func(keyID string) string {
		conc := l.keys.KeyConcurrency(keyID)
		n, _ := rdb.ZCard(ctx, conc).Result()
		s := fmt.Sprintf("leases=%d expiring=%v", n, n == 0 || rdb.PTTL(ctx, conc).Val() > 0)
		for _, lim := range set.Counted {
			k, ttl, _ := l.counterKey(keyID, "", lim, now)
			v, _ := rdb.Get(ctx, k).Result()
			s += fmt.Sprintf(" %s=%s expiring=%v", lim.Name, v, v == "" || ttl == 0 || rdb.PTTL(ctx, k).Val() > 0)
		}
		return s
	}
	for step := range 1000 {
		switch op := rng.IntN(10); {
		case op < 5:
			rp, lp := admit("plain", true)
			rf, lf := admit("full", false)
			if !slices.Equal(rp, rf) {
				t.Fatalf("step %d: plain admission replied %v, the full script %v", step, rp, rf)
			}
			seen[rp[0]]++
			if rp[0] == -1 {
				held["plain"], held["full"] = append(held["plain"], lp), append(held["full"], lf)
			}
		case op < 8 && len(held["plain"]) > 0: // a request finishes and is charged
			i := rng.IntN(len(held["plain"]))
			u := Usage{Tokens: rng.Int64N(1500), CostMicroUSD: rng.Int64N(4000)}
			for _, k := range []string{"plain", "full"} {
				if err := held[k][i].Finish(ctx, u); err != nil {
					t.Fatal(err)
				}
				held[k] = slices.Delete(held[k], i, i+1)
			}
		case op < 9: // the sidecar holding every lease dies: nobody finishes or renews them
			held = map[string][]*Lease{}
		case rng.IntN(3) == 0: // a quiet day: the day's counters roll over
			now = now.Add(time.Duration(rng.IntN(30)) * time.Hour)
		default: // leases of the dead pass their deadline, minutes roll over
			now = now.Add(time.Duration(rng.IntN(40_000)) * time.Millisecond)
		}
		if p, f := state("plain"), state("full"); p != f {
			t.Fatalf("step %d: after the plain admission %s, after the full script %s", step, p, f)
		}
	}
	for kind := range int64(len(set.Counted) + 1) {
		if seen[kind-1] == 0 || seen[kind] == 0 {
			t.Fatalf("the history never reached every reply (admitted, and each limit refusing): %v", seen)
		}
	}
}
