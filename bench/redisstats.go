package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisInfo is what one `INFO commandstats stats cpu` of the relay's Redis reported.
type redisInfo struct {
	Commands  map[string]commandStat // by name as commandstats spells it: "evalsha", "client|setinfo"
	Processed int64                  // total_commands_processed (commands run inside scripts included)
	Reads     int64                  // total_reads_processed: read events, one per round trip a client sends
	Writes    int64                  // total_writes_processed
	CPU       time.Duration          // used_cpu_sys + used_cpu_user: the whole process, µs resolution
	HasCPU    bool
}

// commandStat is one cmdstat_ line: calls and the µs spent in them.
type commandStat struct {
	Calls int64 `json:"calls"`
	Usec  int64 `json:"usec"`
}

// scriptCommands run other commands inside Redis; commandstats counts those inner calls too,
// and the script's own usec already includes their time.
var scriptCommands = []string{"eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro"}

// parseInfo reads the commandstats, stats and cpu sections of an INFO reply.
func parseInfo(text string) (redisInfo, error) {
	in := redisInfo{Commands: map[string]commandStat{}}
	var sys, user float64
	var haveSys, haveUser bool
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		field, val, ok := strings.Cut(line, ":")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		var err error
		switch field {
		case "total_commands_processed":
			in.Processed, err = strconv.ParseInt(val, 10, 64)
		case "total_reads_processed":
			in.Reads, err = strconv.ParseInt(val, 10, 64)
		case "total_writes_processed":
			in.Writes, err = strconv.ParseInt(val, 10, 64)
		case "used_cpu_sys":
			sys, err = strconv.ParseFloat(val, 64)
			haveSys = true
		case "used_cpu_user":
			user, err = strconv.ParseFloat(val, 64)
			haveUser = true
		default:
			if name, ok := strings.CutPrefix(field, "cmdstat_"); ok {
				var st commandStat
				st, err = parseCommandStat(val)
				in.Commands[name] = st
			}
		}
		if err != nil {
			return redisInfo{}, fmt.Errorf("INFO line %q: %w", line, err)
		}
	}
	if haveSys && haveUser {
		in.CPU, in.HasCPU = time.Duration((sys+user)*1e6)*time.Microsecond, true
	}
	return in, nil
}

// parseCommandStat reads "calls=3,usec=12,usec_per_call=4.00,rejected_calls=0,failed_calls=0".
func parseCommandStat(val string) (commandStat, error) {
	var st commandStat
	var haveCalls bool
	for _, kv := range strings.Split(val, ",") {
		k, v, _ := strings.Cut(kv, "=")
		var err error
		switch k {
		case "calls":
			st.Calls, err = strconv.ParseInt(v, 10, 64)
			haveCalls = true
		case "usec":
			st.Usec, err = strconv.ParseInt(v, 10, 64)
		}
		if err != nil {
			return st, err
		}
	}
	if !haveCalls {
		return st, fmt.Errorf("no calls= in %q", val)
	}
	return st, nil
}

// readRedisInfo asks for the three sections in one command, so each reading costs the
// counters exactly one INFO, one read event and one write event.
func readRedisInfo(ctx context.Context, rdb *redis.Client) (redisInfo, error) {
	text, err := rdb.Info(ctx, "commandstats", "stats", "cpu").Result()
	if err != nil {
		return redisInfo{}, fmt.Errorf("redis INFO: %w", err)
	}
	return parseInfo(text)
}

// redisDelta is what Redis did between two readings, the harness's own INFO taken out: the
// later reading counts the earlier INFO's call, its reply's write event and the later INFO's
// read event.
type redisDelta struct {
	Commands  map[string]commandStat
	Processed int64
	Reads     int64
	Writes    int64
	CPU       time.Duration
	HasCPU    bool
}

func (after redisInfo) since(before redisInfo) redisDelta {
	d := redisDelta{
		Commands:  map[string]commandStat{},
		Processed: after.Processed - before.Processed - 1,
		Reads:     after.Reads - before.Reads - 1,
		Writes:    after.Writes - before.Writes - 1,
		CPU:       after.CPU - before.CPU,
		HasCPU:    after.HasCPU && before.HasCPU,
	}
	for name, a := range after.Commands {
		b := before.Commands[name]
		st := commandStat{Calls: a.Calls - b.Calls, Usec: a.Usec - b.Usec}
		if name == "info" && st.Calls > 0 { // take out the harness's INFO at its mean cost
			st.Usec -= st.Usec / st.Calls
			st.Calls--
		}
		if st.Calls > 0 {
			d.Commands[name] = st
		}
	}
	return d
}

// relayCounters are the relay's /metrics counters about Redis.
type relayCounters struct {
	LimitCalls     float64
	LimitPipelines float64
	RoundTrips     float64
	Commands       map[string]float64 // sent, by command
	HasTraffic     bool               // the relay exports claude_relay_redis_round_trips_total
}

// parseRelayMetrics reads the Redis counters from a Prometheus text page.
func parseRelayMetrics(r io.Reader) (relayCounters, error) {
	c := relayCounters{Commands: map[string]float64{}}
	err := eachSample(r, func(name, labels string, v float64) {
		switch name {
		case "claude_relay_limit_redis_calls_total":
			c.LimitCalls = v
		case "claude_relay_limit_redis_pipelines_total":
			c.LimitPipelines = v
		case "claude_relay_redis_round_trips_total":
			c.RoundTrips, c.HasTraffic = v, true
		case "claude_relay_redis_commands_total":
			if cmd, ok := labelValue(labels, "command"); ok {
				c.Commands[cmd] += v
			}
		}
	})
	return c, err
}

// eachSample calls fn with every sample of a Prometheus text page: the series' name, its
// labels after the "{" (empty when none) and its value.
func eachSample(r io.Reader, fn func(name, labels string, v float64)) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		series, val, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil {
			continue
		}
		name, labels, _ := strings.Cut(series, "{")
		fn(name, labels, v)
	}
	return sc.Err()
}

// labelValue finds name="value" in the label part of a series (`command="get"}`).
func labelValue(labels, name string) (string, bool) {
	for _, kv := range strings.Split(strings.TrimSuffix(labels, "}"), ",") {
		k, v, ok := strings.Cut(kv, "=")
		if ok && k == name {
			return strings.Trim(v, `"`), true
		}
	}
	return "", false
}

// fetchRelayCounters scrapes the relay's /metrics (the scrape itself sends nothing to Redis).
func fetchRelayCounters(base string) (relayCounters, error) {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return relayCounters{}, fmt.Errorf("relay metrics: %w", err)
	}
	defer resp.Body.Close()
	return parseRelayMetrics(resp.Body)
}

// plus adds another process's counters (the control plane's to the sidecar's).
func (c relayCounters) plus(o relayCounters) relayCounters {
	sum := relayCounters{
		LimitCalls: c.LimitCalls + o.LimitCalls, LimitPipelines: c.LimitPipelines + o.LimitPipelines,
		RoundTrips: c.RoundTrips + o.RoundTrips, Commands: maps.Clone(c.Commands), HasTraffic: c.HasTraffic && o.HasTraffic,
	}
	if sum.Commands == nil {
		sum.Commands = map[string]float64{}
	}
	for k, v := range o.Commands {
		sum.Commands[k] += v
	}
	return sum
}

func (after relayCounters) since(before relayCounters) relayCounters {
	d := relayCounters{
		LimitCalls:     after.LimitCalls - before.LimitCalls,
		LimitPipelines: after.LimitPipelines - before.LimitPipelines,
		RoundTrips:     after.RoundTrips - before.RoundTrips,
		Commands:       map[string]float64{},
		HasTraffic:     after.HasTraffic && before.HasTraffic,
	}
	for k, v := range after.Commands {
		if n := v - before.Commands[k]; n > 0 {
			d.Commands[k] = n
		}
	}
	return d
}

// redisCost is one phase's Redis cost per request, from INFO deltas and the relay's counters.
type redisCost struct {
	// CPUUS is the Redis process's CPU (INFO cpu: used_cpu_sys + used_cpu_user, all threads).
	CPUUS float64 `json:"redis_cpu_us"`
	// CommandsExecuted is the sum of commandstats calls: every command Redis ran, those run
	// inside scripts included; InsideScripts is the part scripts ran.
	CommandsExecuted float64 `json:"commands_executed"`
	InsideScripts    float64 `json:"commands_inside_scripts"`
	// CommandsSent and RoundTrips are what the relay sent (its go-redis hook): a script is
	// one command; a pipeline or a command sent alone is one round trip. Zero when the relay
	// does not export them (Sent is then false).
	CommandsSent float64 `json:"commands_sent"`
	RoundTrips   float64 `json:"round_trips"`
	Sent         bool    `json:"sent_counted"`
	// ReadEvents is total_reads_processed: the read events Redis handled, one per round
	// trip that arrives whole (a pipeline over 16 KiB, or split by TCP, takes more).
	ReadEvents float64 `json:"read_events"`
	// LimitCalls are the relay's limit calls (admissions, charges, releases) and
	// LimitPipelines the part of the round trips that carried them.
	LimitCalls     float64 `json:"limit_calls"`
	LimitPipelines float64 `json:"limit_pipelines"`
	// CommandUS is the µs Redis spent executing commands, each counted once: the usec of
	// commands run inside scripts are taken out (a script's usec includes them).
	// CommandUSEstimated is set when a command was both sent and run inside a script, so
	// its inner share of usec is apportioned by calls; or when the relay's sent counts are
	// missing and inner calls cannot be told apart (then nothing is taken out).
	CommandUS          float64       `json:"command_time_us"`
	CommandUSEstimated bool          `json:"command_time_estimated,omitempty"`
	Top                []commandCost `json:"top_commands_by_time"`
	// Calls is every command's calls per request, by name.
	Calls map[string]float64 `json:"calls_per_request"`
}

// commandCost is one command's share of a phase, per request.
type commandCost struct {
	Name          string  `json:"name"`
	Calls         float64 `json:"calls"`
	InsideScripts float64 `json:"calls_inside_scripts,omitempty"`
	US            float64 `json:"usec"`
	USPerCall     float64 `json:"usec_per_call"`
}

// perRequest divides a phase's Redis delta and relay counters by its requests.
func perRequest(d redisDelta, rc relayCounters, requests int64) redisCost {
	if requests <= 0 {
		return redisCost{}
	}
	n := float64(requests)
	var c redisCost
	if d.HasCPU {
		c.CPUUS = float64(d.CPU.Microseconds()) / n
	}
	var scripts, calls, inner int64
	for _, s := range scriptCommands {
		scripts += d.Commands[s].Calls
	}
	var usec, innerUsec float64
	var top []commandCost
	c.Calls = map[string]float64{}
	c.CommandUSEstimated = scripts > 0 && !rc.HasTraffic
	for name, st := range d.Commands {
		in := innerCalls(name, st.Calls, scripts, rc)
		if in > 0 && in < st.Calls {
			c.CommandUSEstimated = true
		}
		c.Calls[name] = float64(st.Calls) / n
		calls += st.Calls
		inner += in
		usec += float64(st.Usec)
		innerUsec += float64(st.Usec) * float64(in) / float64(st.Calls)
		top = append(top, commandCost{Name: name, Calls: float64(st.Calls) / n, InsideScripts: float64(in) / n,
			US: float64(st.Usec) / n, USPerCall: float64(st.Usec) / float64(st.Calls)})
	}
	c.CommandsExecuted, c.InsideScripts = float64(calls)/n, float64(inner)/n
	c.CommandUS = (usec - innerUsec) / n
	c.ReadEvents = float64(d.Reads) / n
	c.LimitCalls, c.LimitPipelines = rc.LimitCalls/n, rc.LimitPipelines/n
	if rc.HasTraffic {
		c.Sent = true
		c.RoundTrips = rc.RoundTrips / n
		for _, v := range rc.Commands {
			c.CommandsSent += v / n
		}
	}
	slices.SortFunc(top, func(a, b commandCost) int {
		if a.US != b.US {
			if a.US > b.US {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Name, b.Name)
	})
	c.Top = top[:min(len(top), 5)]
	return c
}

// innerCalls is how many of a command's calls scripts ran: the calls beyond those the relay
// sent. Without the relay's counts it is unknown and taken as none (perRequest flags the
// command time as estimated). Subcommands ("client|setinfo") are never taken as inner.
func innerCalls(name string, calls, scripts int64, rc relayCounters) int64 {
	if scripts == 0 || !rc.HasTraffic || slices.Contains(scriptCommands, name) || strings.Contains(name, "|") {
		return 0
	}
	sent := int64(rc.Commands[name])
	return min(max(calls-sent, 0), calls)
}
