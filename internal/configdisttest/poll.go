package configdisttest

import (
	"context"
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/config/configapi"
)

// Poller answers a sidecar's configuration long-poll: configdist.SnapshotCache, and the
// control plane's ConfigServer in front of it.
type Poller interface {
	Poll(ctx context.Context, req configapi.PollRequest) (*configapi.Envelope, error)
}

// CheckPollAnswers checks p's answers while cur is its current version: a sidecar with
// nothing or of another epoch gets cur at once; one up to date, one that refused cur, and
// one that does not wait get nothing; and a held poll answers with the next version when
// publish makes one.
func CheckPollAnswers(t *testing.T, p Poller, cur *configapi.Envelope, publish func(t *testing.T)) {
	t.Helper()
	immediate := []struct {
		name string
		req  configapi.PollRequest
		want bool // a snapshot is returned
	}{
		{"a sidecar with nothing", configapi.PollRequest{Wait: time.Minute}, true},
		{"a sidecar of another epoch", configapi.PollRequest{Epoch: "old", Version: 99, Wait: time.Minute}, true},
		{"a sidecar up to date", configapi.PollRequest{Epoch: cur.Epoch, Version: cur.Version, Wait: 30 * time.Millisecond}, false},
		{"a sidecar that refused the current one", configapi.PollRequest{NackEpoch: cur.Epoch, NackVersion: cur.Version, Wait: 30 * time.Millisecond}, false},
		{"no wait", configapi.PollRequest{Epoch: cur.Epoch, Version: cur.Version}, false},
	}
	for _, tt := range immediate {
		t.Run(tt.name, func(t *testing.T) {
			got, err := p.Poll(t.Context(), tt.req)
			if err != nil {
				t.Fatal(err)
			}
			if (got != nil) != tt.want {
				t.Errorf("got snapshot %v, want one: %v", got != nil, tt.want)
			}
		})
	}
	t.Run("a held poll answers when a new version is published", func(t *testing.T) {
		done := make(chan *configapi.Envelope, 1)
		go func() {
			e, _ := p.Poll(t.Context(), configapi.PollRequest{Epoch: cur.Epoch, Version: cur.Version, Wait: time.Minute})
			done <- e
		}()
		publish(t)
		select {
		case e := <-done:
			if e == nil || e.Version != cur.Version+1 {
				t.Errorf("got %+v, want version %d", e, cur.Version+1)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the held poll did not answer")
		}
	})
}
