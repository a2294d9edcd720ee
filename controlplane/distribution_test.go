package controlplane

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/claude-relay/claude-relay/config/configapi"
	"github.com/claude-relay/claude-relay/config/configdist"
	"github.com/claude-relay/claude-relay/internal/configdisttest"
	"github.com/claude-relay/claude-relay/internal/testredis"
	"github.com/claude-relay/claude-relay/store"
	"github.com/claude-relay/claude-relay/store/storetest"
)

// routeHCL is a valid configuration whose single route serves path.
func routeHCL(path string) string {
	return fmt.Sprintf("pool \"claude\" {}\nroute \"messages\" {\n  paths = [%q]\n  pool  = \"claude\"\n}\n", path)
}

// configStore opens a store on a fresh prefix; two calls with the same prefix share it.
func configStore(t *testing.T, prefix string) *store.Store {
	t.Helper()
	rdb, p := testredis.New(t)
	if prefix == "" {
		prefix = p
	}
	st := storetest.Open(t, rdb, store.Options{Prefix: prefix})
	return st
}

func newTestConfig(t *testing.T, st *store.Store, dir string) *Distribution {
	t.Helper()
	cfg, err := NewDistribution(t.Context(), DistributionOptions{Dir: dir, Store: st, SidecarSecrets: [][]byte{testJWTSecret}, Debounce: 10 * time.Millisecond, Recheck: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func writeHCL(t *testing.T, dir, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "relay.hcl"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestVersionsIncreaseAcrossRestartsAndUnchangedContentMakesNone(t *testing.T) {
	dir := t.TempDir()
	writeHCL(t, dir, routeHCL("/v1/a"))
	st := configStore(t, "")
	cfg := newTestConfig(t, st, dir)
	first := cfg.Cache.Current()
	if first == nil || first.Version != 1 || first.Epoch == "" {
		t.Fatalf("first snapshot: got %+v, want version 1 with an epoch", first)
	}

	steps := []struct {
		name    string
		content string // "" leaves the file alone
		restart bool
		result  string
		version int64
	}{
		{"reload without a change", "", false, configdist.ReloadUnchanged, 1},
		{"a comment is no change", "# comment\n" + routeHCL("/v1/a"), false, configdist.ReloadUnchanged, 1},
		{"a real change", routeHCL("/v1/b"), false, configdist.ReloadPublished, 2},
		{"restart with the same content", "", true, configdist.ReloadUnchanged, 2},
		{"restart with new content", routeHCL("/v1/c"), true, configdist.ReloadPublished, 3},
		{"back to earlier content is a new version", routeHCL("/v1/a"), false, configdist.ReloadPublished, 4},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			if s.content != "" {
				writeHCL(t, dir, s.content)
			}
			result := ""
			if s.restart {
				cfg = newTestConfig(t, st, dir)
				result = cfg.Source.Status().LastReloadResult
			} else {
				var err error
				if result, err = cfg.Source.Reload(t.Context()); err != nil {
					t.Fatal(err)
				}
			}
			if got := cfg.Cache.Current(); result != s.result || got.Version != s.version || got.Epoch != first.Epoch {
				t.Errorf("got %s version %d epoch %s, want %s version %d epoch %s", result, got.Version, got.Epoch, s.result, s.version, first.Epoch)
			}
		})
	}
}

func TestBrokenDirectoryAtStartServesTheStoredSnapshot(t *testing.T) {
	dir := t.TempDir()
	writeHCL(t, dir, routeHCL("/v1/a"))
	st := configStore(t, "")
	newTestConfig(t, st, dir)
	writeHCL(t, dir, "route {")
	cfg := newTestConfig(t, st, dir)
	if got := cfg.Cache.Current(); got == nil || got.Version != 1 {
		t.Fatalf("got %+v, want the stored version 1", got)
	}
	if s := cfg.Source.Status(); s.LastReloadResult != configdist.ReloadRefused || len(s.Diagnostics) == 0 {
		t.Errorf("status: got %+v, want a refusal with diagnostics", s)
	}

	fresh := configStore(t, "")
	if _, err := NewDistribution(t.Context(), DistributionOptions{Dir: dir, Store: fresh}); err == nil {
		t.Error("got nil error, want a broken directory with nothing stored refused")
	}
}

func TestTwoControlPlanesAgreeOnVersions(t *testing.T) {
	dirA, dirB := t.TempDir(), t.TempDir()
	writeHCL(t, dirA, routeHCL("/v1/a"))
	writeHCL(t, dirB, routeHCL("/v1/a"))
	_, prefix := testredis.New(t)
	a := newTestConfig(t, configStore(t, prefix), dirA)
	b := newTestConfig(t, configStore(t, prefix), dirB)
	if a.Cache.Current().Version != b.Cache.Current().Version {
		t.Fatalf("same content: got versions %d and %d, want equal", a.Cache.Current().Version, b.Cache.Current().Version)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go b.Run(ctx)
	// b is subscribed once Run has started; a publish before that is caught by the
	// re-check, which this test sets to an hour, so retry the publish until b follows.
	deadline := time.Now().Add(5 * time.Second)
	for i := 0; b.Cache.Current().Version < 2; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("b did not follow a's publish: at version %d", b.Cache.Current().Version)
		}
		writeHCL(t, dirA, routeHCL(fmt.Sprintf("/v1/b%d", i)))
		if _, err := a.Source.Reload(t.Context()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if b.Cache.Current().SHA256 != a.Cache.Current().SHA256 && b.Cache.Current().Version == a.Cache.Current().Version {
		t.Errorf("same version, different content: a %s, b %s", a.Cache.Current().SHA256, b.Cache.Current().SHA256)
	}
}

func TestPollAnswersNewerAtOnceHoldsOtherwiseAndSkipsNacked(t *testing.T) {
	dir := t.TempDir()
	writeHCL(t, dir, routeHCL("/v1/a"))
	cfg := newTestConfig(t, configStore(t, ""), dir)
	configdisttest.CheckPollAnswers(t, cfg.Server, cfg.Cache.Current(), func(t *testing.T) {
		writeHCL(t, dir, routeHCL("/v1/b"))
		if _, err := cfg.Source.Reload(t.Context()); err != nil {
			t.Fatal(err)
		}
	})
}

func TestSidecarRegistryRecordsAckAndNack(t *testing.T) {
	dir := t.TempDir()
	writeHCL(t, dir, routeHCL("/v1/a"))
	cfg := newTestConfig(t, configStore(t, ""), dir)
	cur := cfg.Cache.Current()
	reports := []configapi.PollRequest{
		{SidecarID: "b", Addr: "10.0.0.2:3000", Epoch: cur.Epoch, Version: 0, NackEpoch: cur.Epoch, NackVersion: cur.Version, NackError: "compile snapshot:\nbad"},
		{SidecarID: "a", Addr: "10.0.0.1:3000", Epoch: cur.Epoch, Version: cur.Version},
	}
	for _, r := range reports {
		r.Wait = 0
		if _, err := cfg.Server.Poll(t.Context(), r); err != nil {
			t.Fatal(err)
		}
	}
	list, err := cfg.Registry.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].ID != "a" || list[1].ID != "b" {
		t.Fatalf("got %+v, want sidecars a and b", list)
	}
	if list[0].Version != cur.Version || list[0].NackVersion != 0 || list[0].LastError != "" {
		t.Errorf("a: got %+v, want version %d and no NACK", list[0], cur.Version)
	}
	if list[1].NackVersion != cur.Version || list[1].LastError != "compile snapshot: bad" {
		t.Errorf("b: got %+v, want NACK of %d with its error on one line", list[1], cur.Version)
	}
}

func TestSidecarEndpointRefusesBadTokens(t *testing.T) {
	dir := t.TempDir()
	writeHCL(t, dir, routeHCL("/v1/a"))
	cfg := newTestConfig(t, configStore(t, ""), dir)
	srv := httptest.NewServer(cfg.Server.Handler())
	defer srv.Close()
	now := time.Now()
	good, err := configapi.MintToken(testJWTSecret, "s1", time.Minute, now)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"iss": "claude-relay", "sub": "admin", "aud": "claude-relay-admin", "iat": now.Unix(), "exp": now.Add(time.Minute).Unix(), "jti": "x",
	}).SignedString(testJWTSecret)
	if err != nil {
		t.Fatal(err)
	}
	expired, err := configapi.MintToken(testJWTSecret, "s1", time.Minute, now.Add(-10*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, auth string
		want       int
	}{
		{"valid sidecar token", "Bearer " + good, http.StatusOK},
		{"no token", "", http.StatusUnauthorized},
		{"admin session token", "Bearer " + admin, http.StatusUnauthorized},
		{"expired sidecar token", "Bearer " + expired, http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, srv.URL+configapi.Path+"?wait=0s", nil)
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("got %d, want %d", resp.StatusCode, tt.want)
			}
		})
	}
}

func TestSidecarHealthHeaderIsRecordedAndABadOneIgnored(t *testing.T) {
	dir := t.TempDir()
	writeHCL(t, dir, routeHCL("/v1/a"))
	cfg := newTestConfig(t, configStore(t, ""), dir)
	srv := httptest.NewServer(cfg.Server.Handler())
	defer srv.Close()
	poll := func(id, health string) int {
		t.Helper()
		token, err := configapi.MintToken(testJWTSecret, id, time.Minute, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest(http.MethodGet, srv.URL+configapi.Path+"?wait=0s", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set(configapi.HeaderHealth, health)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	good, err := configapi.EncodeHealth(&configapi.Health{Status: "ok", Components: map[string]configapi.Component{"redis": {Status: "ok"}}})
	if err != nil {
		t.Fatal(err)
	}
	if code := poll("good", good); code != http.StatusOK {
		t.Fatalf("poll with a health report: got %d, want 200", code)
	}
	if code := poll("bad", "%%% not a report"); code != http.StatusOK {
		t.Fatalf("poll with a bad health report: got %d, want 200 (the report ignored)", code)
	}
	list, err := cfg.Registry.List(t.Context())
	if err != nil || len(list) != 2 {
		t.Fatalf("got %+v, %v, want two sidecars", list, err)
	}
	if list[0].ID != "bad" || list[0].Health != nil {
		t.Errorf("bad: got %+v, want no health", list[0])
	}
	if list[1].ID != "good" || list[1].Health == nil || list[1].Health.Components["redis"].Status != "ok" {
		t.Errorf("good: got %+v, want its report", list[1])
	}
}

func TestHeldPollIsReleasedWith503WhenTheDistributionStops(t *testing.T) {
	dir := t.TempDir()
	writeHCL(t, dir, routeHCL("/v1/a"))
	cfg := newTestConfig(t, configStore(t, ""), dir)
	ctx, cancel := context.WithCancel(t.Context())
	stopped := make(chan struct{})
	go func() { cfg.Run(ctx); close(stopped) }()
	srv := httptest.NewServer(cfg.Server.Handler())
	defer srv.Close()
	token, err := configapi.MintToken(testJWTSecret, "s1", time.Minute, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cur := cfg.Cache.Current()
	type answer struct {
		code       int
		retryAfter string
		err        error
	}
	answered := make(chan answer, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("%s%s?wait=1m&epoch=%s&version=%d", srv.URL, configapi.Path, cur.Epoch, cur.Version), nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			answered <- answer{err: err}
			return
		}
		resp.Body.Close()
		answered <- answer{code: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After")}
	}()
	// Wait until the poll is recorded (so held), then stop.
	deadline := time.Now().Add(10 * time.Second)
	for {
		list, err := cfg.Registry.List(t.Context())
		if err == nil && len(list) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the poll was not recorded: %v, %v", list, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case a := <-answered:
		if a.err != nil || a.code != http.StatusServiceUnavailable || a.retryAfter != "1" {
			t.Errorf("got %d Retry-After %q (%v), want 503 with Retry-After 1", a.code, a.retryAfter, a.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the held poll was not released when the distribution stopped")
	}
	<-stopped
}

// TestSidecarRegistryCarriesEachSidecarsLoadAndMarksOldReportsStale: the load each sidecar
// wrote to Redis appears with its registry entry; one older than store.LoadStale is marked
// stale; a load of a sidecar the registry does not know is not listed.
func TestSidecarRegistryCarriesEachSidecarsLoadAndMarksOldReportsStale(t *testing.T) {
	st := configStore(t, "")
	reg := NewSidecarRegistry(st, nil, nil)
	for _, id := range []string{"a", "b", "c"} {
		if err := reg.Record(t.Context(), configapi.PollRequest{SidecarID: id, Version: 1}); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now().UTC()
	for id, l := range map[string]store.SidecarLoad{
		"a":     {InFlight: 3, Streams: 2, At: now},
		"b":     {InFlight: 9, Streams: 9, At: now.Add(-store.LoadStale - time.Minute)},
		"ghost": {InFlight: 1, Streams: 1, At: now},
	} {
		if err := st.PutSidecarLoad(t.Context(), id, l); err != nil {
			t.Fatal(err)
		}
	}
	list, err := reg.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 3 {
		t.Fatalf("got %d sidecars, want a, b and c", len(list))
	}
	if l := list[0].Load; l == nil || l.InFlight != 3 || l.Streams != 2 || l.Stale {
		t.Errorf("a: got load %+v, want 3 in flight, 2 streams, fresh", l)
	}
	if l := list[1].Load; l == nil || !l.Stale {
		t.Errorf("b: got load %+v, want it marked stale", l)
	}
	if list[2].Load != nil {
		t.Errorf("c reported no load: got %+v", list[2].Load)
	}
}
