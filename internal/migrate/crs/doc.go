// Package crs moves a Claude Relay Service (CRS, Node.js) installation into claude-relay.
//
// The path of `claude-relay import crs`, by function:
//
//   - ConnectReadOnly opens CRS's Redis with a hook that refuses every command but reads.
//   - Read takes one SCAN pass over it and pipelined reads of what it found: API keys
//     (apikey:<id>), Claude OAuth and Console accounts, the accounts of other platforms (to
//     list them), account groups and their members, daily usage per key and model, all-time
//     usage and cost per key, daily usage per account (Dataset).
//   - NewDecrypter derives CRS's AES keys (scrypt of ENCRYPTION_KEY with a salt per account
//     type) and opens its "iv:ciphertext" hex envelopes (and the older createCipher ones).
//   - Build maps the dataset onto claude-relay (Plan): key specs with their legacy hash,
//     limits on fixed UTC windows (closest stricter where CRS's rolling window has no
//     equivalent), rules and bindings, account specs, group names, usage records on UTC days,
//     and a Note for everything mapped stricter, behaving differently or not imported.
//     Plan.Write prints it.
//   - Apply writes the plan through the store: AddAccount (sealed by the crypto provider),
//     ImportLegacyKeys (keys with their CRS hash, the CRS key sealed), SeedKeyLimitCounter
//     (what a key spent against a total cost limit), ImportUsage. Each step is idempotent, so
//     a second run changes nothing and an interrupted one resumes.
//
// The auth side of the legacy hashes (lookup by CRS hash, re-index under the HMAC on first
// use) is in store/legacy.go; the auth provider gets the CRS key over the plugin channel.
// Package crstest writes CRS-format data for tests.
package crs
