package console

import (
	"fmt"
	"strconv"

	"github.com/claude-relay/claude-relay/controlplane/adminapi"
)

// The dashboard's refusal and error rates come from the same report rows as its charts
// (refused_requests and failed_requests are part of requests): no extra API call.

// The outcome chart's series, in the order they stack (and take their colours).
const (
	outcomeAnswered = "answered"
	outcomeFailed   = "failed"
	outcomeRefused  = "refused"
	outcomeGroup    = "outcome"
)

var outcomes = []string{outcomeAnswered, outcomeFailed, outcomeRefused}

// rates are a range's refusal and error rates, in numbers and in words.
type rates struct {
	Requests, Refused, Failed, Relayed int64
	// Refusal is refused / requests ("2.4 %"), Error failed / relayed (requests not
	// refused); "–" when there is nothing to divide by.
	Refusal, Error string
}

func ratesOf(c adminapi.UsageCounters) rates {
	r := rates{Requests: c.Requests, Refused: c.RefusedRequests, Failed: c.FailedRequests}
	r.Relayed = max(c.Requests-c.RefusedRequests, 0)
	r.Refusal = formatRate(r.Refused, r.Requests)
	r.Error = formatRate(r.Failed, r.Relayed)
	return r
}

// formatRate is n / of as a percentage with one decimal ("2.4 %"): "0 %" and "100 %" only
// when exact, "< 0.1 %" for a rate that would round to zero, "–" when of is zero.
func formatRate(n, of int64) string {
	switch {
	case of <= 0:
		return "–"
	case n <= 0:
		return "0 %"
	case n >= of:
		return "100 %"
	}
	pct := float64(n) / float64(of) * 100
	switch {
	case pct < 0.05:
		return "< 0.1 %"
	case pct >= 99.95:
		return "> 99.9 %"
	}
	return strconv.FormatFloat(pct, 'f', 1, 64) + " %"
}

// outcomeRows splits each row's requests by outcome (answered, failed, refused) as rows
// grouped by "outcome", for buildChartOf.
func outcomeRows(rows []adminapi.UsageRow) []adminapi.UsageRow {
	out := make([]adminapi.UsageRow, 0, 3*len(rows))
	for _, r := range rows {
		answered := r.Requests - r.RefusedRequests - r.FailedRequests
		for i, n := range []int64{answered, r.FailedRequests, r.RefusedRequests} {
			if n > 0 {
				out = append(out, adminapi.UsageRow{Bucket: r.Bucket, Group: map[string]string{outcomeGroup: outcomes[i]},
					UsageCounters: adminapi.UsageCounters{Requests: n}})
			}
		}
	}
	return out
}

// outcomeChart draws rows' requests per bucket by outcome, each outcome always in its own
// colour.
func outcomeChart(id string, width int, rows []adminapi.UsageRow, buckets []string) chart {
	of := make(map[string]string, len(outcomes))
	for _, o := range outcomes {
		of[o] = o
	}
	m := metrics[chartMetricRequests]
	m.Title = "Requests by outcome"
	c := buildChartOf(id, width, m, outcomeRows(rows), buckets, outcomeGroup, bucketLabel, outcomes, of)
	var t adminapi.UsageCounters
	for _, r := range rows {
		addCounters(&t, r.UsageCounters)
	}
	c.Summary += fmt.Sprintf(" (%s answered, %s failed, %s refused)",
		formatInt(t.Requests-t.FailedRequests-t.RefusedRequests), formatInt(t.FailedRequests), formatInt(t.RefusedRequests))
	return c
}
