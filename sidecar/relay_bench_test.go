package sidecar_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/fakeupstream"
	"github.com/claude-relay/claude-relay/sidecar"
)

// benchAuth accepts one key, without Redis: the benchmark measures the relay, not the store.
type benchAuth struct{}

func (benchAuth) Authenticate(_ context.Context, in sidecar.AuthInput) (sidecar.Principal, error) {
	if in.Credential != "cr_bench" {
		return sidecar.Principal{}, sidecar.ErrInvalidCredential
	}
	return sidecar.Principal{KeyID: "k1", Name: "bench"}, nil
}

// benchAccounts is one fixed account; it records no last use.
type benchAccounts struct{ up []*sidecar.Upstream }

func (a benchAccounts) Upstreams(context.Context) ([]*sidecar.Upstream, error) { return a.up, nil }
func (benchAccounts) Touch(string, time.Time)                                  {}

type benchUsage struct{}

func (benchUsage) Record(sidecar.UsageRecord) {}

// BenchmarkRelay sends Messages requests through a sidecar.Server (a static key and account,
// no Redis: the relay's own cost) to the fake upstream over loopback, in rounds alternated
// with the same requests sent to the fake upstream directly (the baseline), and reports the
// fastest round of each (on a shared machine the minimum is what the code costs) and their
// ratio, serially and with 16 clients at once. "stream-400" is a long stream (400 deltas),
// which exercises the copy-and-flush loop and the usage tap; "json" a buffered answer.
func BenchmarkRelay(b *testing.B) {
	for _, c := range []struct {
		name   string
		stream bool
		deltas int
	}{{"stream-8", true, 8}, {"stream-400", true, 400}, {"json", false, 8}} {
		b.Run(c.name, func(b *testing.B) { benchRelay(b, c.stream, c.deltas) })
	}
}

func benchRelay(b *testing.B, stream bool, deltas int) {
	up := fakeupstream.Start(b, fakeupstream.Options{
		APIKeys: []string{upstreamKey},
		Default: fakeupstream.Script{Deltas: deltas, Text: strings.Repeat("relayed text ", deltas*4)},
	})
	u, err := sidecar.NewUpstream("a1", "fake", up.URL(), upstreamKey, 1)
	if err != nil {
		b.Fatal(err)
	}
	srv := sidecar.New(sidecar.Options{Auth: benchAuth{}, Accounts: benchAccounts{[]*sidecar.Upstream{u}}, Usage: benchUsage{}})
	snap, err := config.Default()
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Apply(snap); err != nil {
		b.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}}
	defer client.CloseIdleConnections()
	body := jsonBody
	if stream {
		body = streamBody
	}
	one := func(base, key string) {
		req, _ := http.NewRequest(http.MethodPost, base+"/v1/messages", strings.NewReader(body))
		req.Header.Set("X-Api-Key", key)
		req.Header.Set("Anthropic-Version", "2023-06-01")
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			b.Error(err)
			return
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || n == 0 {
			b.Errorf("got %d with %d bytes, want 200 with a body", resp.StatusCode, n)
		}
	}
	round := func(base, key string, workers int) time.Duration {
		const each = 20
		var wg sync.WaitGroup
		t0 := time.Now()
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range each {
					one(base, key)
				}
			}()
		}
		wg.Wait()
		return time.Since(t0) / time.Duration(workers*each)
	}
	var direct1, relay1, direct16, relay16 time.Duration
	low := func(d *time.Duration, v time.Duration) {
		if *d == 0 || v < *d {
			*d = v
		}
	}
	round(up.URL(), upstreamKey, 4) // warm both paths' connections
	round(ts.URL, "cr_bench", 4)
	for b.Loop() {
		for range 3 {
			low(&direct1, round(up.URL(), upstreamKey, 1))
			low(&relay1, round(ts.URL, "cr_bench", 1))
			low(&direct16, round(up.URL(), upstreamKey, 16))
			low(&relay16, round(ts.URL, "cr_bench", 16))
		}
	}
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
	b.ReportMetric(us(direct1), "direct-µs/req")
	b.ReportMetric(us(relay1), "relay-µs/req")
	b.ReportMetric(float64(relay1)/float64(direct1), "relay/direct")
	b.ReportMetric(us(direct16), "direct16-µs/req")
	b.ReportMetric(us(relay16), "relay16-µs/req")
	b.ReportMetric(float64(relay16)/float64(direct16), "relay16/direct16")
}
