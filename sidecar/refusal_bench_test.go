package sidecar_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/internal/metrics"
	"github.com/claude-relay/claude-relay/internal/testredis"
	"github.com/claude-relay/claude-relay/plugins/auth-apikey/apikey"
	"github.com/claude-relay/claude-relay/plugins/crypto-aesgcm/aesgcm"
	"github.com/claude-relay/claude-relay/sidecar"
	"github.com/claude-relay/claude-relay/store"
)

// BenchmarkRefusalCost is the relay CPU of a refused request (an unknown key, its refusal
// cached) now that it is counted, against a relay that does not count it ("none": no usage
// sink, as refusals were before), in the same run: "recorded" queues its record for the
// recorder, "ledger" builds its ledger record too. The recorder runs, writing to a real
// Redis. "ns/op" is the handler's time per request; "cpu_ns/op" the process's CPU per
// request (the recorder's batch building included, Redis's own work not); "x_none" the
// ratio of cpu_ns/op to "none"'s. Rounds alternate so load drifts hit all three alike.
func BenchmarkRefusalCost(b *testing.B) {
	rdb, prefix := testredis.New(b)
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	sealer, err := aesgcm.New(testEncryptionKey)
	if err != nil {
		b.Fatal(err)
	}
	st, err := store.Open(ctx, rdb, store.Options{Prefix: prefix, Sealer: sealer})
	if err != nil {
		b.Fatal(err)
	}
	log := hclog.NewNullLogger()
	auth := sidecar.NewCachedAuth(apikey.FromStore(st, "bench", time.Minute, time.Minute), st, log, time.Minute, time.Minute)
	rec := sidecar.NewRecorder(st, sidecar.RecorderOptions{Logger: log})
	go rec.Run(ctx, time.Second)
	servers := map[string]*sidecar.Server{}
	for _, name := range []string{"none", "recorded", "ledger"} {
		opts := sidecar.Options{Logger: log, Version: "bench", Auth: auth, Metrics: metrics.NewRegistry(),
			Accounts: sidecar.NewStoreAccounts(st, log, time.Minute), RequestTimeout: time.Minute, SidecarID: "bench:1"}
		if name != "none" {
			opts.Usage = rec
		}
		srv := sidecar.New(opts)
		snap, err := config.Default()
		if err != nil {
			b.Fatal(err)
		}
		if name == "ledger" {
			snap.Usage = &config.Usage{Ledger: true}
			st.SetLedger(&store.LedgerSettings{MaxPerDay: 100_000})
		}
		if err := srv.Apply(snap); err != nil {
			b.Fatal(err)
		}
		servers[name] = srv
	}
	refuse := func(srv *sidecar.Server, n int) {
		for range n {
			req := httptest.NewRequest(http.MethodPost, "/v1/messages", strings.NewReader(`{"model":"claude-sonnet-4-5"}`))
			req.Header.Set("X-Api-Key", "cr_"+strings.Repeat("0", 64))
			w := httptest.NewRecorder()
			srv.ServeHTTP(w, req)
			if w.Code != http.StatusUnauthorized {
				b.Fatalf("status %d, want 401", w.Code)
			}
		}
	}
	for _, srv := range servers {
		refuse(srv, 100) // the refusal is cached from here on
	}
	const rounds, perRound = 10, 2000
	wall, cpu := map[string]time.Duration{}, map[string]time.Duration{}
	b.ResetTimer()
	for range b.N {
		for range rounds {
			for _, name := range []string{"none", "recorded", "ledger"} {
				c0, t0 := processCPU(b), time.Now()
				refuse(servers[name], perRound)
				wall[name] += time.Since(t0)
				cpu[name] += processCPU(b) - c0
			}
		}
	}
	b.StopTimer()
	n := time.Duration(b.N * rounds * perRound)
	for _, name := range []string{"none", "recorded", "ledger"} {
		b.ReportMetric(float64(wall[name]/n), name+"_ns/op")
		b.ReportMetric(float64(cpu[name]/n), name+"_cpu_ns/op")
		b.ReportMetric(float64(cpu[name])/float64(cpu["none"]), name+"_x_none")
	}
}

// processCPU is the CPU time the process has used (user and system).
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
