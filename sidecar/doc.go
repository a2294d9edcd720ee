// Package sidecar is the data plane: it authenticates relay keys, picks an upstream account,
// relays Messages API requests with unbuffered streaming and records token usage.
//
// # The request path, by function
//
// Server.ServeHTTP refuses a path that could leave its route (config.CheckRequestPath: dot
// segments, encoded slashes) before routing; then the mux sends "/" to serveRoot, /health
// and /metrics to their handlers and everything else to serveRelay, which runs one exchange:
//
//  1. Runtime.Resolve matches the route and builds the upstream path; Runtime.ClientIP and
//     Route.Allowed apply the allowlist (403).
//  2. credential + Authenticator.Authenticate (CachedAuth over the auth plugin; the
//     principal's rules decoded by principalFrom with plugins/contract/keyrules) give the
//     Principal (401, or 503 when the key store is down).
//  3. exchange.readBody reads the body under the body timeouts (408, 413, 415);
//     request.Scan finds the model, metadata.user_id and the first message without decoding it;
//     exchange.checkModel applies the policy's model and client rules (403, 400).
//  4. exchange.admit: exchange.policy merges the key's overrides into its policy, and
//     limits.Limiter.AdmitUpTo checks every counted limit (the key's, and the conversation's
//     from exchange.sessionKey), takes a concurrency lease and reserves the request's worst
//     case (exchange.worstCase, for reserve-mode limits) in one Redis script (429 with
//     retry-after and x-relay-limit headers, refusalHeaders); with a queue_timeout it waits
//     there for a slot (limits/queue.go; exchange.observeQueue records the wait). exchange.finishLease charges,
//     releases and settles the reservation on every exit path.
//  5. exchange.forward opens the upstream call (startUpstreamCall: the idle deadline) and
//     asks exchange.schedule for a plan: it lists schedulable accounts (Accounts.Upstreams),
//     narrows them to the key's binding (boundAccounts) and asks sched.Scheduler.Plan for an
//     ordered plan (sticky session first, parked accounts skipped). For each account,
//     exchange.acquireAccount takes a place under its caps and exchange.try sends the request
//     (exchange.send; copyHeaders with forwardRequestHeader filters the client's headers) and
//     reports the outcome (sched.Scheduler.Report parks the account as it says): a failure
//     before the first byte moves on to the next account; noAccount answers when none can
//     serve. The account that answers is touched (Accounts.Touch) and its answer relayed.
//  6. exchange.relay reads: headers, copy, report, account. streaming.go does the copying:
//     exchange.copyBody writes the headers (exchange.writeHeader: copyHeaders with the
//     runtime's response header allowlist), copies and flushes the body as it arrives and
//     feeds every read to a usageTap; exchange.copyEnded answers for how the copy ended (an
//     upstream error after the first byte becomes an SSE error event, exchange.upstreamBroke;
//     a client gone is a 499).
//  7. The usageTap reads a stream with usage.StreamParser as it passes (a JSON answer with
//     usage.FromJSON); exchange.accountUsage prices it (config.Runtime.Price; a model no
//     price matches is charged pricing_fallback and counted as unpriced), charges the key's
//     limits and hands a UsageRecord to the UsageSink (Recorder), which never blocks. A
//     stream that ends before message_delta is charged usage.StreamParser.Estimate: at least
//     what it relayed.
//  8. Every refusal and failure is named where it happens (exchange.refusal or
//     exchange.failure before fail: "key_invalid", "limit_<name>", "upstream_timeout" …);
//     exchange.recordOutcome, deferred in serveRelay, hands the UsageSink a record for a
//     refused or failed request that recorded no usage (exchange.errorKind, and
//     exchange.countedModel, which keeps client-made model names out of the counters), with
//     its ledger entry (exchange.ledgerEntry, which also carries exchange.moved).
//
// # Background loops
//
//   - Recorder batches usage records into pipelined store writes, spools them to disk while
//     Redis is down and replays the spool, quarantining a batch the store refuses; records
//     without tokens (refusals) are shed first when its queue or backlog fills.
//   - limits' renewer renews live concurrency leases and reservations every TTL/3 in
//     pipelines.
//   - CachedAuth drops a key's cached answers (and every cached refusal) when the control
//     plane publishes a key change.
//   - StoreAccounts reloads the account list when the store announces an account change
//     (AccountChanges), polls the accounts version as a safety net, checks it per request only
//     while the list is empty, and writes account touches in throttled batches.
//   - configclient long-polls the control plane (or the local HCL in a standalone sidecar)
//     and calls Server.Apply.
//   - Server.ReportLoad writes the sidecar's requests in flight and streams (Server.Load) to
//     Redis when they change (looked at every 2 s, written at least every 30 s), for the
//     control plane's GET /admin/sidecars and the console's dashboard.
//
// # Hot swap
//
// Server.Apply compiles a snapshot into a config.Runtime and swaps one atomic pointer;
// a request loads the pointer once (serveRelay) and runs on that Runtime to its end, so a
// reload never changes a request in flight and never takes a lock on the hot path. Plugins
// swap the same way in plugins/host.
//
// # Health
//
// internal/health serves the public GET /health (component statuses only) and builds the
// operators' report; Server.Health is that report for the sidecar's components, the
// "config" one included, which the config client sends to the control plane with each
// poll (GET /admin/sidecars).
//
// # Not here
//
// What every process uses lives in its own package: internal/health (checks and their
// handler), store/decryptcache (the decrypt cache in front of the crypto provider) and
// plugins/contract/keyrules (how an auth provider's principal carries a key's rules).
//
// # Where to add …
//
//   - a route option: config (see "Adding a route option" in its package doc); the exchange
//     reads it from ex.route.
//   - a limit: config's "Adding a limit" checklist; the limiter side is limits.FromPolicy.
//   - a metric: internal/metrics' package doc; the sidecar's families are registered in
//     New (the serverMetrics literal in server.go) and resolved once where their labels are
//     fixed (tokenCounters).
package sidecar
