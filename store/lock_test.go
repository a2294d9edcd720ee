package store

import (
	"context"
	"testing"
	"time"
)

func TestExtendRenewsOnlyALockStillHeld(t *testing.T) {
	ctx := context.Background()
	s, _, rdb, _ := newStore(t)
	l, ok, err := s.TryLock(ctx, "alerts", 200*time.Millisecond)
	if err != nil || !ok {
		t.Fatalf("TryLock: got (%t, %v), want the lock", ok, err)
	}
	if ok, err := l.Extend(ctx, time.Minute); err != nil || !ok {
		t.Fatalf("Extend while held: got (%t, %v), want renewed", ok, err)
	}
	if ttl := rdb.PTTL(ctx, s.keys.Lock("alerts")).Val(); ttl < 30*time.Second {
		t.Fatalf("lease after Extend: %v, want about a minute", ttl)
	}
	// The lease ran out and another holder took it: Extend reports the loss, changes nothing.
	rdb.Set(ctx, s.keys.Lock("alerts"), "someone-else", time.Minute)
	if ok, err := l.Extend(ctx, time.Hour); err != nil || ok {
		t.Fatalf("Extend after losing the lock: got (%t, %v), want false", ok, err)
	}
	if v := rdb.Get(ctx, s.keys.Lock("alerts")).Val(); v != "someone-else" {
		t.Fatalf("lock value %q, want the other holder's", v)
	}
}
