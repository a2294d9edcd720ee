// Package sidecar is the data plane: it authenticates relay keys, picks an upstream account,
// relays Messages API requests with unbuffered streaming and records token usage.
//
// Background state it keeps current: CachedAuth drops a key's cached answers (and every cached
// refusal) when the control plane publishes a key change; StoreAccounts reloads the account
// list when the store announces an account change (AccountChanges), polls the accounts
// version as a safety net, and checks it per request only while the list is empty.
//
// Usage: exchange.relay feeds a stream to usage.StreamParser as it passes (a JSON answer to
// usage.FromJSON) and accountUsage prices it (config.Runtime.Price; a model no price
// matches is charged pricing_fallback and counted as unpriced), charges the key's limits and
// hands a UsageRecord to the Recorder, which batches them into the store. A stream that ends
// before message_delta is charged usage.StreamParser.Estimate: at least what it relayed.
//
// Health: HealthHandler serves the public GET /health (component statuses only);
// CheckHealth and Server.Health build the operators' report with errors and details, which
// the config client sends to the control plane with each poll (GET /admin/sidecars).
package sidecar
