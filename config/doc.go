// Package config turns the operator's HCL files and environment into the validated, immutable configuration claude-relay runs on.
//
// # Two configuration types
//
// What the operator writes and what the program runs on are different
// types, on purpose (the Consul/Nomad pattern):
//
//   - The HCL-shaped structs in hcl.go are what the operator writes. They
//     mirror the blocks and attributes of the files, use pointers where
//     "absent" must differ from "zero", and never leave this package. The
//     loader keeps each block's body and ranges beside them, so that every
//     problem, however late it is found, points at file:line:col with the
//     source line.
//
//   - Snapshot is the compiled result: plain values (strings, numbers,
//     canonical CIDR prefixes, durations as Go duration strings) with stable
//     snake_case JSON names and no HCL left in it. It is what the control
//     plane versions and serves to sidecars, and what a sidecar keeps on disk
//     to start from when the control plane is down. Runtime is the same
//     configuration compiled for the request path: netip.Prefix,
//     time.Duration, resolved references and a route matcher.
//
// Keeping them apart means the wire format does not change when the HCL
// grows a convenience (env(), defaults, bare IPs in allowlists), diagnostics
// can stay precise without dragging ranges into the wire type, and the data
// plane never parses HCL.
//
// # Lifecycle
//
// Load (or LoadFiles) parses every *.hcl file of a directory in lexical
// order, decodes each block with gohcl, merges the files, fills defaults and
// validates, returning every diagnostic at once. The same validation runs
// again in Compile, which turns a Snapshot into a Runtime, so that a snapshot
// received over the wire is held to the rules a loaded one is. The
// operator's pricing blocks are merged over the price table of the embedded
// default.hcl (which Default compiles): operator rows are matched first, a
// repeated glob replaces its built-in row, pricing_defaults = false drops the
// built-in table, and a configuration without pricing_fallback takes the
// built-in one (see builder.inheritPricing).
//
// Who runs that lifecycle: configdist.Source loads and compiles a directory once per change
// and publishes the Snapshot (as a configapi.Envelope) with its Runtime into a
// configdist.SnapshotCache; the control plane serves that cache to sidecars, and a
// standalone sidecar's config client polls its own. A sidecar compiles what it receives
// once more in sidecar.Server.Apply, since the wire carries the Snapshot, not the Runtime.
//
// Expressions may call env("NAME") or env("NAME", "default") to read the
// environment; an empty variable counts as unset. env() refuses the relay's
// own secrets (IsRelaySecret: CRS_SECURITY__*, REDIS_URL, the Redis passwords,
// ADMIN_PASSWORD, …) without reading them, since every configuration value is
// published to sidecars and may reach relay users; and no diagnostic prints a
// value env() returned (redactEnv puts the variable's name in its place).
//
// # Secret fields
//
// An attribute that holds a secret (a webhook URL with a token, a signing
// key) is a secret field: written env("NAME"), decoded by builder.secret into
// a Secret that keeps only the variable's name. Its value never enters a
// Snapshot, so it is in no snapshot sent to sidecars, no API answer, no
// diagnostic and no log line; the process that uses it calls Secret.Resolve
// on its own environment. A literal written there is refused and masked in
// printed diagnostics (Sources.mask).
//
// # Limit modes
//
// A policy's token and cost limits hold in one of two modes (Policy.ModeOf):
// "charge", the default, admits while a counter is below its limit and adds
// the reported usage at the end, so concurrent requests can overshoot it by
// what those in flight at the last admission cost (with concurrency = N, by
// less than N worst-case requests); "reserve" reserves each request's worst
// case (its body's bytes as input tokens and its max_tokens as output, at the
// model's dearest rates) in the admission script and settles to the reported
// usage at the end, so the limit holds exactly but refuses requests whose
// worst case does not fit in what is left. Charge is the default because the
// worst case of a typical Claude Code request is tens of times its real cost:
// under reserve a few concurrent requests would hold a whole daily budget.
// Reserve is for limits that must never be exceeded (a prepaid total).
// Request limits and concurrency take no mode: they are counted when a
// request is admitted and are exact already. sidecar/limits implements both.
//
// # Environment
//
// LoadEnv reads the deployment contract's environment variables (PORT,
// REDIS_*, CRS_SECURITY__*, LOG_*, RUST_LOG, MAX_CONNECTIONS,
// REQUEST_TIMEOUT, …), with the process environment winning over a .env file
// read by ReadDotEnv; Env.CheckSecrets refuses weak secrets the way the
// deployment guide asks.
//
// # Adding a limit
//
// One table defines every per-key limit: limitTable in limits.go (its name, what it counts,
// its window, whether a key may override it and with which CLI flag, and where its value
// lives). Load, validation (negatives refused with file:line:col, and by the admin API), the
// key override merge (Policy.WithKeyLimits), limits.FromPolicy and the admin CLI's flags all
// read the table. A new limit is:
//
//  1. a pointer field in policyHCL (hcl.go) and a plain field in Policy (snapshot.go), with
//     the limit's snake_case name as its hcl and json tag;
//  2. a row in limitTable, at its place in the longest-window-first order (the order the
//     limiter checks, so a refusal names the limit that binds longest);
//  3. if a key may override it: a pointer field in KeyLimits (internal/keylimits; config,
//     store and adminapi name that one type), and the row's Flag and Usage;
//     controlplane/openapi.json's KeyLimits schema describes it;
//  4. testdata/valid/full.hcl sets it (run the golden tests with -update and read the diff),
//     and README's Limits table lists it.
//
// The table tests (limits_test.go) fail when a limit field is in one of the structs and not
// in the table or the other way round, when an accessor reaches another field, when
// full.hcl leaves a limit unset, or when openapi.json and the table differ; the merge,
// validation, limiter and CLI tests iterate the table, so they cover the new limit as is.
// A token or cost limit of a key is a budget (BudgetLimits: limit_mode and limit_modes reach
// it); a per-conversation breaker sets PerConversation and is policy-only.
//
// The concurrency queue (queue_timeout, queue_max, queue_keepalive: limits.Set.QueueTimeout,
// Policy.QueueKeepaliveEvery) is a policy attribute outside the table: durations and a
// waiter count, not counted limits.
//
// # Adding a route option
//
// routeHCL in hcl.go, Route in snapshot.go, builder.route in load.go (copy, default, validate
// with the block's ranges), RouteRT in runtime.go when the request path needs it compiled
// (netip prefixes, durations, resolved references), testdata/valid/full.hcl and its golden
// file, README's Configuration section. The sidecar reads it from the matched RouteRT
// (exchange.route); a snapshot is immutable once compiled, so nothing else needs locking.
package config
