// Package controlplane serves the admin API and owns everything operators change: relay keys,
// upstream accounts and their OAuth tokens, the admin account, and the configuration the
// sidecars run.
//
// # Snapshot distribution
//
// Distribution (distribution.go) assembles the configuration pipeline from parts that each
// do one job, following go-control-plane's pkg/cache/v3 (a snapshot cache that does not care
// who produces snapshots):
//
//	configdist.Source         reads the operator's HCL directory (fsnotify on the directory,
//	                          debounced, plus a periodic re-read and SIGHUP), validates and
//	                          compiles it once, keeps the diagnostics (file:line:col) of a
//	                          refused edit while the last good snapshot stays; Status is
//	                          GET /admin/config/status.
//	StorePublisher            publisher.go: numbers each valid snapshot in Redis
//	                          (store.PublishConfig), so every control plane serves the same
//	                          version, announces it, and follows what the others publish
//	                          (Follow, Run: store.SubscribeConfig and a re-check).
//	configdist.SnapshotCache  the current configapi.Envelope with its compiled
//	                          *config.Runtime; the admin API reads the runtime from it
//	                          (trusted proxies, policies) without compiling again.
//	ConfigServer              configserver.go: the long-poll at configapi.Path (sidecar
//	                          tokens, ACK/NACK and health headers); Poll records the report
//	                          in the registry, then waits on the cache.
//	SidecarRegistry           sidecars.go: what each sidecar last reported, kept in the
//	                          store (GET /admin/sidecars, the sidecar alerts).
//
// The wire contract lives in config/configapi, which the sidecar imports instead of this
// package; the Redis side (keys, publish script, registry hash) lives in store/config.go.
//
// # Background jobs
//
// Server.RefreshTokens (tokenrefresh.go) runs the OAuth token refresh every interval and on a
// sidecar's 401 report, and the check for an emptied Redis (Bootstrap); Distribution.Run runs
// the directory watch and follows the other control planes, and on the way out releases the
// held long-polls (configdist.ErrShuttingDown, 503 with Retry-After).
//
// # Where to add an admin endpoint
//
// One row in adminRoutes (openapi_routes.go: method, path, public or not, handler), the
// handler on Server (answering with writeJSON / writeError and auditing changes with
// auditLog), the wire types in adminapi, the path in openapi.json (the test
// TestOpenAPIDocumentListsExactlyTheRegisteredRoutes fails until the route table and the
// document agree), a method on adminclient.Client and, when operators need it from a shell,
// a subcommand in cmd/claude-relay.
package controlplane
