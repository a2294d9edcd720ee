// Package alerts tells the operator when something breaks: it records events in a Redis
// outbox, coalesces them into messages and delivers them to the alert blocks' destinations.
//
// The path of an event:
//
//   - A condition is observed. Sources (ParkSource, RefreshSource, SidecarSource,
//     BudgetSource, WindowSource) run on the control plane holding the alerts lock, each at its own period,
//     and call reconcile; ConfigReloads is a hook every control plane's Config calls.
//   - Outbox.Raise records a condition's event once (HSETNX on AlertsState, then XADD to
//     AlertsEvents, in one script); Outbox.Clear records its all-clear once (HDEL, XADD).
//   - Service.route (lock holder) reads the stream after AlertsCursor and, per alert block
//     that wants the event (config.Alert.Wants), adds it to the message its (alert, event,
//     resolved) pair is gathering, or opens one due after Gather, or after the pair's
//     cooldown. Messages, the open index and the cursor are written in one transaction.
//   - Service.deliverDue (lock holder) sends each due message (format: the destination's
//     documented payload and signature; send: POST, judge the answer) and records sent, a
//     retry with backoff, or failed (undeliverable, kept).
//
// WindowSource raises the subscription-window alert (config.EventSubscriptionWindow) from
// the readings sidecars keep in store.AccountWindows; its conditions carry the threshold
// (Event.Threshold) so that each alert block's window_threshold is its own condition, and
// the router sends such an event only to the blocks with that threshold.
//
// To add a source: write a func returning a Source whose Observe builds the set of subjects
// for which the condition holds and calls reconcile; add its event name to config
// (AlertEvents) and README's event table; wire it in internal/app/alerts.go. To add a
// destination: a config.Alert* kind with its attribute (config/alerts.go), a case in format,
// and, if its answer carries errors in a 200, in judgeAnswer.
package alerts
