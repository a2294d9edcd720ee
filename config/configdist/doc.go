// Package configdist produces configuration snapshots and holds the current one, whoever reads it: a Source (the operator's HCL directory: watch, reload, diagnostics, compile once) hands each valid change to a Publisher (which numbers it), and a SnapshotCache keeps the current snapshot with its compiled runtime and answers long-polls for it.
//
// The pieces, by role (go-control-plane's pkg/cache/v3 is the model: the cache does not
// care who produces snapshots):
//
//	Source         HCL dir → config.Load → config.Compile → configapi.NewEnvelope →
//	               Publisher.Publish; Status (GET /admin/config/status), Run (fsnotify,
//	               debounce, periodic re-read), Reload (SIGHUP, tests).
//	Publisher      numbers a snapshot: LocalPublisher (in memory, the standalone sidecar),
//	               controlplane.StorePublisher (in Redis, shared by control planes).
//	SnapshotCache  the current Envelope + its *config.Runtime, swapped together; Set
//	               (a compiled snapshot), Adopt (one published elsewhere: compiled once
//	               here), Poll (the long-poll: newer, skip the NACKed one, wait, jitter),
//	               Close (held polls answer ErrShuttingDown).
//
// Who wires what (internal/app): the control plane runs Source → StorePublisher →
// SnapshotCache and serves the cache over HTTP (controlplane.ConfigServer); dev mode adds a
// sidecar whose config client polls the same ConfigServer in-process; the standalone
// sidecar runs Source → LocalPublisher → SnapshotCache and its config client polls the
// cache directly. Every sidecar thus applies configuration through one path:
// configclient → sidecar.Server.Apply, with the same NACK and logging.
package configdist
