package sidecar

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/internal/testutil"
	"github.com/claude-relay/claude-relay/plugins/contract"
)

// fakeProvider answers from a table and counts calls; it can block calls until released.
type fakeProvider struct {
	calls   atomic.Int64
	answers map[string]contract.AuthResult
	err     error
	gate    chan struct{}
}

func (f *fakeProvider) Configure(context.Context, map[string]string) error { return nil }
func (f *fakeProvider) Info(context.Context) (contract.Info, error)        { return contract.Info{}, nil }
func (f *fakeProvider) Authenticate(_ context.Context, req contract.AuthRequest) (contract.AuthResult, error) {
	f.calls.Add(1)
	if f.gate != nil {
		<-f.gate
	}
	if f.err != nil {
		return contract.AuthResult{}, f.err
	}
	if r, ok := f.answers[req.Credential]; ok {
		return r, nil
	}
	return contract.AuthResult{Refusal: "unknown relay key"}, nil
}

func TestAuthCacheKeepsAnswersForTheTTLTheProviderReturns(t *testing.T) {
	p := &fakeProvider{answers: map[string]contract.AuthResult{
		"short": {Principal: contract.Principal{KeyID: "k1"}, CacheTTL: 10 * time.Second},
		"dflt":  {Principal: contract.Principal{KeyID: "k2"}},
		"nope":  {Refusal: "disabled", CacheTTL: time.Hour},
	}}
	clk := testutil.NewClock(time.Unix(1_700_000_000, 0))
	a := NewCachedAuth(p, nil, nil, time.Minute, 2*time.Second)
	a.now = clk.Now
	tests := []struct {
		cred      string
		advance   time.Duration
		wantCalls int64 // provider calls after a second Authenticate past advance
	}{
		{"short", 9 * time.Second, 1},
		{"short", 11 * time.Second, 2},
		{"dflt", 59 * time.Second, 1},
		{"dflt", 61 * time.Second, 2},
		{"nope", 1 * time.Second, 1}, // a refusal is cached for at most negTTL,
		{"nope", 3 * time.Second, 2}, // however long the provider allows
	}
	for i, tc := range tests {
		t.Run(fmt.Sprintf("%d_%s_%v", i, tc.cred, tc.advance), func(t *testing.T) {
			a.Flush()
			p.calls.Store(0)
			_, err1 := a.Authenticate(context.Background(), AuthInput{Credential: tc.cred})
			clk.Advance(tc.advance)
			_, err2 := a.Authenticate(context.Background(), AuthInput{Credential: tc.cred})
			if got := p.calls.Load(); got != tc.wantCalls {
				t.Errorf("got %d provider calls, want %d", got, tc.wantCalls)
			}
			if tc.cred == "nope" && (!errors.Is(err1, ErrInvalidCredential) || !errors.Is(err2, ErrInvalidCredential)) {
				t.Errorf("got %v, %v; want refusals", err1, err2)
			}
		})
	}
}

func TestConcurrentMissesMakeOneProviderCall(t *testing.T) {
	p := &fakeProvider{gate: make(chan struct{}), answers: map[string]contract.AuthResult{"k": {Principal: contract.Principal{KeyID: "k"}}}}
	a := NewCachedAuth(p, nil, nil, time.Minute, time.Second)
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pr, err := a.Authenticate(context.Background(), AuthInput{Credential: "k"})
			if err == nil && pr.KeyID != "k" {
				err = fmt.Errorf("got key %q, want k", pr.KeyID)
			}
			errs <- err
		}()
	}
	for p.calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // let the other callers join the flight
	close(p.gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if got := p.calls.Load(); got != 1 {
		t.Errorf("got %d provider calls for 50 concurrent misses, want 1", got)
	}
}

func TestProviderOutageFailsClosedNotOpen(t *testing.T) {
	p := &fakeProvider{err: fmt.Errorf("%w: no healthy instance", contract.ErrUnavailable)}
	a := NewCachedAuth(p, nil, nil, time.Minute, time.Second)
	_, err := a.Authenticate(context.Background(), AuthInput{Credential: "cr_x"})
	if err == nil || errors.Is(err, ErrInvalidCredential) {
		t.Fatalf("got %v, want a backend error (503), not acceptance nor a 401", err)
	}
	if !errors.Is(err, contract.ErrUnavailable) {
		t.Errorf("got %v, want it to wrap contract.ErrUnavailable", err)
	}
	// The failure is not cached: once the provider is back, the key works.
	p.err = nil
	p.answers = map[string]contract.AuthResult{"cr_x": {Principal: contract.Principal{KeyID: "x"}}}
	if pr, err := a.Authenticate(context.Background(), AuthInput{Credential: "cr_x"}); err != nil || pr.KeyID != "x" {
		t.Errorf("got %+v, %v after recovery, want key x", pr, err)
	}
}

func TestEmptyOrOversizedCredentialIsRefusedWithoutAProviderCall(t *testing.T) {
	p := &fakeProvider{}
	a := NewCachedAuth(p, nil, nil, time.Minute, time.Second)
	for _, cred := range []string{"", string(make([]byte, maxCredentialLen+1))} {
		if _, err := a.Authenticate(context.Background(), AuthInput{Credential: cred}); !errors.Is(err, ErrInvalidCredential) {
			t.Errorf("got %v for a credential of %d bytes, want a refusal", err, len(cred))
		}
	}
	if got := p.calls.Load(); got != 0 {
		t.Errorf("got %d provider calls, want 0", got)
	}
}
