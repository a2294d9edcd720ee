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
// A per-key limit is written in several places today (one limit table driving them all is
// still to come); a new one touches every step of this list, in order:
//
//  1. policyHCL in hcl.go (a pointer field with its hcl tag) and Policy in snapshot.go (a
//     plain field with its snake_case JSON name).
//  2. builder.policy in load.go copies it; validator.policy in validate.go bounds it (a
//     negative limit is refused with file:line:col).
//  3. store.KeyLimits (the per-key override, a pointer), controlplane's checkLimits and
//     adminapi.KeyLimits (the admin API) and the CLI's limit flags
//     (cmd/claude-relay/admin_manage.go).
//  4. sidecar's exchange.policy merges the override into the policy; limits.FromPolicy turns
//     the policy field into a Limit (name, what it counts, its window) the admission script
//     checks.
//  5. testdata/valid/full.hcl sets it (run the golden tests with -update and read the diff),
//     README's Limits table lists it, controlplane/openapi.json describes the override.
//
// Policy-only attributes skip step 3 and the override in step 4: limit_mode and limit_modes
// (how a limit holds, see Limit modes; a token or cost limit added here joins BudgetLimits),
// the per-conversation breakers (conversation_*_per_minute, limits.Limit.PerConversation),
// and the concurrency queue (queue_timeout, queue_max: limits.Set.QueueTimeout).
//
// # Adding a route option
//
// routeHCL in hcl.go, Route in snapshot.go, builder.route in load.go (copy, default, validate
// with the block's ranges), RouteRT in runtime.go when the request path needs it compiled
// (netip prefixes, durations, resolved references), testdata/valid/full.hcl and its golden
// file, README's Configuration section. The sidecar reads it from the matched RouteRT
// (exchange.route); a snapshot is immutable once compiled, so nothing else needs locking.
package config
