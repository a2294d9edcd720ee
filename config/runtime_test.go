package config

import (
	"math"
	"net/netip"
	"net/url"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func compileFile(t *testing.T, name string) *Runtime {
	t.Helper()
	snap, srcs, diags := Loader{LookupEnv: testEnv}.Load(filepath.Join("testdata", "valid", name))
	if diags.HasErrors() {
		t.Fatal(srcs.FormatDiagnostics(diags))
	}
	rt, err := Compile(snap)
	if err != nil {
		t.Fatal(err)
	}
	return rt
}

func compileDefault(t *testing.T) *Runtime {
	t.Helper()
	snap, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	rt, err := Compile(snap)
	if err != nil {
		t.Fatal(err)
	}
	return rt
}

func TestRouteMatching(t *testing.T) {
	def := compileDefault(t)
	full := compileFile(t, "full.hcl")
	tests := []struct {
		name         string
		rt           *Runtime
		method, path string
		want         string // route name; "" for no match
	}{
		{"exact path", def, "POST", "/v1/messages", "messages"},
		{"api alias", def, "POST", "/api/v1/messages", "messages"},
		{"claude alias", def, "POST", "/claude/v1/messages", "messages"},
		{"count_tokens is its own route", def, "POST", "/v1/messages/count_tokens", "count_tokens"},
		{"count_tokens alias", def, "POST", "/claude/v1/messages/count_tokens", "count_tokens"},
		{"models list", def, "GET", "/v1/models", "models"},
		{"model by id through /*", def, "GET", "/v1/models/claude-sonnet-4-5", "models"},
		{"alias /*", def, "GET", "/api/v1/models/claude-opus-4-1", "models"},
		{"wrong method", def, "GET", "/v1/messages", ""},
		{"unknown path", def, "POST", "/v1/complete", ""},
		{"no trailing-slash normalisation", def, "POST", "/v1/messages/", ""},
		{"prefix is not a path prefix without its slash", def, "GET", "/v1/modelsX", ""},
		{"exact wins over /*", full, "POST", "/v1/messages", "messages"},
		{"/* catches the rest", full, "GET", "/v1/anything/else", "anything"},
		{"lower-case methods were normalised", full, "POST", "/api/v1/messages", "messages"},
		{"no methods means any", full, "DELETE", "/v1/files/x", "anything"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, ok := tt.rt.Match(tt.method, tt.path)
			got := ""
			if ok {
				got = r.Name
			}
			if got != tt.want {
				t.Errorf("Match(%q, %q): got %q, want %q", tt.method, tt.path, got, tt.want)
			}
		})
	}
}

func TestLongestPrefixRouteWins(t *testing.T) {
	snap := &Snapshot{
		Server: Server{MaxBodyBytes: 1},
		Pools:  map[string]Pool{"p": validPool()},
		Routes: []Route{
			{Name: "short", Paths: []string{"/v1/*"}, Pool: "p"},
			{Name: "long", Paths: []string{"/v1/models/*"}, Pool: "p"},
		},
	}
	rt, err := Compile(snap)
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{"/v1/models/x": "long", "/v1/messages": "short"} {
		r, ok := rt.Match("GET", path)
		if !ok || r.Name != want {
			t.Errorf("Match(%q): got %v, want %q", path, r, want)
		}
	}
}

func TestMatchPathReportsRouteForWrongMethod(t *testing.T) {
	rt := compileDefault(t)
	r, ok := rt.MatchPath("/v1/messages")
	if !ok || r.Name != "messages" {
		t.Fatalf("got %v, %v, want the messages route", r, ok)
	}
	if r.AllowsMethod("GET") {
		t.Errorf("AllowsMethod(GET): got true, want false")
	}
}

func TestRouteRuntimeValues(t *testing.T) {
	rt := compileFile(t, "full.hcl")
	r, ok := rt.Match("POST", "/v1/messages")
	if !ok {
		t.Fatal("no route")
	}
	if r.Timeout != 10*time.Minute {
		t.Errorf("Timeout: got %v, want %v", r.Timeout, 10*time.Minute)
	}
	if r.Pool == nil || r.Pool.Name != "claude" || r.Pool.Park429For != 90*time.Second || r.Pool.StickyTTL != 30*time.Minute {
		t.Errorf("Pool: got %+v, want claude with 90s parking and 30m stickiness", r.Pool)
	}
	if !r.Pool.FailsOverOn(529) || r.Pool.FailsOverOn(500) {
		t.Errorf("FailsOverOn: got 529=%v 500=%v, want true false", r.Pool.FailsOverOn(529), r.Pool.FailsOverOn(500))
	}
	if r.Policy == nil || r.PolicyName != "team" || r.Policy.Concurrency != 4 {
		t.Errorf("Policy: got %q %+v, want team with concurrency 4", r.PolicyName, r.Policy)
	}
	other, _ := rt.Match("GET", "/v1/x")
	if other.Timeout != 0 || other.Policy != nil || other.Allowlist != nil {
		t.Errorf("defaults: got timeout %v policy %v allowlist %v, want zero values", other.Timeout, other.Policy, other.Allowlist)
	}
	if p, ok := rt.Policy("unlimited"); !ok || p.RequestsPerMinute != 0 {
		t.Errorf("Policy(unlimited): got %+v, %v", p, ok)
	}
}

func TestAllowlist(t *testing.T) {
	rt := compileFile(t, "full.hcl")
	office, _ := rt.Match("POST", "/v1/messages") // allowlist "office"
	open, _ := rt.Match("GET", "/v1/x")           // no allowlist
	tests := []struct {
		name  string
		route *RouteRT
		ip    string
		want  bool
	}{
		{"IPv4 inside a /8", office, "10.20.30.40", true},
		{"IPv4 outside", office, "11.0.0.1", false},
		{"bare IPv4 became /32", office, "192.168.1.7", true},
		{"neighbour of a bare IPv4", office, "192.168.1.8", false},
		{"IPv6 inside a /32", office, "2001:db8:1::5", true},
		{"IPv6 outside", office, "2001:db9::1", false},
		{"bare IPv6 became /128", office, "2001:db8:ffff::1", true},
		{"4in6 client is unmapped", office, "::ffff:10.1.2.3", true},
		{"4in6 client outside", office, "::ffff:11.1.2.3", false},
		{"zoned IPv6", office, "2001:db8::1%eth0", true},
		{"no allowlist admits all", open, "203.0.113.9", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.route.Allowed(netip.MustParseAddr(tt.ip)); got != tt.want {
				t.Errorf("Allowed(%s): got %v, want %v", tt.ip, got, tt.want)
			}
		})
	}
}

func TestTrustedProxy(t *testing.T) {
	def := compileDefault(t)
	full := compileFile(t, "full.hcl") // 10.0.0.0/8, ::ffff:192.168.0.0/112, fd00::1
	tests := []struct {
		name string
		rt   *Runtime
		ip   string
		want bool
	}{
		{"default trusts IPv4 loopback", def, "127.0.0.1", true},
		{"default trusts IPv6 loopback", def, "::1", true},
		{"default trusts mapped loopback", def, "::ffff:127.0.0.1", true},
		{"default distrusts others", def, "10.0.0.1", false},
		{"prefix with host bits was masked", full, "10.200.0.1", true},
		{"4in6 prefix was unmapped", full, "192.168.44.1", true},
		{"bare IPv6", full, "fd00::1", true},
		{"bare IPv6 neighbour", full, "fd00::2", false},
		{"loopback not trusted when not listed", full, "127.0.0.1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.rt.TrustedProxy(netip.MustParseAddr(tt.ip)); got != tt.want {
				t.Errorf("TrustedProxy(%s): got %v, want %v", tt.ip, got, tt.want)
			}
		})
	}
	if got := def.MaxBodyBytes(); got != 10<<20 {
		t.Errorf("MaxBodyBytes: got %v, want %v", got, 10<<20)
	}
}

func TestPriceLookup(t *testing.T) {
	def := compileDefault(t)
	full := compileFile(t, "full.hcl")
	tests := []struct {
		name      string
		rt        *Runtime
		model     string
		wantIn    float64
		wantOut   float64
		wantKnown bool
	}{
		{"opus 4.5 before the older opus 4 globs", def, "claude-opus-4-5-20251101", 5, 25, true},
		{"opus 4.1", def, "claude-opus-4-1-20250805", 15, 75, true},
		{"opus 4", def, "claude-opus-4-20250514", 15, 75, true},
		{"sonnet 4.5", def, "claude-sonnet-4-5-20250929", 3, 15, true},
		{"sonnet 4", def, "claude-sonnet-4-20250514", 3, 15, true},
		{"sonnet 3.7", def, "claude-3-7-sonnet-20250219", 3, 15, true},
		{"haiku 4.5", def, "claude-haiku-4-5-20251001", 1, 5, true},
		{"haiku 3.5", def, "claude-3-5-haiku-20241022", 0.8, 4, true},
		{"haiku 3", def, "claude-3-haiku-20240307", 0.25, 1.25, true},
		{"unknown model gets the fallback", def, "claude-mystery-9", 15, 75, false},
		{"first glob in declaration order wins", full, "claude-sonnet-4-5-20250929", 3, 15, true},
		{"later broader glob", full, "claude-sonnet-4-20250514", 1, 2, true},
		{"custom fallback", full, "gpt-4o", 15, 75, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, known := tt.rt.Price(tt.model)
			if p.Input != tt.wantIn || p.Output != tt.wantOut || known != tt.wantKnown {
				t.Errorf("Price(%q): got %v/%v known=%v, want %v/%v known=%v", tt.model, p.Input, p.Output, known, tt.wantIn, tt.wantOut, tt.wantKnown)
			}
		})
	}
}

func TestCostArithmetic(t *testing.T) {
	sonnet := Price{Input: 3, Output: 15, CacheWrite5m: 3.75, CacheWrite1h: 6, CacheRead: 0.30}
	tests := []struct {
		name  string
		usage TokenCounts
		want  float64
	}{
		{"nothing", TokenCounts{}, 0},
		{"one million input", TokenCounts{Input: 1_000_000}, 3},
		{"one million output", TokenCounts{Output: 1_000_000}, 15},
		{"every kind", TokenCounts{Input: 1000, Output: 500, CacheWrite5m: 2000, CacheWrite1h: 4000, CacheRead: 10000},
			(1000*3 + 500*15 + 2000*3.75 + 4000*6 + 10000*0.30) / 1e6},
		{"cache read only", TokenCounts{CacheRead: 1_000_000}, 0.30},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := sonnet.Cost(tt.usage); math.Abs(got-tt.want) > 1e-12 {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestUpstreamPath(t *testing.T) {
	tests := []struct{ in, want string }{
		{"/v1/messages", "/v1/messages"},
		{"/api/v1/messages", "/v1/messages"},
		{"/claude/v1/messages/count_tokens", "/v1/messages/count_tokens"},
		{"/api/v1/models/claude-x", "/v1/models/claude-x"},
		{"/health", "/health"},
		{"/api/v1", "/api/v1"},
		{"/a/v1/b/v1/c", "/v1/b/v1/c"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := UpstreamPath(tt.in); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func validPool() Pool {
	return Pool{Strategy: StrategyPriority, FailoverMaxAttempts: 1, ParkOn429: ParkOn429Fixed, Park429For: "1m", StickyTTL: "1h"}
}

func validSnapshot() *Snapshot {
	return &Snapshot{
		Server:     Server{TrustedProxies: []string{"127.0.0.1/32"}, MaxBodyBytes: 1024},
		Allowlists: map[string]Allowlist{"office": {CIDRs: []string{"10.0.0.0/8"}}},
		Policies:   map[string]Policy{"team": {Concurrency: 1}},
		Pools:      map[string]Pool{"p": validPool()},
		Routes:     []Route{{Name: "r", Paths: []string{"/v1/messages"}, Pool: "p", Allowlist: "office", Policy: "team", Timeout: "1m"}},
		Pricing:    []Price{{Model: "claude-*", Input: 1}},
	}
}

func TestCompileRejectsBadWireSnapshot(t *testing.T) {
	if _, err := Compile(validSnapshot()); err != nil {
		t.Fatalf("valid snapshot: got %v, want nil", err)
	}
	tests := []struct {
		name   string
		mutate func(s *Snapshot)
		want   []string
	}{
		{"bad trusted proxy", func(s *Snapshot) { s.Server.TrustedProxies = []string{"nope"} }, []string{`server trusted_proxies[0]: "nope" is not an IP address`}},
		{"zero body cap", func(s *Snapshot) { s.Server.MaxBodyBytes = 0 }, []string{"server max_body_bytes: max_body_bytes must be a positive"}},
		{"bad cidr", func(s *Snapshot) { s.Allowlists["office"] = Allowlist{CIDRs: []string{"10.0.0.0/99"}} }, []string{`allowlist "office" cidrs[0]`}},
		{"negative limit", func(s *Snapshot) { s.Policies["team"] = Policy{TokensPerDay: -1} }, []string{`policy "team" tokens_per_day: tokens_per_day must be 0`}},
		{"unknown strategy", func(s *Snapshot) { p := validPool(); p.Strategy = "magic"; s.Pools["p"] = p }, []string{`pool "p" strategy: strategy "magic" is not one of`}},
		{"zero attempts", func(s *Snapshot) { p := validPool(); p.FailoverMaxAttempts = 0; s.Pools["p"] = p }, []string{`pool "p" failover.max_attempts`}},
		{"missing durations", func(s *Snapshot) { p := validPool(); p.Park429For = ""; p.StickyTTL = "x"; s.Pools["p"] = p }, []string{`pool "p" park_429_for`, `pool "p" sticky_ttl`}},
		{"unknown references", func(s *Snapshot) { s.Routes[0].Pool = "q"; s.Routes[0].Allowlist = "x"; s.Routes[0].Policy = "y" },
			[]string{`route "r" pool: there is no pool named "q"`, `route "r" allowlist`, `route "r" policy`}},
		{"duplicate route name", func(s *Snapshot) { s.Routes = append(s.Routes, Route{Name: "r", Paths: []string{"/x"}, Pool: "p"}) }, []string{`route "r": route "r" is declared twice`}},
		{"path claimed twice", func(s *Snapshot) {
			s.Routes = append(s.Routes, Route{Name: "s", Paths: []string{"/v1/messages"}, Pool: "p"})
		},
			[]string{`route "s" paths[0]: path "/v1/messages" is already claimed by route "r"`}},
		{"relative path", func(s *Snapshot) { s.Routes[0].Paths = []string{"v1"} }, []string{`route "r" paths[0]: path "v1" must start with "/"`}},
		{"path no request can have", func(s *Snapshot) { s.Routes[0].Paths = []string{"/v1/../files", "/v1/a;b/*"} },
			[]string{`route "r" paths[0]: path "/v1/../files" cannot match any request`, `route "r" paths[1]: path "/v1/a;b/*" cannot match`}},
		{"bad timeout", func(s *Snapshot) { s.Routes[0].Timeout = "0s" }, []string{`route "r" timeout: duration "0s" must be positive`}},
		{"negative price", func(s *Snapshot) { s.Fallback.CacheRead = -1 }, []string{"pricing_fallback cache_read: cache_read must be 0 or more"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := validSnapshot()
			tt.mutate(s)
			rt, err := Compile(s)
			if err == nil {
				t.Fatalf("got runtime %v, want an error", rt)
			}
			for _, want := range tt.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("got %q, want it to contain %q", err, want)
				}
			}
		})
	}
	if _, err := Compile(nil); err == nil {
		t.Error("Compile(nil): got nil error, want one")
	}
}

func TestHotPathDoesNotAllocate(t *testing.T) {
	rt := compileFile(t, "full.hcl")
	r, _ := rt.Match("POST", "/v1/messages")
	ip := netip.MustParseAddr("::ffff:10.1.2.3")
	allocs := testing.AllocsPerRun(100, func() {
		rt.Match("POST", "/api/v1/messages")
		rt.Match("GET", "/v1/anything")
		r.Allowed(ip)
		rt.TrustedProxy(ip)
		rt.Price("claude-sonnet-4-5-20250929")
		UpstreamPath("/api/v1/messages")
		rt.Resolve("POST", "/api/v1/messages")
		rt.Resolve("GET", "/v1/anything/else")
		CheckRequestPath("/api/v1/messages", "/api/v1/messages")
		CheckRequestPath("/v1/models/claude%2Dx", "/v1/models/claude-x")
		rt.PassResponseHeader("Anthropic-Ratelimit-Unified-Reset")
		rt.PassResponseHeader("Set-Cookie")
	})
	if allocs != 0 {
		t.Errorf("got %v allocations, want 0", allocs)
	}
}

func TestRequestPathRules(t *testing.T) {
	tests := []struct {
		escaped, decoded string
		want             string // "" when the path is accepted, else a part of the error
	}{
		{"/v1/messages", "/v1/messages", ""},
		{"/v1/models/claude-sonnet-4-5-20250929", "/v1/models/claude-sonnet-4-5-20250929", ""},
		{"/v1/models/claude-3-5-sonnet-v2@20241022", "/v1/models/claude-3-5-sonnet-v2@20241022", ""},
		{"/v1/models/a.b_c~d:e", "/v1/models/a.b_c~d:e", ""},
		{"/v1/models/...", "/v1/models/...", ""},
		{"/v1/models/..x", "/v1/models/..x", ""},
		{"/v1/models/%41", "/v1/models/A", ""},
		{"/v1/models/", "/v1/models/", ""},
		{"/", "/", ""},
		{"/v1/models/..", "/v1/models/..", "dot segment"},
		{"/v1/models/../files", "/v1/models/../files", "dot segment"},
		{"/v1/models/%2e%2e/files", "/v1/models/../files", "dot segment"},
		{"/./v1/messages", "/./v1/messages", "dot segment"},
		{"/v1/models/.", "/v1/models/.", "dot segment"},
		{"/v1/models/x%2fy", "/v1/models/x/y", "encoded slash"},
		{"/v1/models/x%2Fy", "/v1/models/x/y", "encoded slash"},
		{"/v1/models/%25", "/v1/models/%", `"%"`},
		{"/v1/models/%5c", "/v1/models/\\", `"\\"`},
		{"/v1/models/..;", "/v1/models/..;", `";"`},
		{"/v1/models/%20", "/v1/models/ ", `" "`},
		{"/v1/models/%00", "/v1/models/\x00", `"\x00"`},
		{"/v1/models/%C3%A9", "/v1/models/é", `"\xc3"`},
		{"*", "*", `start with "/"`},
		{"", "", `start with "/"`},
	}
	for _, tt := range tests {
		t.Run(tt.escaped, func(t *testing.T) {
			err := CheckRequestPath(tt.escaped, tt.decoded)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("got %v, want the path accepted", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("got %v, want an error containing %s", err, tt.want)
			}
		})
	}
}

func TestResolveCutsWhereTheRoutePathIsCut(t *testing.T) {
	rt, err := Compile(&Snapshot{
		Server: Server{MaxBodyBytes: 1},
		Pools:  map[string]Pool{"p": validPool()},
		Routes: []Route{
			{Name: "models", Paths: []string{"/v1/models/*", "/api/v1/models/*", "/v1/models"}, Pool: "p"},
			{Name: "messages", Paths: []string{"/claude/v1/messages"}, Pool: "p"},
			{Name: "other", Paths: []string{"/other/*"}, Pool: "p"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ path, route, upstream string }{
		{"/v1/models", "models", "/v1/models"},
		{"/v1/models/x", "models", "/v1/models/x"},
		{"/api/v1/models/x", "models", "/v1/models/x"},
		// The request path's own "/v1/" does not move the cut: it stays where the route
		// path's alias ends, so the upstream path stays under the route.
		{"/api/v1/models/x/v1/files", "models", "/v1/models/x/v1/files"},
		{"/claude/v1/messages", "messages", "/v1/messages"},
		{"/other/v1/files", "other", "/other/v1/files"},
	}
	for _, tt := range tests {
		r, up, ok := rt.Resolve("GET", tt.path)
		if !ok || r.Name != tt.route || up != tt.upstream {
			t.Errorf("Resolve(%q): got %v %q %v, want route %q, upstream %q", tt.path, r, up, ok, tt.route, tt.upstream)
		}
	}
}

// TestUpstreamPathStaysInsideTheRoute resolves, for every path of the default routes,
// request paths with suffixes built from tricky segments: whatever CheckRequestPath
// accepts resolves to an upstream path that, even after an upstream resolves dot segments
// (path.Clean), is still under the upstream form of the route path it matched.
func TestUpstreamPathStaysInsideTheRoute(t *testing.T) {
	rt := compileDefault(t)
	segs := []string{"", ".", "..", "...", "x", "v1", "files", "%2e%2e", "%2f", "..%2f", "claude-sonnet-4-5"}
	for _, route := range rt.Routes() {
		for _, p := range route.Paths {
			fixed, wild := strings.CutSuffix(p, "*")
			base := UpstreamPath(fixed)
			var suffixes []string
			if wild {
				for _, a := range segs {
					for _, b := range segs {
						suffixes = append(suffixes, a, a+"/"+b)
					}
				}
			} else {
				suffixes = []string{""}
			}
			for _, suffix := range suffixes {
				escaped := fixed + suffix
				u, err := url.Parse(escaped)
				if err != nil {
					continue
				}
				if CheckRequestPath(u.EscapedPath(), u.Path) != nil {
					continue
				}
				_, up, ok := rt.Resolve(route.Methods[0], u.Path)
				if !ok {
					continue // a more specific route claimed it; its own paths are checked too
				}
				cleaned := path.Clean(up)
				if strings.HasSuffix(up, "/") && cleaned != "/" {
					cleaned += "/"
				}
				if !strings.HasPrefix(up, base) || !strings.HasPrefix(cleaned, strings.TrimSuffix(base, "/")) {
					t.Errorf("%s: upstream %q (cleaned %q) is outside %q", escaped, up, cleaned, base)
				}
			}
		}
	}
}

func TestResponseHeaderAllowlist(t *testing.T) {
	def := compileDefault(t)
	full := compileFile(t, "full.hcl") // adds x-envoy-upstream-service-time and anthropic-priority-*
	tests := []struct {
		name        string
		def, extend bool
	}{
		{"Content-Type", true, true},
		{"Request-Id", true, true},
		{"Retry-After", true, true},
		{"Retry-After-Ms", true, true},
		{"X-Should-Retry", true, true},
		{"Anthropic-Ratelimit-Unified-Reset", true, true},
		{"Anthropic-Ratelimit-Requests-Remaining", true, true},
		{"Set-Cookie", false, false},
		{"Anthropic-Organization-Id", false, false},
		{"Transfer-Encoding", false, false},
		{"X-Relay-Error", false, false},
		{"Server", false, false},
		{"Via", false, false},
		{"X-Debug-Upstream-Host", false, false},
		{"Anthropic-Workspace-Id", false, false},
		{"X-Envoy-Upstream-Service-Time", false, true},
		{"Anthropic-Priority-Input-Tokens-Limit", false, true},
	}
	for _, tt := range tests {
		if got := def.PassResponseHeader(tt.name); got != tt.def {
			t.Errorf("default: PassResponseHeader(%q): got %v, want %v", tt.name, got, tt.def)
		}
		if got := full.PassResponseHeader(tt.name); got != tt.extend {
			t.Errorf("extended: PassResponseHeader(%q): got %v, want %v", tt.name, got, tt.extend)
		}
	}
	// A glob that covers a withheld header does not pass it.
	snap := validSnapshot()
	snap.Server.ResponseHeaders = []string{"*", "set-*", "anthropic-*"}
	rt, err := Compile(snap)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"Set-Cookie", "Anthropic-Organization-Id", "Connection"} {
		if rt.PassResponseHeader(h) {
			t.Errorf("PassResponseHeader(%q) under %q: got true, want false", h, snap.Server.ResponseHeaders)
		}
	}
	if !rt.PassResponseHeader("X-Anything") {
		t.Error(`PassResponseHeader("X-Anything") under "*": got false, want true`)
	}
}

func TestClaudeCodesDefaultModelCostsWhatClaudeCodeSays(t *testing.T) {
	def, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	rt, err := Compile(def)
	if err != nil {
		t.Fatal(err)
	}
	p, known := rt.Price("claude-opus-4-8")
	if !known {
		t.Fatal("claude-opus-4-8 has no price")
	}
	want := Price{Model: "claude-opus-4-8*", Input: 5, Output: 25, CacheWrite5m: 6.25, CacheWrite1h: 10, CacheRead: 0.5}
	if diff := cmp.Diff(want, p); diff != "" {
		t.Errorf("price (-want +got):\n%s", diff)
	}
	// 25*5 + 20*25 + 10*6.25 + 5*0.5 = 690 micro-USD.
	if got := p.Cost(TokenCounts{Input: 25, Output: 20, CacheWrite5m: 10, CacheRead: 5}); got != 0.00069 {
		t.Errorf("got $%v, want $0.00069", got)
	}
}

func TestLongContextTierPricesEveryTokenOfALongPrompt(t *testing.T) {
	def, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	rt, err := Compile(def)
	if err != nil {
		t.Fatal(err)
	}
	sonnet, _ := rt.Price("claude-sonnet-4-5-20250929")
	haiku, _ := rt.Price("claude-haiku-5-5")
	tests := []struct {
		name  string
		price Price
		usage TokenCounts
		want  float64 // micro-USD
	}{
		{"sonnet 4.5 at 200k exactly: standard", sonnet, TokenCounts{Input: 100_000, CacheRead: 100_000, Output: 1000}, 100_000*3 + 100_000*0.3 + 1000*15},
		{"sonnet 4.5 one token over: every token at the long-context rates", sonnet, TokenCounts{Input: 100_001, CacheRead: 100_000, Output: 1000}, 100_001*6 + 100_000*0.6 + 1000*22.5},
		{"cache writes count toward the prompt", sonnet, TokenCounts{Input: 1, CacheWrite5m: 150_000, CacheWrite1h: 50_000}, 1*6 + 150_000*7.5 + 50_000*12},
		{"haiku 5.5 at 100k: standard", haiku, TokenCounts{Input: 100_000, Output: 10}, 100_000*0.1 + 10*0.5},
		{"haiku 5.5 over 100k: five times", haiku, TokenCounts{Input: 100_001, Output: 10}, 100_001*0.5 + 10*2.5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.price.Cost(tt.usage); math.Abs(got-tt.want/1e6) > 1e-12 {
				t.Errorf("got $%v, want $%v", got, tt.want/1e6)
			}
		})
	}
}

func TestLongContextTierNeedsAThreshold(t *testing.T) {
	src := pricingBase + "pricing \"m*\" {\n  input = 1\n  output = 1\n  cache_write_5m = 1\n  cache_write_1h = 1\n  cache_read = 1\n  long_context {\n    above_input_tokens = 0\n    input = 2\n    output = 2\n    cache_write_5m = 2\n    cache_write_1h = 2\n    cache_read = -2\n  }\n}\n"
	_, srcs, diags := LoadFiles(map[string][]byte{"a.hcl": []byte(src)})
	got := srcs.FormatDiagnostics(diags)
	for _, want := range []string{"above_input_tokens must be a positive number", "long_context.cache_read must be 0 or more"} {
		if !strings.Contains(got, want) {
			t.Errorf("got %q, want it to contain %q", got, want)
		}
	}
}
