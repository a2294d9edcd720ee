package config

import (
	"cmp"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Runtime is a Snapshot compiled into what the sidecar runs on: parsed
// prefixes and durations, resolved references and a route matcher. It is
// immutable and safe for concurrent use; a configuration change builds a new
// one and swaps it in.
type Runtime struct {
	// Snapshot is the snapshot this runtime was compiled from; treat it as
	// read-only.
	Snapshot *Snapshot

	routes   []*RouteRT
	exact    map[string]routeTarget
	prefixes []prefixRoute // longest prefix first
	trusted  []netip.Prefix
	pools    map[string]*PoolRT
	policies map[string]*Policy
	// responseHeaders decides which upstream response headers reach clients.
	responseHeaders headerFilter
}

// routeTarget is what a route path resolves to: the route, and how many leading bytes of a
// request path the upstream path leaves out (the client-side alias before "/v1/").
type routeTarget struct {
	route *RouteRT
	cut   int
}

type prefixRoute struct {
	prefix string // the path without its final "*", e.g. "/v1/models/"
	routeTarget
}

// RouteRT is a compiled route.
type RouteRT struct {
	Name  string
	Paths []string
	// Methods are upper-case; nil allows any.
	Methods []string
	Pool    *PoolRT
	// Allowlist is nil when every client is allowed.
	Allowlist     []netip.Prefix
	AllowlistName string
	// Policy applies to keys that name none; nil means no default policy.
	Policy     *Policy
	PolicyName string
	// Timeout is 0 when REQUEST_TIMEOUT applies.
	Timeout time.Duration
}

// PoolRT is a compiled pool.
type PoolRT struct {
	Name                string
	Strategy            string
	FailoverMaxAttempts int
	FailoverOn          []int
	ParkOn429           string
	Park429For          time.Duration
	StickyTTL           time.Duration
	Park529For          time.Duration
	Park5xxAfter        int
	Park5xxWindow       time.Duration
	Park5xxFor          time.Duration
	StopAtUtilization   float64
	StickyWait          time.Duration
}

// FailsOverOn reports whether an upstream status triggers a failover.
func (p *PoolRT) FailsOverOn(status int) bool {
	return slices.Contains(p.FailoverOn, status)
}

// Compile validates s and builds its Runtime. It never fails on a snapshot
// Load produced; for snapshots that came over the wire it reports every
// problem at once.
func Compile(s *Snapshot) (*Runtime, error) {
	if s == nil {
		return nil, errors.New("compile config: no snapshot")
	}
	if problems := validate(s); len(problems) > 0 {
		errs := make([]error, len(problems))
		for i, p := range problems {
			errs[i] = p
		}
		return nil, errors.Join(errs...)
	}
	// Validation guarantees that every parse below succeeds.
	rt := &Runtime{
		Snapshot: s,
		exact:    make(map[string]routeTarget),
		trusted:  mustPrefixes(s.Server.TrustedProxies),
		pools:    make(map[string]*PoolRT, len(s.Pools)),
		policies: make(map[string]*Policy, len(s.Policies)),
	}
	rt.responseHeaders = newHeaderFilter(s.Server.ResponseHeaders)
	for name, p := range s.Pools {
		park, _ := parseDuration(p.Park429For)
		ttl, _ := parseDuration(p.StickyTTL)
		// Snapshots saved by older versions lack the parking settings: take
		// the defaults.
		p529, _ := parseDuration(cmp.Or(p.Park529For, DefaultPark529For))
		p5w, _ := parseDuration(cmp.Or(p.Park5xxWindow, DefaultPark5xxWindow))
		p5f, _ := parseDuration(cmp.Or(p.Park5xxFor, DefaultPark5xxFor))
		var stickyWait time.Duration
		if p.StickyWait != "" {
			stickyWait, _ = parseDuration(p.StickyWait)
		}
		rt.pools[name] = &PoolRT{
			Name:                name,
			Strategy:            p.Strategy,
			FailoverMaxAttempts: p.FailoverMaxAttempts,
			FailoverOn:          slices.Clone(p.FailoverOn),
			ParkOn429:           p.ParkOn429,
			Park429For:          park,
			StickyTTL:           ttl,
			Park529For:          p529,
			Park5xxAfter:        p.Park5xxAfter,
			Park5xxWindow:       p5w,
			Park5xxFor:          p5f,
			StopAtUtilization:   p.StopAtUtilization,
			StickyWait:          stickyWait,
		}
	}
	for name, p := range s.Policies {
		p.Models = slices.Clone(p.Models)
		p.DeniedModels = slices.Clone(p.DeniedModels)
		p.Clients = slices.Clone(p.Clients)
		rt.policies[name] = &p
	}
	for _, r := range s.Routes {
		route := &RouteRT{
			Name:          r.Name,
			Paths:         slices.Clone(r.Paths),
			Methods:       slices.Clone(r.Methods),
			Pool:          rt.pools[r.Pool],
			AllowlistName: r.Allowlist,
			Policy:        rt.policies[r.Policy],
			PolicyName:    r.Policy,
		}
		if r.Allowlist != "" {
			route.Allowlist = mustPrefixes(s.Allowlists[r.Allowlist].CIDRs)
		}
		if r.Timeout != "" {
			route.Timeout, _ = parseDuration(r.Timeout)
		}
		for _, p := range r.Paths {
			fixed, wild := strings.CutSuffix(p, "*")
			t := routeTarget{route: route, cut: len(fixed) - len(UpstreamPath(fixed))}
			if wild {
				rt.prefixes = append(rt.prefixes, prefixRoute{prefix: fixed, routeTarget: t})
			} else {
				rt.exact[p] = t
			}
		}
		rt.routes = append(rt.routes, route)
	}
	slices.SortStableFunc(rt.prefixes, func(a, b prefixRoute) int { return len(b.prefix) - len(a.prefix) })
	return rt, nil
}

func mustPrefixes(in []string) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(in))
	for _, s := range in {
		if p, err := ParsePrefix(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// Match finds the route for a request: an exact path first, then the
// longest "/*" prefix; the route must also allow the method.
func (rt *Runtime) Match(method, path string) (*RouteRT, bool) {
	r, ok := rt.MatchPath(path)
	if !ok || !r.AllowsMethod(method) {
		return nil, false
	}
	return r, true
}

// Resolve is Match that also returns the path to send upstream: the request path without
// the client-side alias of the route path it matched, i.e. without what precedes that
// route path's first "/v1/" ("/api/v1/models/x" under "/api/v1/models/*" becomes
// "/v1/models/x"). The upstream path therefore always starts with the upstream form of the
// matched route path; with a path CheckRequestPath accepted (no dot segment, no encoded
// slash) it cannot leave that route's subtree however the upstream normalises it.
func (rt *Runtime) Resolve(method, path string) (*RouteRT, string, bool) {
	t, ok := rt.lookup(path)
	if !ok || !t.route.AllowsMethod(method) {
		return nil, "", false
	}
	return t.route, path[t.cut:], true
}

// MatchPath finds the route that claims path, whatever the method, so that
// a caller can tell 404 from 405.
func (rt *Runtime) MatchPath(path string) (*RouteRT, bool) {
	t, ok := rt.lookup(path)
	return t.route, ok
}

// lookup finds the route path that claims path: an exact one first, then the longest
// "/*" prefix.
func (rt *Runtime) lookup(path string) (routeTarget, bool) {
	if t, ok := rt.exact[path]; ok {
		return t, true
	}
	for _, p := range rt.prefixes {
		if strings.HasPrefix(path, p.prefix) {
			return p.routeTarget, true
		}
	}
	return routeTarget{}, false
}

// Routes returns the compiled routes in declaration order.
func (rt *Runtime) Routes() []*RouteRT { return slices.Clone(rt.routes) }

// Pool returns the named pool.
func (rt *Runtime) Pool(name string) (*PoolRT, bool) {
	p, ok := rt.pools[name]
	return p, ok
}

// Policy returns the named policy, as a key that references one needs it.
func (rt *Runtime) Policy(name string) (*Policy, bool) {
	p, ok := rt.policies[name]
	return p, ok
}

// AllowsMethod reports whether the route accepts method.
func (r *RouteRT) AllowsMethod(method string) bool {
	return r.Methods == nil || slices.Contains(r.Methods, method)
}

// Allowed reports whether a client at ip may use the route.
func (r *RouteRT) Allowed(ip netip.Addr) bool {
	if r.Allowlist == nil {
		return true
	}
	return containsAddr(r.Allowlist, ip)
}

// TrustedProxy reports whether ip's X-Forwarded-For header is honoured.
func (rt *Runtime) TrustedProxy(ip netip.Addr) bool {
	return containsAddr(rt.trusted, ip)
}

func containsAddr(prefixes []netip.Prefix, ip netip.Addr) bool {
	ip = ip.Unmap().WithZone("")
	for _, p := range prefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// MaxBodyBytes is the request body cap.
func (rt *Runtime) MaxBodyBytes() int64 { return rt.Snapshot.Server.MaxBodyBytes }

// UsageRetention returns how long hourly and daily usage report buckets are kept.
func (rt *Runtime) UsageRetention() (hourly, daily time.Duration) {
	return rt.Snapshot.Usage.Retention()
}

// Retention returns the block's retentions, the defaults where unset (u may be nil).
func (u *Usage) Retention() (hourly, daily time.Duration) {
	hourly, daily = DefaultHourlyRetention, DefaultDailyRetention
	if u == nil {
		return hourly, daily
	}
	if d, err := ParseRetention(u.HourlyRetention); err == nil {
		hourly = d
	}
	if d, err := ParseRetention(u.DailyRetention); err == nil {
		daily = d
	}
	return hourly, daily
}

// LedgerBounds returns the request ledger's bounds and whether it is on (u may be nil); an unset
// bound is 0 (the store's default).
func (u *Usage) LedgerBounds() (retention time.Duration, maxPerDay int64, on bool) {
	if u == nil || !u.Ledger {
		return 0, 0, false
	}
	retention, _ = ParseRetention(u.LedgerRetention)
	return retention, u.LedgerMaxRecordsPerDay, true
}

// Price returns the price of model: the first pricing glob that matches, in
// declaration order, with known true; else the fallback with known false.
func (rt *Runtime) Price(model string) (Price, bool) {
	for _, p := range rt.Snapshot.Pricing {
		if MatchGlob(p.Model, model) {
			return p, true
		}
	}
	return rt.Snapshot.Fallback, false
}

// UpstreamPath maps a route path to its upstream form: the suffix from the
// first "/v1/" ("/api/v1/messages" becomes "/v1/messages"), or path
// unchanged when it has none. Requests are mapped by Resolve, which cuts a
// request path where its matched route path is cut, never by where "/v1/"
// appears in the request path itself.
func UpstreamPath(path string) string {
	if i := strings.Index(path, "/v1/"); i > 0 {
		return path[i:]
	}
	return path
}

// ClientIP is the address a request comes from: the socket peer, or, when the peer is a
// trusted proxy, the right-most address in X-Forwarded-For that is not itself a trusted
// proxy (entries further left are the client's to forge). A malformed entry stops the walk.
// rt may be nil (nothing trusted).
func (rt *Runtime) ClientIP(remoteAddr string, xff []string) netip.Addr {
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	ip := ap.Addr().Unmap()
	if rt == nil || !rt.TrustedProxy(ip) {
		return ip
	}
	for i := len(xff) - 1; i >= 0; i-- {
		parts := strings.Split(xff[i], ",")
		for j := len(parts) - 1; j >= 0; j-- {
			a, err := netip.ParseAddr(strings.TrimSpace(parts[j]))
			if err != nil {
				return ip
			}
			a = a.Unmap()
			if !rt.TrustedProxy(a) {
				return a
			}
			ip = a
		}
	}
	return ip
}
