// Package admincli is "claude-relay admin": the operator's command line over the admin API
// (controlplane/adminclient), with sessions saved by "admin login".
//
// # Where to add an admin command
//
// One adminCommand in adminCommands (admin.go) or manageCommands (admin_manage.go): its
// words, positional arguments, summary, a flags function registering what it reads into
// adminFlags, and a run function that calls adminclient and prints a table (adminCLI.table)
// or, with --json, the API's JSON (adminCLI.printJSON). A flag whose absence matters (an
// update that leaves a field alone) is an optional[T]; its usage and the interleaved
// parsing come from the command table, so nothing else changes.
package admincli
