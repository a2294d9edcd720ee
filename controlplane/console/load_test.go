package console_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/config/configapi"
	"github.com/claude-relay/claude-relay/controlplane"
	"github.com/claude-relay/claude-relay/store"
)

func TestDashboardAddsUpTheSidecarsActiveStreamsAndNamesEachSidecars(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "relay.hcl"), []byte("# relay\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := newSiteWithConfig(t, 0, dir)
	ctx := context.Background()
	reg := controlplane.NewSidecarRegistry(s.st, nil, nil) // the registry the control plane lists, in the same store
	for _, id := range []string{"east:3000", "west:3000", "gone:3000", "old:3000"} {
		if err := reg.Record(ctx, configapi.PollRequest{SidecarID: id, Version: 1}); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now().UTC()
	for id, l := range map[string]store.SidecarLoad{
		"east:3000": {InFlight: 1500, Streams: 1200, At: now},
		"west:3000": {InFlight: 7, Streams: 5, At: now},
		"gone:3000": {InFlight: 400, Streams: 400, At: now.Add(-time.Hour)},
	} {
		if err := s.st.PutSidecarLoad(ctx, id, l); err != nil {
			t.Fatal(err)
		}
	}
	b := s.browser()
	p := b.login()
	p.shows(t, "the dashboard", `id="active-streams">1,205<`, `id="in-flight">1,507<`, "2</div><div class=\"l\">sidecars reporting · 1 silent for over 90 s · 1 without load reports",
		"1,200 streams, 1,500 in flight", "5 streams, 7 in flight", "silent since")
	if i := strings.Index(p.body, "<code>gone:3000</code>"); i < 0 || strings.Contains(p.body[i:i+200], "400 streams") {
		t.Error("a sidecar silent for an hour is counted as streaming now")
	}
}
