package main

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/internal/testredis"
	"github.com/redis/go-redis/v9"
)

// TestRedisDeltaCountsWhatRedisRan runs known commands on a dedicated redis-server (a
// shared one has other tests' traffic) between two readings and checks the delta: every
// command by name, those a script ran included, one read event per round trip, and the
// harness's own INFO taken out.
func TestRedisDeltaCountsWhatRedisRan(t *testing.T) {
	srv := testredis.StartServer(t)
	ctx := context.Background()
	harness := redis.NewClient(&redis.Options{Addr: srv.Addr(), PoolSize: 1})
	defer harness.Close()
	worker := redis.NewClient(&redis.Options{Addr: srv.Addr(), PoolSize: 1})
	defer worker.Close()
	// Dial (HELLO, CLIENT SETINFO) before the reading: go-redis dials again for its first
	// pipeline.
	if _, err := worker.Pipelined(ctx, func(p redis.Pipeliner) error { p.Ping(ctx); return nil }); err != nil {
		t.Fatal(err)
	}
	if err := worker.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	before, err := readRedisInfo(ctx, harness)
	if err != nil {
		t.Fatal(err)
	}
	if !before.HasCPU || before.Processed == 0 || before.Reads == 0 {
		t.Fatalf("first reading lacks counters: %+v", before)
	}
	// Four round trips: SET, GET, a pipeline of three INCRBY, an EVAL that runs SET and GET.
	worker.Set(ctx, "a", "1", 0)
	worker.Get(ctx, "a")
	if _, err := worker.Pipelined(ctx, func(p redis.Pipeliner) error {
		for range 3 {
			p.IncrBy(ctx, "n", 2)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := worker.Eval(ctx, "redis.call('set', KEYS[1], '2') return redis.call('get', KEYS[1])", []string{"a"}).Err(); err != nil {
		t.Fatal(err)
	}
	after, err := readRedisInfo(ctx, harness)
	if err != nil {
		t.Fatal(err)
	}
	d := after.since(before)
	want := map[string]int64{"set": 2, "get": 2, "incrby": 3, "eval": 1}
	for name, st := range d.Commands {
		if st.Calls != want[name] {
			t.Errorf("%s: got %d calls, want %d", name, st.Calls, want[name])
		}
		if st.Usec < 0 {
			t.Errorf("%s: got %d usec, want ≥ 0", name, st.Usec)
		}
	}
	for name := range want {
		if _, ok := d.Commands[name]; !ok {
			t.Errorf("%s: missing from the delta %v", name, d.Commands)
		}
	}
	if d.Processed != 8 {
		t.Errorf("commands processed: got %d, want 8 (inner calls count in total_commands_processed)", d.Processed)
	}
	if d.Reads != 4 || d.Writes != 4 {
		t.Errorf("read/write events: got %d/%d, want 4/4 (one per round trip)", d.Reads, d.Writes)
	}
	if !d.HasCPU || d.CPU < 0 {
		t.Errorf("CPU: got %v (has %v), want ≥ 0", d.CPU, d.HasCPU)
	}

	// The same readings, divided by two requests, with the sent counts the relay would have.
	rc := relayCounters{RoundTrips: 4, HasTraffic: true, Commands: map[string]float64{"set": 1, "get": 1, "incrby": 3, "eval": 1}}
	c := perRequest(d, rc, 2)
	if c.CommandsExecuted != 4 || c.InsideScripts != 1 || c.CommandsSent != 3 || c.RoundTrips != 2 || c.ReadEvents != 2 {
		t.Errorf("per request: got executed %v, inside %v, sent %v, round trips %v, reads %v; want 4, 1, 3, 2, 2",
			c.CommandsExecuted, c.InsideScripts, c.CommandsSent, c.RoundTrips, c.ReadEvents)
	}
}

func TestParseInfoRefusesAMalformedCounter(t *testing.T) {
	for _, text := range []string{
		"# Stats\r\ntotal_reads_processed:x\r\n",
		"# Commandstats\r\ncmdstat_get:usec=3\r\n",
		"# Commandstats\r\ncmdstat_get:calls=1,usec=z\r\n",
	} {
		if _, err := parseInfo(text); err == nil {
			t.Errorf("parseInfo(%q): got no error, want one", text)
		}
	}
}

// TestPerRequestTakesScriptInnerTimeOutOnce checks the arithmetic on a delta whose numbers
// are chosen by hand: a script's usec includes the commands it ran, so those are taken out;
// a command both sent and run inside scripts has its inner share apportioned by calls.
func TestPerRequestTakesScriptInnerTimeOutOnce(t *testing.T) {
	d := redisDelta{
		Commands: map[string]commandStat{
			"evalsha": {Calls: 10, Usec: 300}, // runs 10 MGET and 5 of the 25 SET
			"mget":    {Calls: 10, Usec: 50},
			"set":     {Calls: 25, Usec: 100},
			"incrby":  {Calls: 30, Usec: 60},
		},
		Reads: 21, CPU: 1234 * time.Microsecond, HasCPU: true,
	}
	rc := relayCounters{
		LimitCalls: 20, LimitPipelines: 10, RoundTrips: 20, HasTraffic: true,
		Commands: map[string]float64{"evalsha": 10, "set": 20, "incrby": 30},
	}
	c := perRequest(d, rc, 10)
	checks := []struct {
		name      string
		got, want float64
	}{
		{"Redis CPU µs", c.CPUUS, 123.4},
		{"commands executed", c.CommandsExecuted, 7.5},
		{"inside scripts", c.InsideScripts, 1.5},
		{"commands sent", c.CommandsSent, 6},
		{"round trips", c.RoundTrips, 2},
		{"read events", c.ReadEvents, 2.1},
		{"limit calls", c.LimitCalls, 2},
		{"limit pipelines", c.LimitPipelines, 1},
		// (300 + 50 + 100 + 60) − 50 (every MGET inside) − 100 × 5/25 (the inner SET) = 440
		{"command time µs", c.CommandUS, 44},
	}
	for _, ck := range checks {
		if math.Abs(ck.got-ck.want) > 1e-9 {
			t.Errorf("%s: got %v, want %v", ck.name, ck.got, ck.want)
		}
	}
	if !c.CommandUSEstimated || !c.Sent {
		t.Errorf("got estimated %v, sent %v; want true, true (SET is both sent and run inside)", c.CommandUSEstimated, c.Sent)
	}
	var names []string
	for _, x := range c.Top {
		names = append(names, x.Name)
	}
	if got := strings.Join(names, ","); got != "evalsha,set,incrby,mget" {
		t.Errorf("top by time: got %s, want evalsha,set,incrby,mget", got)
	}
	if top := c.Top[0]; top.Calls != 1 || top.US != 30 || top.USPerCall != 30 {
		t.Errorf("evalsha: got %+v, want 1 call, 30 µs per request, 30 µs per call", top)
	}

	// Without the relay's sent counts nothing can be told apart: the script-inner time stays
	// in (counted twice) and the result says it is not exact.
	c = perRequest(d, relayCounters{}, 10)
	if c.CommandUS != 51 || !c.CommandUSEstimated || c.Sent || c.InsideScripts != 0 {
		t.Errorf("without sent counts: got time %v, estimated %v, sent %v, inside %v; want 51, true, false, 0",
			c.CommandUS, c.CommandUSEstimated, c.Sent, c.InsideScripts)
	}
	if z := perRequest(d, rc, 0); z.CommandsExecuted != 0 || z.Top != nil {
		t.Errorf("zero requests: got %+v, want nothing", z)
	}
}

func TestParseRelayMetricsSumsRedisCounters(t *testing.T) {
	page := `# HELP claude_relay_redis_commands_total Commands sent to Redis, by command.
# TYPE claude_relay_redis_commands_total counter
claude_relay_redis_commands_total{command="evalsha"} 120
claude_relay_redis_commands_total{command="set"} 3.5e+02
claude_relay_redis_round_trips_total 240
claude_relay_limit_redis_calls_total 200
claude_relay_limit_redis_pipelines_total 25
claude_relay_requests_total{route="messages",status="200"} 100
`
	rc, err := parseRelayMetrics(strings.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	if !rc.HasTraffic || rc.RoundTrips != 240 || rc.LimitCalls != 200 || rc.LimitPipelines != 25 ||
		rc.Commands["evalsha"] != 120 || rc.Commands["set"] != 350 || len(rc.Commands) != 2 {
		t.Errorf("got %+v", rc)
	}
	d := rc.since(relayCounters{RoundTrips: 40, HasTraffic: true, Commands: map[string]float64{"set": 350}})
	if d.RoundTrips != 200 || d.Commands["evalsha"] != 120 || len(d.Commands) != 1 {
		t.Errorf("since: got %+v, want 200 round trips and 120 evalsha only", d)
	}
}

// TestScanGaugeReadsTheUnlabelledSeriesOnly: the ledger measurement waits on the control
// plane's claude_relay_config_version; a labelled series of the same name, or a longer name
// sharing its prefix, is not it, and a page without it is an error.
func TestScanGaugeReadsTheUnlabelledSeriesOnly(t *testing.T) {
	page := "# HELP claude_relay_config_version x\nclaude_relay_config_version_total 9\nclaude_relay_config_version{a=\"b\"} 8\nclaude_relay_config_version 7\n"
	if v, err := scanGauge(strings.NewReader(page), "claude_relay_config_version"); err != nil || v != 7 {
		t.Fatalf("scanGauge = %v, %v; want 7", v, err)
	}
	if _, err := scanGauge(strings.NewReader("claude_relay_config_version_total 9\n"), "claude_relay_config_version"); err == nil {
		t.Fatal("scanGauge found a series the page does not have")
	}
}
