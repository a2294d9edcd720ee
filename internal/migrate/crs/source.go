package crs

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// readCommands are the only commands the import sends to the CRS Redis.
var readCommands = map[string]bool{
	"scan": true, "hgetall": true, "smembers": true, "get": true, "ping": true,
	// go-redis's connection handshake.
	"hello": true, "client": true, "auth": true, "select": true,
}

// ErrWriteRefused is the error of a command the read-only CRS client would not send.
var ErrWriteRefused = errors.New("refused: the CRS Redis is only read")

// readOnly is a go-redis hook that refuses every command but readCommands, so a bug can never
// write to the CRS Redis.
type readOnly struct{}

func (readOnly) DialHook(next redis.DialHook) redis.DialHook { return next }

func (readOnly) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !readCommands[cmd.Name()] {
			err := fmt.Errorf("%s: %w", cmd.Name(), ErrWriteRefused)
			cmd.SetErr(err)
			return err
		}
		return next(ctx, cmd)
	}
}

func (readOnly) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, cmd := range cmds {
			if !readCommands[cmd.Name()] {
				err := fmt.Errorf("%s: %w", cmd.Name(), ErrWriteRefused)
				cmd.SetErr(err)
				return err
			}
		}
		return next(ctx, cmds)
	}
}

// ConnectReadOnly connects to a CRS Redis given as redis://[:password@]host:port/db (or
// rediss://) with a client that refuses to send anything but reads.
func ConnectReadOnly(ctx context.Context, rawURL string) (*redis.Client, error) {
	opts, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("--from %q: want redis://[:password@]host:port/db: %w", redactURL(rawURL), err)
	}
	rdb := redis.NewClient(opts)
	rdb.AddHook(readOnly{})
	if err := rdb.Ping(ctx).Err(); err != nil {
		rdb.Close()
		return nil, fmt.Errorf("connect to the CRS Redis at %s: %w", opts.Addr, err)
	}
	return rdb, nil
}

// redactURL drops a password from a Redis URL for messages.
func redactURL(raw string) string {
	if at := strings.LastIndexByte(raw, '@'); at >= 0 {
		if scheme := strings.Index(raw, "://"); scheme >= 0 && scheme < at {
			return raw[:scheme+3] + "***@" + raw[at+1:]
		}
	}
	return raw
}

// Record is one CRS Redis hash: field → value.
type Record map[string]string

// Usage is a CRS usage hash's counters.
type Usage struct {
	Requests, Input, Output, CacheCreate, CacheRead, Ephemeral5m, Ephemeral1h int64
	// RealCostMicro and RatedCostMicro are CRS's cost fields (micro-USD); Has… is false when
	// the version of CRS that wrote the hash did not record them.
	RealCostMicro, RatedCostMicro int64
	HasRealCost, HasRatedCost     bool
}

// DayUsage is one CRS daily usage hash: a key's (or an account's) usage of one model on one
// CRS-local day.
type DayUsage struct {
	Model string // "" for an account's all-model day
	Date  string // YYYY-MM-DD in CRS's timezone
	Usage Usage
}

// HourUsage is one CRS hourly usage hash (kept 7 days): a key's usage of one model, or an
// account's usage, in one CRS-local hour.
type HourUsage struct {
	Model string
	Date  string // YYYY-MM-DD in CRS's timezone
	Hour  int
	Usage Usage
}

// OtherAccount is an account of a platform claude-relay does not relay to.
type OtherAccount struct {
	Platform, ID, Name string
}

// Group is a CRS account group.
type Group struct {
	ID, Name, Platform string
	Members            []string
}

// Dataset is everything the import reads from a CRS Redis.
type Dataset struct {
	Keys    []Record // apikey:<id>
	OAuth   []Record // claude:account:<id>
	Console []Record // claude_console_account:<id>
	Others  []OtherAccount
	Groups  []Group
	// KeyDays are usage:<key id>:model:daily:<model>:<date>, by key id.
	KeyDays map[string][]DayUsage
	// KeyAllTime are usage:<key id> (all-time counters), by key id.
	KeyAllTime map[string]Usage
	// KeyCostTotal is usage:cost:total:<key id> (rated, what CRS's limits count) and
	// KeyRealCostTotal usage:cost:real:total:<key id>, in USD.
	KeyCostTotal, KeyRealCostTotal map[string]float64
	// AccountDays are account_usage:daily:<account id>:<date>, by account id; AccountModelDays
	// account_usage:model:daily:<account id>:<model>:<date> (for pricing).
	AccountDays, AccountModelDays map[string][]DayUsage
	// KeyHours are usage:<key id>:model:hourly:<model>:<date>:<hour> and AccountHours
	// account_usage:hourly:<account id>:<date>:<hour>: with them a day splits exactly onto
	// UTC days.
	KeyHours, AccountHours map[string][]HourUsage
}

// otherPlatforms are the account key prefixes of platforms the import lists but cannot take.
var otherPlatforms = []struct{ prefix, platform string }{
	{"gemini_account:", "Gemini"},
	{"gemini_api_account:", "Gemini API"},
	{"openai:account:", "OpenAI (Codex)"},
	{"openai_responses_account:", "OpenAI Responses"},
	{"azure_openai:account:", "Azure OpenAI"},
	{"bedrock_account:", "AWS Bedrock"},
	{"droid:account:", "Droid"},
	{"ccr_account:", "CCR (Claude Code Router)"},
}

var (
	reKeyDay     = regexp.MustCompile(`^usage:([^:]+):model:daily:(.+):(\d{4}-\d{2}-\d{2})$`)
	reAcctDay    = regexp.MustCompile(`^account_usage:daily:([^:]+):(\d{4}-\d{2}-\d{2})$`)
	reAcctModDay = regexp.MustCompile(`^account_usage:model:daily:([^:]+):(.+):(\d{4}-\d{2}-\d{2})$`)
	reKeyHour    = regexp.MustCompile(`^usage:([^:]+):model:hourly:(.+):(\d{4}-\d{2}-\d{2}):(\d{2})$`)
	reAcctHour   = regexp.MustCompile(`^account_usage:hourly:([^:]+):(\d{4}-\d{2}-\d{2}):(\d{2})$`)
)

// scanCount is the SCAN COUNT hint and pipelineSize how many reads go in one pipeline.
const (
	scanCount    = 2000
	pipelineSize = 1000
)

// Read reads a CRS Redis in one SCAN pass plus pipelined reads of what it found. It never
// writes (the client refuses to). progress, if not nil, is told how many keys were scanned.
func Read(ctx context.Context, rdb redis.UniversalClient, progress func(scanned int)) (*Dataset, error) {
	ds := &Dataset{
		KeyDays: map[string][]DayUsage{}, KeyAllTime: map[string]Usage{},
		KeyCostTotal: map[string]float64{}, KeyRealCostTotal: map[string]float64{},
		AccountDays: map[string][]DayUsage{}, AccountModelDays: map[string][]DayUsage{},
		KeyHours: map[string][]HourUsage{}, AccountHours: map[string][]HourUsage{},
	}
	var keyIDs, oauthIDs, consoleIDs []string
	type dayRef struct {
		name, id, model, date string
		acct                  bool
		hour                  int // -1 for a day
	}
	var days []dayRef
	var costKeys []string
	scanned := 0
	iter := rdb.Scan(ctx, 0, "*", scanCount).Iterator()
	for iter.Next(ctx) {
		name := iter.Val()
		scanned++
		if progress != nil && scanned%50_000 == 0 {
			progress(scanned)
		}
		switch {
		case strings.HasPrefix(name, "apikey:"):
			if id := name[len("apikey:"):]; id != "hash_map" && !strings.Contains(id, ":") {
				keyIDs = append(keyIDs, id)
			}
		case strings.HasPrefix(name, "claude:account:"):
			if id := name[len("claude:account:"):]; id != "index" && !strings.Contains(id, ":") {
				oauthIDs = append(oauthIDs, id)
			}
		case strings.HasPrefix(name, "claude_console_account:"):
			if id := name[len("claude_console_account:"):]; id != "index" && !strings.Contains(id, ":") {
				consoleIDs = append(consoleIDs, id)
			}
		case strings.HasPrefix(name, "usage:cost:total:"), strings.HasPrefix(name, "usage:cost:real:total:"):
			costKeys = append(costKeys, name)
		case strings.HasPrefix(name, "usage:"):
			if m := reKeyDay.FindStringSubmatch(name); m != nil {
				days = append(days, dayRef{name: name, id: m[1], model: m[2], date: m[3], hour: -1})
			} else if m := reKeyHour.FindStringSubmatch(name); m != nil {
				h, _ := strconv.Atoi(m[4])
				days = append(days, dayRef{name: name, id: m[1], model: m[2], date: m[3], hour: h})
			}
		case strings.HasPrefix(name, "account_usage:"):
			if m := reAcctDay.FindStringSubmatch(name); m != nil && m[1] != "index" {
				days = append(days, dayRef{name: name, id: m[1], date: m[2], acct: true, hour: -1})
			} else if m := reAcctModDay.FindStringSubmatch(name); m != nil && m[1] != "index" {
				days = append(days, dayRef{name: name, id: m[1], model: m[2], date: m[3], acct: true, hour: -1})
			} else if m := reAcctHour.FindStringSubmatch(name); m != nil && m[1] != "index" {
				h, _ := strconv.Atoi(m[3])
				days = append(days, dayRef{name: name, id: m[1], date: m[2], acct: true, hour: h})
			}
		default:
			for _, o := range otherPlatforms {
				if id, ok := strings.CutPrefix(name, o.prefix); ok && id != "index" && !strings.Contains(id, ":") {
					ds.Others = append(ds.Others, OtherAccount{Platform: o.platform, ID: id, Name: name})
				}
			}
		}
	}
	if err := iter.Err(); err != nil {
		return nil, fmt.Errorf("scan the CRS Redis: %w", err)
	}
	if progress != nil {
		progress(scanned)
	}
	var err error
	if ds.Keys, err = readHashes(ctx, rdb, "apikey:", keyIDs); err != nil {
		return nil, err
	}
	if ds.OAuth, err = readHashes(ctx, rdb, "claude:account:", oauthIDs); err != nil {
		return nil, err
	}
	if ds.Console, err = readHashes(ctx, rdb, "claude_console_account:", consoleIDs); err != nil {
		return nil, err
	}
	if err := readOtherNames(ctx, rdb, ds.Others); err != nil {
		return nil, err
	}
	if ds.Groups, err = readGroups(ctx, rdb); err != nil {
		return nil, err
	}
	// Usage hashes: days, then every key's all-time counters.
	names := make([]string, len(days))
	for i, d := range days {
		names[i] = d.name
	}
	hashes, err := hgetallMany(ctx, rdb, names)
	if err != nil {
		return nil, err
	}
	for i, d := range days {
		u := parseUsage(hashes[i])
		switch {
		case d.hour >= 0 && d.acct:
			ds.AccountHours[d.id] = append(ds.AccountHours[d.id], HourUsage{Date: d.date, Hour: d.hour, Usage: u})
		case d.hour >= 0:
			ds.KeyHours[d.id] = append(ds.KeyHours[d.id], HourUsage{Model: d.model, Date: d.date, Hour: d.hour, Usage: u})
		case !d.acct:
			ds.KeyDays[d.id] = append(ds.KeyDays[d.id], DayUsage{Model: d.model, Date: d.date, Usage: u})
		case d.model == "":
			ds.AccountDays[d.id] = append(ds.AccountDays[d.id], DayUsage{Date: d.date, Usage: u})
		default:
			ds.AccountModelDays[d.id] = append(ds.AccountModelDays[d.id], DayUsage{Model: d.model, Date: d.date, Usage: u})
		}
	}
	allTime := make([]string, len(ds.Keys))
	for i, k := range ds.Keys {
		allTime[i] = "usage:" + k["id"]
	}
	if hashes, err = hgetallMany(ctx, rdb, allTime); err != nil {
		return nil, err
	}
	for i, k := range ds.Keys {
		if len(hashes[i]) > 0 {
			ds.KeyAllTime[k["id"]] = parseAllTime(hashes[i])
		}
	}
	return ds, readCosts(ctx, rdb, costKeys, ds)
}

// readHashes reads prefix+id for every id; records that vanished or are not hashes are
// skipped. Each record gets its id in "id".
func readHashes(ctx context.Context, rdb redis.UniversalClient, prefix string, ids []string) ([]Record, error) {
	names := make([]string, len(ids))
	for i, id := range ids {
		names[i] = prefix + id
	}
	hashes, err := hgetallMany(ctx, rdb, names)
	if err != nil {
		return nil, err
	}
	var out []Record
	for i, h := range hashes {
		if len(h) == 0 {
			continue
		}
		h["id"] = ids[i]
		out = append(out, Record(h))
	}
	return out, nil
}

// hgetallMany reads many hashes in pipelines; a key that is not a hash reads as empty.
func hgetallMany(ctx context.Context, rdb redis.UniversalClient, names []string) ([]map[string]string, error) {
	out := make([]map[string]string, len(names))
	for start := 0; start < len(names); start += pipelineSize {
		chunk := names[start:min(start+pipelineSize, len(names))]
		cmds := make([]*redis.MapStringStringCmd, len(chunk))
		_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, n := range chunk {
				cmds[i] = p.HGetAll(ctx, n)
			}
			return nil
		})
		if err != nil && !redis.HasErrorPrefix(err, "WRONGTYPE") {
			return nil, fmt.Errorf("read the CRS Redis: %w", err)
		}
		for i, c := range cmds {
			out[start+i] = c.Val()
		}
	}
	return out, nil
}

func readOtherNames(ctx context.Context, rdb redis.UniversalClient, others []OtherAccount) error {
	names := make([]string, len(others))
	for i, o := range others {
		names[i] = o.Name
	}
	hashes, err := hgetallMany(ctx, rdb, names)
	if err != nil {
		return err
	}
	for i := range others {
		others[i].Name = hashes[i]["name"]
	}
	return nil
}

func readGroups(ctx context.Context, rdb redis.UniversalClient) ([]Group, error) {
	ids, err := rdb.SMembers(ctx, "account_groups").Result()
	if err != nil && !redis.HasErrorPrefix(err, "WRONGTYPE") {
		return nil, fmt.Errorf("read CRS account groups: %w", err)
	}
	var out []Group
	for _, id := range ids {
		h, err := rdb.HGetAll(ctx, "account_group:"+id).Result()
		if err != nil || len(h) == 0 {
			continue
		}
		members, err := rdb.SMembers(ctx, "account_group_members:"+id).Result()
		if err != nil && !redis.HasErrorPrefix(err, "WRONGTYPE") {
			return nil, fmt.Errorf("read CRS group %s members: %w", id, err)
		}
		out = append(out, Group{ID: id, Name: h["name"], Platform: h["platform"], Members: members})
	}
	return out, nil
}

func readCosts(ctx context.Context, rdb redis.UniversalClient, names []string, ds *Dataset) error {
	for start := 0; start < len(names); start += pipelineSize {
		chunk := names[start:min(start+pipelineSize, len(names))]
		cmds := make([]*redis.StringCmd, len(chunk))
		_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, n := range chunk {
				cmds[i] = p.Get(ctx, n)
			}
			return nil
		})
		if err != nil && !errors.Is(err, redis.Nil) && !redis.HasErrorPrefix(err, "WRONGTYPE") {
			return fmt.Errorf("read CRS cost totals: %w", err)
		}
		for i, c := range cmds {
			v, err := strconv.ParseFloat(c.Val(), 64)
			if err != nil {
				continue
			}
			if id, ok := strings.CutPrefix(chunk[i], "usage:cost:real:total:"); ok {
				ds.KeyRealCostTotal[id] = v
			} else if id, ok := strings.CutPrefix(chunk[i], "usage:cost:total:"); ok {
				ds.KeyCostTotal[id] = v
			}
		}
	}
	return nil
}

func num(h map[string]string, field string) (int64, bool) {
	v, ok := h[field]
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		f, ferr := strconv.ParseFloat(v, 64)
		if ferr != nil {
			return 0, false
		}
		n = int64(f)
	}
	return n, true
}

// parseUsage reads a daily usage hash (inputTokens, outputTokens, …, realCostMicro).
func parseUsage(h map[string]string) Usage {
	u := parseCounts(h, "")
	u.RealCostMicro, u.HasRealCost = num(h, "realCostMicro")
	u.RatedCostMicro, u.HasRatedCost = num(h, "ratedCostMicro")
	return u
}

// parseAllTime reads a key's all-time hash usage:<id> (totalRequests, totalInputTokens, …).
func parseAllTime(h map[string]string) Usage { return parseCounts(h, "total") }

// parseCounts reads the request and token counters of a usage hash whose field names start
// with prefix: requests and inputTokens, or with "total" totalRequests and totalInputTokens.
func parseCounts(h map[string]string, prefix string) Usage {
	field := func(name string) string {
		if prefix == "" {
			return name
		}
		return prefix + strings.ToUpper(name[:1]) + name[1:]
	}
	var u Usage
	u.Requests, _ = num(h, field("requests"))
	u.Input, _ = num(h, field("inputTokens"))
	u.Output, _ = num(h, field("outputTokens"))
	u.CacheCreate, _ = num(h, field("cacheCreateTokens"))
	u.CacheRead, _ = num(h, field("cacheReadTokens"))
	u.Ephemeral5m, _ = num(h, field("ephemeral5mTokens"))
	u.Ephemeral1h, _ = num(h, field("ephemeral1hTokens"))
	return u
}
