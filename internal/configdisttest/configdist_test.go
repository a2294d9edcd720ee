package configdisttest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/config/configapi"
	"github.com/claude-relay/claude-relay/fakeupstream"
	"github.com/claude-relay/claude-relay/internal/testutil"
)

// baseHCL opens /v1/messages to loopback clients; extra is appended inside the route's paths.
func baseHCL(extraPaths ...string) string {
	paths := append([]string{"/v1/messages"}, extraPaths...)
	return fmt.Sprintf(`server { trusted_proxies = ["127.0.0.1/32", "::1/128"] }

allowlist "open" { cidrs = ["127.0.0.0/8", "::1/128"] }

policy "team" { models = ["claude-sonnet-*"] }

pool "claude" {}

route "messages" {
  paths     = %s
  pool      = "claude"
  allowlist = "open"
  policy    = "team"
}
`, quoteList(paths))
}

func quoteList(items []string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = fmt.Sprintf("%q", s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// published waits until the control plane serves a version newer than after and returns it.
func (c *cluster) published(after int64) int64 {
	c.t.Helper()
	return c.waitStatus(fmt.Sprintf("a version newer than %d is published", after), func(st configapi.ConfigStatus) bool {
		return st.Version > after
	}).Version
}

// routeStatus is the status of an unauthenticated POST: 401 where a route exists, 404 where
// none does.
func routeStatus(t *testing.T, s *sidecarProc, path string) int {
	t.Helper()
	code, _ := s.do(t, http.MethodPost, path, nil, `{}`)
	return code
}

func TestHCLEditsReachRunningSidecar(t *testing.T) {
	c := newCluster(t, baseHCL())
	c.startControl()
	s := c.startSidecar("sidecar", "", "")
	v := c.status().Version
	s.waitVersion(t, v)

	edits := []struct {
		name string
		path string
		edit func(content string)
	}{
		{"edit in place", "/v1/in-place", func(content string) {
			f, err := os.OpenFile(filepath.Join(c.configDir, "relay.hcl"), os.O_WRONLY|os.O_TRUNC, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteString(content); err != nil {
				t.Fatal(err)
			}
			f.Close()
		}},
		{"edit by rename", "/v1/renamed", func(content string) {
			tmp := filepath.Join(c.configDir, ".relay.hcl.swp")
			if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, filepath.Join(c.configDir, "relay.hcl")); err != nil {
				t.Fatal(err)
			}
		}},
		{"delete and recreate", "/v1/recreated", func(content string) {
			refused := c.status().Refused
			if err := os.Remove(filepath.Join(c.configDir, "relay.hcl")); err != nil {
				t.Fatal(err)
			}
			// An empty directory is refused; the running configuration stays.
			c.waitStatus("the empty directory is refused", func(st configapi.ConfigStatus) bool { return st.Refused > refused })
			if got := routeStatus(t, s, "/v1/messages"); got != http.StatusUnauthorized {
				t.Errorf("while the file is gone: got %d, want 401 (old configuration kept)", got)
			}
			c.writeFile("relay.hcl", content)
		}},
		{"symlink swap (Kubernetes ConfigMap)", "/v1/configmap", func(content string) {
			// Lay the directory out as kubelet does: relay.hcl -> ..data/relay.hcl, ..data -> ..<ts>.
			ts := filepath.Join(c.configDir, "..2024_01_01")
			if err := os.Mkdir(ts, 0o755); err != nil {
				t.Fatal(err)
			}
			old, _ := os.ReadFile(filepath.Join(c.configDir, "relay.hcl"))
			if err := os.WriteFile(filepath.Join(ts, "relay.hcl"), old, 0o644); err != nil {
				t.Fatal(err)
			}
			mustSymlink(t, "..2024_01_01", filepath.Join(c.configDir, "..data"))
			mustSymlink(t, "..data/relay.hcl", filepath.Join(c.configDir, ".relay.hcl.link"))
			if err := os.Rename(filepath.Join(c.configDir, ".relay.hcl.link"), filepath.Join(c.configDir, "relay.hcl")); err != nil {
				t.Fatal(err)
			}
			// The swap: a new timestamped directory, then ..data replaced atomically.
			ts2 := filepath.Join(c.configDir, "..2024_01_02")
			if err := os.Mkdir(ts2, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(ts2, "relay.hcl"), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			mustSymlink(t, "..2024_01_02", filepath.Join(c.configDir, "..data_tmp"))
			if err := os.Rename(filepath.Join(c.configDir, "..data_tmp"), filepath.Join(c.configDir, "..data")); err != nil {
				t.Fatal(err)
			}
			if err := os.RemoveAll(ts); err != nil {
				t.Fatal(err)
			}
		}},
	}
	var paths []string
	for _, e := range edits {
		t.Run(e.name, func(t *testing.T) {
			if got := routeStatus(t, s, e.path); got != http.StatusNotFound {
				t.Fatalf("before the edit: POST %s got %d, want 404", e.path, got)
			}
			paths = append(paths, e.path)
			e.edit(baseHCL(paths...))
			v = c.published(v)
			s.waitVersion(t, v)
			if got := routeStatus(t, s, e.path); got != http.StatusUnauthorized {
				t.Errorf("after the edit: POST %s got %d, want 401 (route present)", e.path, got)
			}
		})
	}

	// Broken edits: each is refused with its exact location, and the sidecar keeps
	// serving the last good configuration.
	broken := []struct {
		name, content, loc, summary string
	}{
		{"unknown pool reference", "route \"broken\" {\n  paths = [\"/v1/broken\"]\n  pool  = \"nope\"\n}\n", "zz-broken.hcl:3:11", "Unknown pool"},
		{"bad CIDR", "allowlist \"bad\" {\n  cidrs = [\"10.0.0.0/33\"]\n}\n", "zz-broken.hcl:2:12", "Invalid CIDR"},
		{"duplicate block label", "pool \"claude\" {}\n", "zz-broken.hcl:1:6", "Duplicate pool block"},
		{"syntax error", "route \"x\" {\n  paths = [\"/v1/x\"\n  pool = \"claude\"\n}\n", "zz-broken.hcl:3:3", "Missing item separator"},
	}
	for _, b := range broken {
		t.Run("refused: "+b.name, func(t *testing.T) {
			refused := c.status().Refused
			c.writeFile("zz-broken.hcl", b.content)
			st := c.waitStatus("the broken edit is refused", func(st configapi.ConfigStatus) bool { return st.Refused > refused })
			if st.Version != v || st.LastReloadResult != "refused" {
				t.Errorf("status: got version %d result %q, want version %d result refused", st.Version, st.LastReloadResult, v)
			}
			found := false
			for _, d := range st.Diagnostics {
				if strings.HasSuffix(d.Location(), "/"+b.loc) && d.Summary == b.summary {
					found = true
				}
			}
			if !found {
				t.Errorf("diagnostics: got %+v, want %q at %s", st.Diagnostics, b.summary, b.loc)
			}
			if !strings.Contains(st.Text, b.loc) {
				t.Errorf("diagnostics text does not name %s:\n%s", b.loc, st.Text)
			}
			if got := routeStatus(t, s, paths[0]); got != http.StatusUnauthorized {
				t.Errorf("sidecar after a refused edit: got %d, want 401 (old configuration)", got)
			}
			if got := s.channel(t).Version; got != v {
				t.Errorf("sidecar version after a refused edit: got %d, want %d", got, v)
			}
			if err := os.Remove(filepath.Join(c.configDir, "zz-broken.hcl")); err != nil {
				t.Fatal(err)
			}
			// Back to the last good content: no new version, diagnostics cleared.
			st = c.waitStatus("the fixed directory is read", func(st configapi.ConfigStatus) bool { return st.LastReloadResult == "unchanged" })
			if st.Version != v || len(st.Diagnostics) != 0 {
				t.Errorf("after the fix: got version %d with %d diagnostics, want version %d and none", st.Version, len(st.Diagnostics), v)
			}
		})
	}

	t.Run("refusals are counted in a metric", func(t *testing.T) {
		resp, err := http.Get("http://" + c.ctlAddr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		want := fmt.Sprintf(`claude_relay_config_reloads_total{result="refused"} %d`, c.status().Refused)
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics: want a line %q in\n%s", want, body)
		}
	})
}

func mustSymlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func TestStreamStartedBeforeReloadCompletesByteForByte(t *testing.T) {
	c := newCluster(t, baseHCL())
	c.startControl()
	key := c.relayKey("")
	s := c.startSidecar("sidecar", "", "")
	v := c.status().Version
	s.waitVersion(t, v)

	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, s.url()+"/v1/messages",
		strings.NewReader(`{"model":"claude-sonnet-4-5","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"hello"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("x-api-key", key)
	req.Header.Set("anthropic-version", "2023-06-01")
	req.Header.Set("content-type", "application/json")
	req.Header.Set(fakeupstream.ScriptHeader, fakeupstream.Script{Pace: 40 * time.Millisecond, Deltas: 20}.HeaderValue())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("stream: got %d %s, want 200", resp.StatusCode, b)
	}
	br := bufio.NewReader(resp.Body)
	first, err := br.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}

	// Reload while the stream is in flight, and wait until the sidecar runs the new version.
	c.writeFile("relay.hcl", baseHCL("/v1/during-stream"))
	v = c.published(v)
	s.waitVersion(t, v)
	rest, err := io.ReadAll(br)
	if err != nil {
		t.Fatalf("stream broken by the reload: %v", err)
	}
	got := first + string(rest)

	reqs, err := c.up.WaitRequests(t.Context(), 1)
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Join(reqs[0].Events, "")
	if got != want {
		t.Errorf("stream across a reload differs from what the upstream sent:\ngot  %q\nwant %q", got, want)
	}
	if !strings.Contains(got, "event: message_stop") {
		t.Errorf("stream did not complete: %q", tail(got, 200))
	}
}

func TestSidecarSurvivesControlPlaneOutage(t *testing.T) {
	c := newCluster(t, baseHCL())
	c.startControl()
	s := c.startSidecar("sidecar", "", "")
	v := c.status().Version
	s.waitVersion(t, v)

	c.ctl.kill()
	t.Run("control plane killed: the sidecar keeps serving", func(t *testing.T) {
		testutil.Eventually(t, waitFor, "the sidecar notices the control plane is gone", func() bool {
			return s.health(t).Components["control_plane"] == "unreachable"
		})
		if got := routeStatus(t, s, "/v1/messages"); got != http.StatusUnauthorized {
			t.Errorf("got %d, want 401 (configuration still applied)", got)
		}
		if h := s.health(t); h.Code != http.StatusOK || h.Status != "ok" {
			t.Errorf("health: got %d %s, want 200 ok with control_plane unreachable (a warning)", h.Code, h.Raw)
		}
	})

	t.Run("sidecar restarted while the control plane is down: serves its disk copy", func(t *testing.T) {
		s.stop()
		s = c.startSidecar("sidecar-restarted", s.addr, s.dataDir)
		if h := s.health(t); h.Code != http.StatusOK || h.Components["control_plane"] != "unreachable" || h.Components["config"] != "ok" {
			t.Errorf("health: got %d %s, want 200, a configuration applied, control plane unreachable", h.Code, h.Raw)
		}
		if got := routeStatus(t, s, "/v1/messages"); got != http.StatusUnauthorized {
			t.Errorf("got %d, want 401 (configuration from disk)", got)
		}
	})

	t.Run("control plane back: they converge", func(t *testing.T) {
		c.writeFile("relay.hcl", baseHCL("/v1/while-down"))
		c.startControl()
		testutil.Eventually(t, waitFor, "the restarted sidecar reports version "+fmt.Sprint(v)+" from its disk copy", func() bool {
			st := s.channel(t)
			return st.Version == v && st.Source == "disk" || st.Version > v
		})
		v = c.published(v)
		s.waitVersion(t, v)
		if got := routeStatus(t, s, "/v1/while-down"); got != http.StatusUnauthorized {
			t.Errorf("got %d, want 401 (new route)", got)
		}
		if st := s.channel(t); !st.Reachable || st.Source != "control_plane" {
			t.Errorf("reported channel: got %+v, want reachable, source control_plane", st)
		}
		if h := s.health(t); h.Components["control_plane"] != "ok" {
			t.Errorf("health: got %s, want control_plane ok", h.Raw)
		}
	})
}

func TestSidecarWithNeitherDiskCopyNorControlPlaneRefusesTrafficAndSaysWhy(t *testing.T) {
	c := newCluster(t, baseHCL()) // the control plane is never started
	s := c.startSidecar("sidecar", "", "")
	code, body := s.do(t, http.MethodPost, "/v1/messages", nil, `{}`)
	if code != http.StatusServiceUnavailable {
		t.Errorf("request: got %d %s, want 503", code, body)
	}
	h := s.health(t)
	cp := h.Components["control_plane"]
	if h.Code != http.StatusServiceUnavailable || cp != "error: unreachable, and no saved configuration" {
		t.Errorf("health: got %d control_plane=%q, want 503 saying the control plane is unreachable and there is no saved copy", h.Code, cp)
	}
	if strings.Contains(h.Raw, c.ctlAddr) || strings.Contains(h.Raw, s.dataDir) {
		t.Errorf("public health names the control plane's address or the data dir: %s", h.Raw)
	}
	if out := s.out.String(); !strings.Contains(out, c.ctlAddr) || !strings.Contains(out, "no configuration yet") {
		t.Errorf("the log does not say why, with the control plane's address:\n%s", tail(out, 2000))
	}
}

func TestTwoSidecarsConvergeAndAdminShowsNack(t *testing.T) {
	c := newCluster(t, baseHCL())
	c.startControl()
	s1 := c.startSidecar("sidecar-1", "", "")
	s2 := c.startSidecar("sidecar-2", "", "", "CLAUDE_RELAY_TEST_REFUSE_CONFIG=/v1/nack-me")
	v := c.status().Version
	s1.waitVersion(t, v)
	s2.waitVersion(t, v)

	c.writeFile("relay.hcl", baseHCL("/v1/everywhere"))
	v = c.published(v)
	s1.waitVersion(t, v)
	s2.waitVersion(t, v)
	good := v

	c.writeFile("relay.hcl", baseHCL("/v1/everywhere", "/v1/nack-me"))
	v = c.published(v)
	s1.waitVersion(t, v)
	testutil.Eventually(t, waitFor, "sidecar-2 reports its NACK", func() bool {
		return s2.channel(t).NackVersion == v
	})
	if got := s2.channel(t).Version; got != good {
		t.Errorf("sidecar-2 version after refusing: got %d, want %d", got, good)
	}
	if got := routeStatus(t, s2, "/v1/everywhere"); got != http.StatusUnauthorized {
		t.Errorf("sidecar-2 keeps the previous configuration: got %d, want 401", got)
	}
	if got := routeStatus(t, s2, "/v1/nack-me"); got != http.StatusNotFound {
		t.Errorf("sidecar-2 does not run the refused one: got %d, want 404", got)
	}

	// The registry learns of the NACK on sidecar-2's next poll.
	var list configapi.SidecarList
	testutil.Eventually(t, waitFor, "admin sidecars shows the NACK", func() bool {
		if err := json.Unmarshal([]byte(c.runCLI("sidecars", "--json")), &list); err != nil {
			t.Fatal(err)
		}
		for _, sc := range list.Sidecars {
			if sc.Addr == s2.addr && sc.NackVersion == v {
				return true
			}
		}
		return false
	})
	byAddr := map[string]configapi.Sidecar{}
	for _, sc := range list.Sidecars {
		byAddr[sc.Addr] = sc
	}
	if got := byAddr[s1.addr]; got.Version != v || got.NackVersion != 0 {
		t.Errorf("sidecar-1 in the registry: got %+v, want version %d and no NACK", got, v)
	}
	if got := byAddr[s2.addr]; got.Version != good || !strings.Contains(got.LastError, "test hook") {
		t.Errorf("sidecar-2 in the registry: got %+v, want version %d and the refusal", got, good)
	}
	table := c.runCLI("sidecars")
	for _, want := range []string{s1.addr, s2.addr, fmt.Sprintf("NACK v%d", v), "in sync"} {
		if !strings.Contains(table, want) {
			t.Errorf("admin sidecars: want %q in\n%s", want, table)
		}
	}
	if out := c.runCLI("config", "status"); !strings.Contains(out, fmt.Sprint(v)) {
		t.Errorf("admin config status: want version %d in\n%s", v, out)
	}
}

// accessHCL is a configuration whose allowlist, trusted proxies, policy models and route
// paths the test varies.
func accessHCL(cidrs, trusted, models, paths []string) string {
	return fmt.Sprintf(`server { trusted_proxies = %s }

allowlist "clients" { cidrs = %s }

policy "team" { models = %s }

pool "claude" {}

route "messages" {
  paths     = %s
  pool      = "claude"
  allowlist = "clients"
  policy    = "team"
}
`, quoteList(trusted), quoteList(cidrs), quoteList(models), quoteList(paths))
}

func TestRouteAllowlistAndPolicyChangesTakeEffectOnNextRequest(t *testing.T) {
	loopback := []string{"127.0.0.0/8", "::1/128"}
	trustLoopback := []string{"127.0.0.1/32", "::1/128"}
	sonnet := []string{"claude-sonnet-*"}
	messages := []string{"/v1/messages"}
	c := newCluster(t, accessHCL(loopback, trustLoopback, sonnet, messages))
	c.startControl()
	key := c.relayKey("")
	s := c.startSidecar("sidecar", "", "")
	v := c.status().Version
	s.waitVersion(t, v)

	send := func(t *testing.T, path, xff string) int {
		t.Helper()
		h := http.Header{"X-Api-Key": {key}, "Anthropic-Version": {"2023-06-01"}, "Content-Type": {"application/json"}}
		if xff != "" {
			h.Set("X-Forwarded-For", xff)
		}
		code, _ := s.do(t, http.MethodPost, path, h, `{"model":"claude-sonnet-4-5","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}`)
		return code
	}
	docs := []string{"203.0.113.0/24", "2001:db8::/32"}
	steps := []struct {
		name        string
		hcl         string
		path, xff   string
		want        int
		sameVersion bool // the request runs on the configuration of the previous step
	}{
		{"loopback allowed", accessHCL(loopback, trustLoopback, sonnet, messages), "/v1/messages", "", 200, true},
		{"allowlist no longer holds loopback", accessHCL([]string{"10.0.0.0/8", "2001:db8::/32"}, trustLoopback, sonnet, messages), "/v1/messages", "", 403, false},
		{"trusted proxy forwards an allowed IPv4 client", accessHCL(docs, trustLoopback, sonnet, messages), "/v1/messages", "203.0.113.9", 200, false},
		{"trusted proxy forwards an allowed IPv6 client", "", "/v1/messages", "2001:db8::7", 200, true},
		{"trusted proxy forwards a client outside the allowlist", "", "/v1/messages", "198.51.100.1", 403, true},
		{"loopback no longer a trusted proxy: X-Forwarded-For ignored", accessHCL(docs, []string{"10.9.9.9/32"}, sonnet, messages), "/v1/messages", "203.0.113.9", 403, false},
		{"policy no longer allows the model", accessHCL(loopback, trustLoopback, []string{"claude-haiku-*"}, messages), "/v1/messages", "", 403, false},
		{"policy allows it again", accessHCL(loopback, trustLoopback, sonnet, messages), "/v1/messages", "", 200, false},
		{"route moved away", accessHCL(loopback, trustLoopback, sonnet, []string{"/claude/v1/messages"}), "/v1/messages", "", 404, false},
		{"route at its new path", "", "/claude/v1/messages", "", 200, true},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if !st.sameVersion {
				c.writeFile("relay.hcl", st.hcl)
				v = c.published(v)
				s.waitVersion(t, v)
			}
			if got := send(t, st.path, st.xff); got != st.want {
				t.Errorf("POST %s (X-Forwarded-For %q): got %d, want %d", st.path, st.xff, got, st.want)
			}
		})
	}
}
