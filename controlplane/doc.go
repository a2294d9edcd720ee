// Package controlplane serves the admin API and owns everything operators change: relay keys,
// upstream accounts and their OAuth tokens, the admin account, and the configuration the
// sidecars run.
//
// # Snapshot distribution
//
// Config watches the operator's HCL directory (fsnotify on the directory, debounced, plus a
// periodic re-read and announcements from other control planes), loads and validates it with
// package config, and publishes each valid change as a versioned configapi.Envelope in Redis
// (store), so that every control plane serves the same version; a broken edit is refused with
// its diagnostics (file:line:col) and the last good snapshot keeps being served. Sidecars
// long-poll configapi.Path with their running version: Config.Poll answers at once when a
// newer snapshot exists and otherwise holds the request until one is published or the wait
// ends. Each poll carries the sidecar's ACK or NACK of what it runs and its health report
// (configapi headers); the sidecar registry behind GET /admin/sidecars records them. The
// wire contract lives in config/configapi, which the sidecar imports instead of this package.
//
// # Background jobs
//
// Server.RefreshTokens (tokenrefresh.go) runs the OAuth token refresh every interval and on a
// sidecar's 401 report, and the check for an emptied Redis (Bootstrap); Config.Run runs the
// watch.
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
