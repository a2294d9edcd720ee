// Package app wires the control plane, the sidecar and dev mode into running processes.
//
// Every mode is built from the same few pieces, in this order:
//
//	newBase            processes.go: secrets checked, logging (newLogger), metrics, Redis
//	                   (store.Connect; dev mode's in-memory devredis when no Redis is
//	                   configured), the crypto provider and the store (openStore).
//	newDistribution    configdist.go: the control plane's configuration distribution
//	                   (controlplane.Distribution: HCL source → Redis-numbered versions →
//	                   snapshot cache → long-poll server + sidecar registry); Run it.
//	startControlPlane  processes.go: alerts, the admin API server, its bootstrap and OAuth
//	                   refresh, and the mux control and dev mode share: /admin/, /ui/,
//	                   the sidecars' long-poll (configapi.Path).
//	startSidecar       configdist.go: the data plane (newDataPlane: auth, accounts,
//	                   limits, scheduler, recorder, sidecar.Server) and its config client,
//	                   fed by one of three feeds: remoteFeed (a control plane over HTTP, with
//	                   the saved copy under the data dir), inProcessFeed (dev mode's own
//	                   control plane, called directly) or localFeed (the standalone sidecar's
//	                   HCL: configdist.Source → LocalPublisher → SnapshotCache, polled
//	                   directly). Every sidecar applies through configclient →
//	                   sidecar.Server.Apply, with the same NACK, logging and health rules.
//	runDataPlane       processes.go: the workers, the listener, the drain, then the usage
//	                   flush.
//
// The client's state (configclient.NewState) is made before the data plane, so that the
// data plane's /health can report it and the client can then apply to the data plane: no
// forward-declared closures.
//
// SIGHUP has one loop (onHUP) in every process; what it does is the feed's: reloadForHUP
// re-reads the HCL (control plane, dev mode, standalone sidecar) and logs the outcome, and a
// sidecar that follows a control plane says to reload that instead.
//
// RunControl = newBase + newDistribution + startControlPlane (+ /metrics, /health, key
// usage). RunSidecar = newBase + a feed + startSidecar + runDataPlane. RunDev = dev secrets,
// admin and relay key + newBase (in-memory allowed) + newDistribution + startSidecar
// (inProcessFeed) + startControlPlane, on one listener with the sidecar at "/".
package app
