package testredis

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestSentinelPromotesReplicaWhenMasterIsKilled proves the harness is a working Sentinel
// deployment: with both passwords set, data written to the master reaches the replica, and
// when the master process dies the Sentinels agree, promote the replica, and it takes writes.
func TestSentinelPromotesReplicaWhenMasterIsKilled(t *testing.T) {
	s := StartSentinel(t, WithDataPassword("data-pw"), WithSentinelPassword("sentinel-pw"))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	if got := len(s.SentinelAddrs()); got != 3 {
		t.Fatalf("got %d sentinels, want 3", got)
	}
	old, replica := s.Master(), s.Replica()
	mc := s.DataClient(old)
	defer mc.Close()
	if err := mc.Set(ctx, "before", "1", 0).Err(); err != nil {
		t.Fatalf("SET on master: %v", err)
	}
	if n, err := mc.Do(ctx, "WAIT", 1, 5000).Int(); err != nil || n != 1 {
		t.Fatalf("WAIT 1: got (%d, %v), want (1, nil)", n, err)
	}
	noAuth := redis.NewClient(&redis.Options{Addr: old, MaxRetries: -1})
	defer noAuth.Close()
	if err := noAuth.Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
		t.Errorf("PING without password: got %v, want NOAUTH", err)
	}

	begin := time.Now()
	s.StopMaster()
	if got := s.AwaitPromotion(ctx); got != replica {
		t.Fatalf("promoted %s, want the replica %s", got, replica)
	}
	t.Logf("replica promoted %s after the master was killed", time.Since(begin).Round(time.Millisecond))
	if s.Master() != replica || s.Replica() != old {
		t.Errorf("after promotion: Master %s, Replica %s; want %s, %s", s.Master(), s.Replica(), replica, old)
	}
	nc := s.DataClient(replica)
	defer nc.Close()
	if got, err := nc.Get(ctx, "before").Result(); err != nil || got != "1" {
		t.Errorf("GET on promoted replica: got (%q, %v), want (%q, nil)", got, err, "1")
	}
	if err := nc.Set(ctx, "after", "2", 0).Err(); err != nil {
		t.Errorf("SET on promoted replica: %v", err)
	}
}
