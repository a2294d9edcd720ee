package admincli

import (
	"strings"
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/controlplane/adminapi"
	"github.com/claude-relay/claude-relay/store"
)

func TestAdminRequestsPrintsTheLedgerAsATableAndJSON(t *testing.T) {
	e := loggedInCLI(t)
	e.st.SetLedger(&store.LedgerSettings{})
	key := decodeJSON[adminapi.CreateKeyResponse](t, e.must("", "keys", "create", "--name", "k", "--owner", "alice", "--json"))
	now := time.Now().UTC()
	var recs []store.UsageRecord
	for i := range 3 {
		recs = append(recs, store.UsageRecord{KeyID: key.Key.ID, AccountID: "acc", Model: "claude-sonnet-4-5", At: now.Add(-time.Duration(2-i) * time.Minute), // oldest first, as a recorder writes them
			Usage: store.Usage{Requests: 1, InputTokens: 300, OutputTokens: int64(40 + i), CostMicroUSD: 1_250_000},
			Ledger: &store.LedgerEntry{Route: "messages", Status: []int{200, 499, 529}[i], TTFBMillis: 120, DurationMillis: 900, Client: "claude_code",
				ErrorKind: []string{"", "client_gone", "upstream_529"}[i], Moved: []string{"", "failover", ""}[i]}})
	}
	e.recordUsage(recs...)
	out := e.must("", "requests", "--limit", "2")
	for _, want := range []string{"TIME", "OWNER", "TTFB MS", "alice", "claude-sonnet-4-5", "1.250000", "claude_code", "client_gone", "MOVED", "failover", "more: --cursor "} {
		if !strings.Contains(out, want) {
			t.Errorf("requests table: got %q, want it to contain %q", out, want)
		}
	}
	all := decodeJSON[adminapi.LedgerPage](t, e.must("", "requests", "--limit", "1", "--all", "--json"))
	if len(all.Requests) != 3 || all.Next != "" || all.Requests[0].Error != "upstream_529" {
		t.Errorf("requests --all --json: got %+v, want the 3 records newest first", all)
	}
	page := decodeJSON[adminapi.LedgerPage](t, e.must("", "requests", "--status", "4xx", "--json"))
	if len(page.Requests) != 1 || page.Requests[0].Status != 499 {
		t.Errorf("requests --status 4xx: got %+v", page)
	}
	if code, _, errOut := e.run("", "requests", "--status", "teapot"); code != 1 || !strings.Contains(errOut, "status") {
		t.Errorf("requests --status teapot: exit %d stderr %q, want 1 naming status", code, errOut)
	}
}
