package configdist

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/config/configapi"
	"github.com/claude-relay/claude-relay/internal/configdisttest"
)

// routeHCL is a valid configuration whose single route serves path.
func routeHCL(path string) string {
	return fmt.Sprintf("pool \"claude\" {}\nroute \"messages\" {\n  paths = [%q]\n  pool  = \"claude\"\n}\n", path)
}

func writeHCL(t *testing.T, dir, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "relay.hcl"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// reloads records what OnReload heard.
type reloads struct {
	mu    sync.Mutex
	heard []string
}

func (r *reloads) hook(_ context.Context, refused bool, text string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if refused {
		r.heard = append(r.heard, "refused: "+text)
	} else {
		r.heard = append(r.heard, "accepted")
	}
}

func (r *reloads) last() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.heard) == 0 {
		return ""
	}
	return r.heard[len(r.heard)-1]
}

// localSource is a Source over dir publishing in memory, as the standalone sidecar runs it.
func localSource(t *testing.T, dir string, heard *reloads) (*Source, *SnapshotCache) {
	t.Helper()
	cache := NewSnapshotCache()
	opts := SourceOptions{Dir: dir, Publisher: NewLocalPublisher(cache), Cache: cache, Debounce: 10 * time.Millisecond, Recheck: time.Hour}
	if heard != nil {
		opts.OnReload = heard.hook
	}
	src, err := NewSource(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return src, cache
}

func TestLocalSourceNumbersChangesAndKeepsTheCompiledRuntimeOfUnchangedContent(t *testing.T) {
	dir := t.TempDir()
	writeHCL(t, dir, routeHCL("/v1/a"))
	src, cache := localSource(t, dir, nil)
	first, rt := cache.Current(), cache.Runtime()
	if first == nil || first.Version != 1 || first.Epoch == "" || rt == nil {
		t.Fatalf("first: got %+v with runtime %v, want version 1 of an epoch, compiled", first, rt != nil)
	}
	if got := rt.Snapshot.Routes[0].Paths; len(got) != 1 || got[0] != "/v1/a" {
		t.Errorf("runtime compiled from: got paths %v, want [/v1/a]", got)
	}

	writeHCL(t, dir, "# a comment is no change\n"+routeHCL("/v1/a"))
	if res, err := src.Reload(t.Context()); err != nil || res != ReloadUnchanged {
		t.Fatalf("got %q, %v, want %q", res, err, ReloadUnchanged)
	}
	if cache.Current() != first || cache.Runtime() != rt {
		t.Error("unchanged content: the served snapshot or its runtime was replaced")
	}

	writeHCL(t, dir, routeHCL("/v1/b"))
	if res, err := src.Reload(t.Context()); err != nil || res != ReloadPublished {
		t.Fatalf("got %q, %v, want %q", res, err, ReloadPublished)
	}
	cur := cache.Current()
	if cur.Version != 2 || cur.Epoch != first.Epoch {
		t.Errorf("got version %d epoch %s, want 2 of %s", cur.Version, cur.Epoch, first.Epoch)
	}
	if got := cache.Runtime().Snapshot.Routes[0].Paths[0]; got != "/v1/b" {
		t.Errorf("runtime: got path %s, want /v1/b (compiled with the snapshot it is served with)", got)
	}
	if st := src.Status(); st.Version != 2 || st.SHA256 != cur.SHA256 || st.LastReloadResult != ReloadPublished || st.Dir != dir {
		t.Errorf("status: got %+v, want version 2, published, dir %s", st, dir)
	}
}

func TestBrokenEditIsRefusedWithDiagnosticsAndTheLastGoodSnapshotStays(t *testing.T) {
	dir := t.TempDir()
	writeHCL(t, dir, routeHCL("/v1/a"))
	heard := &reloads{}
	src, cache := localSource(t, dir, heard)
	good, rt := cache.Current(), cache.Runtime()

	writeHCL(t, dir, "route \"messages\" {\n  paths = [\n")
	res, err := src.Reload(t.Context())
	if res != ReloadRefused || err == nil || !strings.Contains(err.Error(), "relay.hcl:") {
		t.Fatalf("got %q, %v, want a refusal pointing at relay.hcl", res, err)
	}
	if cache.Current() != good || cache.Runtime() != rt {
		t.Error("a refused edit replaced the served snapshot")
	}
	st := src.Status()
	if st.Refused != 1 || st.LastReloadResult != ReloadRefused || len(st.Diagnostics) == 0 || st.Diagnostics[0].File == "" || st.Text == "" {
		t.Errorf("status: got %+v, want one refusal with located diagnostics and their text", st)
	}
	if got := heard.last(); !strings.HasPrefix(got, "refused: ") || !strings.Contains(got, "relay.hcl") {
		t.Errorf("OnReload: got %q, want the refusal with its diagnostics", got)
	}

	writeHCL(t, dir, routeHCL("/v1/b"))
	if res, err := src.Reload(t.Context()); err != nil || res != ReloadPublished {
		t.Fatalf("fixed: got %q, %v, want published", res, err)
	}
	if st := src.Status(); st.Diagnostics != nil || st.Text != "" || st.Refused != 1 {
		t.Errorf("after the fix: got %+v, want the diagnostics cleared and the refusal still counted", st)
	}
	if got := heard.last(); got != "accepted" {
		t.Errorf("OnReload after the fix: got %q, want accepted", got)
	}
}

func TestABrokenDirectoryWithNothingToServeIsAnError(t *testing.T) {
	dir := t.TempDir()
	writeHCL(t, dir, "route {")
	cache := NewSnapshotCache()
	_, err := NewSource(t.Context(), SourceOptions{Dir: dir, Publisher: NewLocalPublisher(cache), Cache: cache})
	if err == nil || cache.Current() != nil {
		t.Fatalf("got %v with %+v served, want an error and nothing served", err, cache.Current())
	}
	if _, err := NewSource(t.Context(), SourceOptions{Dir: dir, Cache: cache}); err == nil {
		t.Error("no publisher: got nil error")
	}
}

func TestEmbeddedDefaultIsServedWithoutADirectory(t *testing.T) {
	src, cache := localSource(t, "", nil)
	if cache.Current() == nil || cache.Runtime() == nil || src.Dir() != "" {
		t.Fatalf("got %+v, want the embedded default served", cache.Current())
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { src.Run(ctx); close(done) }()
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run without a directory did not return when ctx ended")
	}
}

func TestRunReloadsAnEditedDirectory(t *testing.T) {
	dir := t.TempDir()
	writeHCL(t, dir, routeHCL("/v1/a"))
	src, cache := localSource(t, dir, nil)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go src.Run(ctx)
	deadline := time.Now().Add(10 * time.Second)
	// The watcher is in place once Run has started; rewrite until the edit is seen.
	for i := 0; cache.Current().Version < 2; i++ {
		if time.Now().After(deadline) {
			t.Fatal("the edit was not picked up")
		}
		writeHCL(t, dir, routeHCL(fmt.Sprintf("/v1/b%d", i)))
		time.Sleep(50 * time.Millisecond)
	}
}

func TestPollAnswersNewerAtOnceHoldsOtherwiseAndSkipsNacked(t *testing.T) {
	dir := t.TempDir()
	writeHCL(t, dir, routeHCL("/v1/a"))
	src, cache := localSource(t, dir, nil)
	configdisttest.CheckPollAnswers(t, cache, cache.Current(), func(t *testing.T) {
		writeHCL(t, dir, routeHCL("/v1/b"))
		if _, err := src.Reload(t.Context()); err != nil {
			t.Fatal(err)
		}
	})
}

func TestCloseReleasesHeldPollsWithShuttingDown(t *testing.T) {
	_, cache := localSource(t, "", nil)
	cur := cache.Current()
	errc := make(chan error, 1)
	go func() {
		_, err := cache.Poll(t.Context(), configapi.PollRequest{Epoch: cur.Epoch, Version: cur.Version, Wait: time.Minute})
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond) // usually held by now; either way Poll must refuse
	cache.Close()
	cache.Close() // idempotent
	select {
	case err := <-errc:
		if !errors.Is(err, ErrShuttingDown) {
			t.Errorf("got %v, want ErrShuttingDown", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the held poll was not released")
	}
	// A sidecar behind still gets the snapshot: only waiting is refused.
	if e, err := cache.Poll(t.Context(), configapi.PollRequest{Wait: time.Minute}); err != nil || e != cur {
		t.Errorf("after close, a sidecar with nothing: got %v, %v, want the current snapshot", e, err)
	}
}

func TestAdoptCompilesANewerSnapshotOnceAndIgnoresAnOlderOne(t *testing.T) {
	snap, _, diags := config.LoadFiles(map[string][]byte{"relay.hcl": []byte(routeHCL("/v1/a"))})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	env, err := configapi.NewEnvelope(snap)
	if err != nil {
		t.Fatal(err)
	}
	env.Epoch, env.Version = "e", 5
	cache := NewSnapshotCache()
	if ok, err := cache.Adopt(env); !ok || err != nil || cache.Runtime() == nil {
		t.Fatalf("got %v, %v, runtime %v, want adopted and compiled", ok, err, cache.Runtime() != nil)
	}
	rt := cache.Runtime()
	older := *env
	older.Version = 4
	if ok, err := cache.Adopt(&older); ok || err != nil || cache.Runtime() != rt {
		t.Errorf("older: got %v, %v, want ignored with the runtime kept", ok, err)
	}
	if ok := cache.Set(&older, nil); ok {
		t.Error("Set of an older version: got true, want false")
	}

	bad := &configapi.Envelope{Epoch: "e", Version: 6, Config: []byte(`{"routes":[{"name":"x","paths":["no-slash"],"pool":"missing"}]}`)}
	bad.SHA256 = configapi.Hash(bad.Config)
	ok, err := cache.Adopt(bad)
	if !ok || err == nil || cache.Current() != bad || cache.Runtime() != nil {
		t.Errorf("a snapshot that does not compile here: got %v, %v, want it adopted without a runtime and the error returned", ok, err)
	}
}
