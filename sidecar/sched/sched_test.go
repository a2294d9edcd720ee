package sched_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/internal/testredis"
	"github.com/claude-relay/claude-relay/internal/testutil"
	"github.com/claude-relay/claude-relay/sidecar/request"
	"github.com/claude-relay/claude-relay/sidecar/sched"
	"github.com/claude-relay/claude-relay/store"
)

func TestSessionKey(t *testing.T) {
	key := func(body string) string { return sched.SessionKey(request.Scan([]byte(body))) }
	a1 := key(`{"metadata":{"user_id":"user_h1_account__session_aaa"},"messages":[{"role":"user","content":"one"}]}`)
	a2 := key(`{"metadata":{"user_id":"user_h2_account__session_aaa"},"messages":[{"role":"user","content":"two"}]}`)
	b := key(`{"metadata":{"user_id":"user_h1_account__session_bbb"}}`)
	j := key(`{"metadata":{"user_id":"{\"device_id\":\"d\",\"session_id\":\"aaa\"}"}}`)
	m1 := key(`{"messages":[{"role":"user","content":"start"}]}`)
	m2 := key(`{"messages":[{"role":"user","content":"start"},{"role":"assistant","content":"x"}]}`)
	if a1 != a2 || a1 == b || j != a1 {
		t.Errorf("the session id decides: got %s %s %s %s", a1, a2, b, j)
	}
	if m1 == "" || m1 != m2 || m1 == a1 {
		t.Errorf("the first message decides without metadata: got %q %q", m1, m2)
	}
	if got := key(`{"model":"m"}`); got != "" {
		t.Errorf("no session: got %q, want none", got)
	}
}

func TestSessionKeyIgnoresMovedCacheBreakpointsAndWhitespace(t *testing.T) {
	key := func(body string) string { return sched.SessionKey(request.Scan([]byte(body))) }
	// Turn 1: the first message is also the last and carries the cache breakpoint.
	turn1 := key(`{"messages":[{"role":"user","content":[{"type":"text","text":"Summarise this file","cache_control":{"type":"ephemeral"}}]}]}`)
	// Turn 2: the breakpoint moved to the newest message; the SDK also spaced things out.
	turn2 := key(`{"messages":[ {"role": "user", "content": [ {"type": "text", "text": "Summarise this file"} ] },
		{"role":"assistant","content":"ok"},
		{"role":"user","content":[{"type":"text","text":"more","cache_control":{"type":"ephemeral","ttl":"1h"}}]}]}`)
	other := key(`{"messages":[{"role":"user","content":[{"type":"text","text":"Summarise that file"}]}]}`)
	if turn1 == "" || turn1 != turn2 {
		t.Errorf("one conversation, breakpoint moved: got %q and %q, want the same key", turn1, turn2)
	}
	if other == turn1 {
		t.Error("a different first message got the same key")
	}
	// Text that merely contains the words is not a breakpoint.
	if key(`{"messages":[{"role":"user","content":""cache_control":{}"}]}`) == key(`{"messages":[{"role":"user","content":""}]}`) {
		t.Error("a string mentioning cache_control was stripped")
	}
}

func TestParkingStatesReasonsAndReturnByThemselves(t *testing.T) {
	rdb, prefix := testredis.New(t)
	c := testutil.NewClock(time.Date(2025, 6, 18, 10, 0, 0, 0, time.UTC))
	pool := &config.PoolRT{Name: "p", Strategy: config.StrategyStickyLeastLoaded, FailoverOn: config.DefaultFailoverOn(),
		ParkOn429: config.ParkOn429ResetHeader, Park429For: time.Minute, Park529For: 15 * time.Second, Park5xxAfter: 3, Park5xxWindow: time.Minute, Park5xxFor: time.Minute, StickyTTL: time.Hour}
	accts := []sched.Account{{ID: "a", Priority: 1}, {ID: "b", Priority: 2}}
	body := func(msg string) []byte {
		return []byte(`{"type":"error","error":{"type":"x","message":"` + msg + `"}}`)
	}
	hdr := func(kv ...string) http.Header {
		h := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	now := c.Now()
	tests := []struct {
		name     string
		out      sched.Outcome
		model    string
		state    sched.State
		family   string
		until    time.Time
		failover bool
	}{
		{"429 with the unified reset", sched.Outcome{Status: 429, Header: hdr("anthropic-ratelimit-unified-reset", strconv.FormatInt(now.Add(time.Hour).Unix(), 10)), Body: body("limit")}, "claude-sonnet-4-5", sched.RateLimited, "", now.Add(time.Hour), true},
		{"429 with retry-after only", sched.Outcome{Status: 429, Header: hdr("retry-after", "42")}, "claude-sonnet-4-5", sched.RateLimited, "", now.Add(42 * time.Second), true},
		{"429 without headers", sched.Outcome{Status: 429}, "claude-sonnet-4-5", sched.RateLimited, "", now.Add(time.Minute), true},
		{"429 on the Opus weekly window parks Opus only", sched.Outcome{Status: 429, Header: hdr("anthropic-ratelimit-unified-representative-claim", "seven_day_opus", "retry-after", "600")}, "claude-opus-4-1", sched.RateLimited, "opus", now.Add(10 * time.Minute), true},
		{"529", sched.Outcome{Status: 529, Body: body("Overloaded")}, "m", sched.Overloaded, "", now.Add(15 * time.Second), true},
		{"401", sched.Outcome{Status: 401, Body: body("invalid x-api-key")}, "m", sched.Unauthorized, "", time.Time{}, true},
		{"403", sched.Outcome{Status: 403, Body: body("nope")}, "m", sched.Blocked, "", time.Time{}, true},
		{"400 organization disabled", sched.Outcome{Status: 400, Body: body("This organization has been disabled.")}, "m", sched.Blocked, "", time.Time{}, true},
		{"400 bad request is the client's", sched.Outcome{Status: 400, Body: body("max_tokens: required")}, "m", "", "", time.Time{}, false},
		{"connect error", sched.Outcome{Err: errors.New("dial tcp: refused")}, "m", "", "", time.Time{}, true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := sched.New(rdb, store.NewSchema(prefix+strconv.Itoa(i)+":"), sched.Options{Now: c.Now})
			ctx := context.Background()
			req := sched.Request{Pool: pool, Model: tt.model}
			if got := s.Report(ctx, req, "a", tt.out); got != tt.failover {
				t.Errorf("failover: got %v, want %v", got, tt.failover)
			}
			parked, err := s.Parked(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if tt.state == "" {
				if len(parked) != 0 {
					t.Errorf("parked: got %+v, want none", parked)
				}
				return
			}
			if len(parked) != 1 || parked[0].State != tt.state || parked[0].Family != tt.family || !parked[0].Until.Equal(tt.until) {
				t.Fatalf("parked: got %+v, want %s family %q until %s", parked, tt.state, tt.family, tt.until)
			}
			plan, err := s.Plan(ctx, req, accts)
			if err != nil || plan.Order[0] != "b" {
				t.Fatalf("plan while parked: got %v %v, want b first", plan, err)
			}
			if tt.family != "" {
				other, _ := s.Plan(ctx, sched.Request{Pool: pool, Model: "claude-sonnet-4-5"}, accts)
				if other.Order[0] != "a" {
					t.Errorf("another family: got %v, want a still first", other.Order)
				}
			}
			if tt.until.IsZero() {
				return
			}
			// The time passes: the account comes back by itself, no job needed.
			defer c.Set(now)
			c.Advance(tt.until.Sub(now))
			plan, err = s.Plan(ctx, req, accts)
			if err != nil || plan.Order[0] != "a" {
				t.Errorf("after the park: got %v %v, want a first", plan, err)
			}
		})
	}
}

func TestShortParkNeverShortensALongOneAndEveryoneParkedSaysWhen(t *testing.T) {
	rdb, prefix := testredis.New(t)
	s := sched.New(rdb, store.NewSchema(prefix), sched.Options{})
	ctx := context.Background()
	now := time.Now()
	s.ParkAccount(ctx, sched.Park{Account: "a", State: sched.RateLimited, Status: 429, Until: now.Add(time.Hour)})
	s.ParkAccount(ctx, sched.Park{Account: "a", State: sched.Overloaded, Status: 529, Until: now.Add(10 * time.Second)})
	// Another sidecar's view: read from Redis.
	other := sched.New(rdb, store.NewSchema(prefix), sched.Options{})
	s.ParkAccount(ctx, sched.Park{Account: "b", State: sched.RateLimited, Status: 429, Until: now.Add(time.Minute)})
	_, err := other.Plan(ctx, sched.Request{}, []sched.Account{{ID: "a"}, {ID: "b"}})
	var u *sched.Unavailable
	if !errors.As(err, &u) {
		t.Fatalf("got %v, want *Unavailable", err)
	}
	if !u.AllRateLimited || u.Earliest.Sub(now) < 59*time.Second || u.Earliest.Sub(now) > time.Minute {
		t.Errorf("got all rate-limited %v earliest %s, want true and b's minute", u.AllRateLimited, u.Earliest.Sub(now))
	}
	if msg := u.Error(); !strings.Contains(msg, "every upstream account is rate-limited") || !strings.Contains(msg, "earliest frees up") {
		t.Errorf("message: %q", msg)
	}
}

// BenchmarkSessionKeyLargeFirstMessage hashes a 1 MB first message (a pasted document in
// content blocks), canonically (cache_control dropped) against the raw bytes.
func BenchmarkSessionKeyLargeFirstMessage(b *testing.B) {
	doc := strings.Repeat("All work and no play makes Jack a dull boy. ", 1<<20/44)
	body := []byte(`{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"` + doc +
		`","cache_control":{"type":"ephemeral"}},{"type":"text","text":"Summarise it."}]}]}`)
	f := request.Scan(body)
	b.Run("canonical", func(b *testing.B) {
		b.SetBytes(int64(len(f.FirstMessage)))
		for b.Loop() {
			sched.SessionKey(f)
		}
	})
	b.Run("raw", func(b *testing.B) {
		b.SetBytes(int64(len(f.FirstMessage)))
		for b.Loop() {
			h := sha256.New()
			h.Write(f.FirstMessage)
			h.Sum(nil)
		}
	})
}
