package adminapi

// LedgerRecord is one relayed request in GET /admin/requests: metadata only, never a prompt
// or an answer. Every field is always present.
type LedgerRecord struct {
	ID      string `json:"id"`   // unique within its UTC day
	Time    string `json:"time"` // RFC 3339 with milliseconds, UTC
	Key     string `json:"key"`
	Owner   string `json:"owner"` // the key's owner now
	Account string `json:"account"`
	Model   string `json:"model"`
	Route   string `json:"route"`
	Status  int    `json:"status"`
	UsageCounters
	EstimatedOutput bool   `json:"estimated_output"` // output tokens are the relay's estimate
	TTFBMillis      int64  `json:"ttfb_ms"`
	DurationMillis  int64  `json:"duration_ms"`
	Client          string `json:"client"`
	Sidecar         string `json:"sidecar"`
	Session         string `json:"session"` // the conversation's hash, never the raw session id
	Error           string `json:"error"`
	// Moved is why the conversation left the account it was bound to (park, cap,
	// failover), on its first request on the new one; "" otherwise.
	Moved string `json:"moved"`
}

// LedgerPage is the body of GET /admin/requests: records newest first and the cursor of the
// next page ("" when there is none).
type LedgerPage struct {
	Requests []LedgerRecord `json:"requests"`
	Next     string         `json:"next"`
	// Ledger says whether the configuration this control plane serves turns the ledger on:
	// LedgerOn, LedgerOff (records written before it was turned off are still listed) or
	// LedgerUnknown (this control plane distributes no configuration).
	Ledger string `json:"ledger"`
}

// The states of LedgerPage.Ledger.
const (
	LedgerOn      = "on"
	LedgerOff     = "off"
	LedgerUnknown = "unknown"
)
