package admincli

import (
	"encoding/csv"
	"strings"
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/controlplane/adminapi"
	"github.com/claude-relay/claude-relay/store"
)

func TestAdminUsagePrintsATableCSVAndJSONThatAgree(t *testing.T) {
	e := loggedInCLI(t)
	key := decodeJSON[adminapi.CreateKeyResponse](t, e.must("", "keys", "create", "--name", "k", "--owner", "alice", "--json"))
	today := time.Now().UTC().Truncate(24 * time.Hour)
	recs := []store.UsageRecord{
		{KeyID: key.Key.ID, AccountID: "acc", Model: "claude-sonnet-4-5", At: today.Add(time.Hour), Usage: store.Usage{Requests: 2, InputTokens: 300, OutputTokens: 40, CostMicroUSD: 1_250_000}},
		{KeyID: key.Key.ID, AccountID: "acc", Model: "claude-haiku-4-5", At: today.Add(-time.Hour), Usage: store.Usage{Requests: 1, InputTokens: 10, OutputTokens: 4, CostMicroUSD: 20_000}},
	}
	e.recordUsage(recs...)
	from := today.AddDate(0, 0, -1).Format(time.DateOnly)
	out := e.must("", "usage", "--from", from, "--group-by", "owner,model")
	for _, want := range []string{"BUCKET", "OWNER", "MODEL", "COST USD", "UNPRICED", "REFUSED", "FAILED", "alice", "claude-sonnet-4-5", "1.250000", "total", "1.270000"} {
		if !strings.Contains(out, want) {
			t.Errorf("usage table: got %q, want it to contain %q", out, want)
		}
	}
	rep := decodeJSON[adminapi.UsageReport](t, e.must("", "usage", "--from", from, "--group-by", "owner,model", "--json"))
	if len(rep.Rows) != 2 || rep.Totals.Requests != 3 || rep.Totals.CostUSD != 1.27 {
		t.Errorf("usage --json: got %+v, want 2 rows, 3 requests, $1.27", rep)
	}
	recsCSV, err := csv.NewReader(strings.NewReader(e.must("", "usage", "--from", from, "--group-by", "owner,model", "--csv"))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recsCSV) != 3 || strings.Join(recsCSV[0][:3], ",") != "bucket,owner,model" {
		t.Fatalf("usage --csv: got %v, want a header and 2 rows", recsCSV)
	}
	for i, r := range rep.Rows {
		if got, want := strings.Join(recsCSV[i+1], ","), strings.Join(append([]string{r.Bucket, r.Group["owner"], r.Group["model"]}, r.Columns()...), ","); got != want {
			t.Errorf("CSV row %d: got %s, want %s (the JSON row)", i, got, want)
		}
	}
	lines := strings.Split(strings.TrimSpace(e.must("", "usage", "--from", from, "--jsonl")), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `"unpriced_requests":0`) {
		t.Errorf("usage --jsonl: got %q, want a line per day with every counter", lines)
	}
	code, _, errOut := e.run("", "usage", "--group-by", "colour")
	if code != 1 || !strings.Contains(errOut, "group_by") {
		t.Errorf("usage --group-by colour: got exit %d stderr %q, want 1 naming group_by", code, errOut)
	}
	code, _, _ = e.run("", "usage", "--csv", "--json")
	if code != 2 {
		t.Errorf("usage --csv --json: got exit %d, want 2", code)
	}
}
