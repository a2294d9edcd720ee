package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/redis/go-redis/v9"

	"github.com/claude-relay/claude-relay/controlplane"
	"github.com/claude-relay/claude-relay/controlplane/adminapi"
	"github.com/claude-relay/claude-relay/controlplane/adminclient"
	"github.com/claude-relay/claude-relay/internal/testutil"
)

const adminPassword = "e2e-admin-password-0123"

// dataDir is the -data-dir a proc was started with (the last one given wins).
func (p *proc) dataDir() string {
	dir := ""
	for i, a := range p.cmd.Args {
		if a == "-data-dir" && i+1 < len(p.cmd.Args) {
			dir = p.cmd.Args[i+1]
		}
	}
	return dir
}

// adminGet sends GET path with token and returns the status and the error message, if any.
func adminGet(t *testing.T, p *proc, path, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", p.url()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body adminapi.ErrorBody
	_ = json.NewDecoder(resp.Body).Decode(&body) // a 200 has no error to decode
	return resp.StatusCode, body.Error.Message
}

func login(t *testing.T, p *proc, password string) (string, error) {
	t.Helper()
	c, err := adminclient.New(p.url(), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Login(context.Background(), "admin", password)
	return res.Token, err
}

// flushAll empties the install's Redis (every master of a Cluster).
func (in *install) flushAll(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	var err error
	if cc, ok := in.rdb.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error { return n.FlushAll(ctx).Err() })
	} else {
		err = in.rdb.FlushAll(ctx).Err()
	}
	if err != nil {
		t.Fatal(err)
	}
}

// TestControlPlaneAdminSessionsNeedTheControlPlanesKey runs real control planes and shows
// that what a sidecar holds (the JWT secret, here with every claim a session has, for ten
// years) opens nothing; that a session works on every control plane holding the same key
// file and on no other; and that after Redis is emptied the admin logs in again with
// ADMIN_PASSWORD while the session from before is refused.
func TestControlPlaneAdminSessionsNeedTheControlPlanesKey(t *testing.T) {
	in := newInstall(t)
	in.env = append(in.env, "ADMIN_PASSWORD="+adminPassword)
	cp1 := in.start("control-1", "control")

	keyFile := filepath.Join(cp1.dataDir(), controlplane.SigningKeyFile)
	fi, err := os.Stat(keyFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("signing key %s: got %v (%v), want a 0600 file", keyFile, fi, err)
	}

	now := time.Now()
	forged, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"iss": "claude-relay", "sub": "nobody", "aud": adminapi.Audience, "jti": "forged",
		"iat": now.Unix(), "exp": now.AddDate(10, 0, 0).Unix(),
	}).SignedString([]byte(testJWTSecret))
	if err != nil {
		t.Fatal(err)
	}
	if code, _ := adminGet(t, cp1, "/admin/keys", forged); code != http.StatusUnauthorized {
		t.Errorf("a token minted with the JWT secret: got %d, want 401", code)
	}

	token, err := login(t, cp1, adminPassword)
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	if code, msg := adminGet(t, cp1, "/admin/keys", token); code != http.StatusOK {
		t.Fatalf("the session on its control plane: got %d (%s), want 200", code, msg)
	}

	// A second control plane with a key of its own refuses the session and says why.
	cp2 := in.start("control-2", "control")
	code, msg := adminGet(t, cp2, "/admin/whoami", token)
	if code != http.StatusUnauthorized || !strings.Contains(msg, controlplane.SigningKeyFile) {
		t.Errorf("another key's control plane: got %d %q, want 401 naming the key file to share", code, msg)
	}
	// A third one given a copy of the key file accepts it.
	shared := t.TempDir()
	b, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(shared, controlplane.SigningKeyFile), b, 0o600); err != nil {
		t.Fatal(err)
	}
	cp3 := in.start("control-3", "control", "-data-dir", shared)
	if code, msg := adminGet(t, cp3, "/admin/whoami", token); code != http.StatusOK {
		t.Errorf("a control plane sharing the key file: got %d (%s), want 200", code, msg)
	}

	// Redis is emptied: the admin logs in again at once; the old session is refused.
	in.flushAll(t)
	fresh, err := login(t, cp1, adminPassword)
	if err != nil {
		t.Fatalf("login after Redis was emptied: %v", err)
	}
	if code, msg := adminGet(t, cp1, "/admin/keys", fresh); code != http.StatusOK {
		t.Errorf("the new session: got %d (%s), want 200", code, msg)
	}
	for _, p := range []*proc{cp1, cp3} {
		if code, msg := adminGet(t, p, "/admin/keys", token); code != http.StatusUnauthorized || !strings.Contains(msg, "Redis was emptied") {
			t.Errorf("%s, the session from before the loss: got %d %q, want 401 saying Redis was emptied", p.name, code, msg)
		}
	}
}

var generatedPassword = regexp.MustCompile(`Created admin "admin" with generated password \(shown once\): (\S+)`)

// TestControlPlaneReCreatesAGeneratedAdminAfterRedisIsEmptied: without ADMIN_PASSWORD the
// control plane prints a generated password at the first start, and a new one, once, when
// it finds Redis emptied.
func TestControlPlaneReCreatesAGeneratedAdminAfterRedisIsEmptied(t *testing.T) {
	in := newInstall(t)
	cp := in.start("control", "control")
	first := generatedPassword.FindAllStringSubmatch(cp.out.String(), -1)
	if len(first) != 1 {
		t.Fatalf("got %d generated passwords at the first start, want 1:\n%s", len(first), cp.out.String())
	}
	if _, err := login(t, cp, first[0][1]); err != nil {
		t.Fatalf("login with the generated password: %v", err)
	}

	in.flushAll(t)
	// The old password is gone with Redis; the failed login itself makes the control plane
	// notice (without it, the periodic check would within 10 s).
	var ae *adminclient.APIError
	if _, err := login(t, cp, first[0][1]); !errors.As(err, &ae) || ae.StatusCode != http.StatusUnauthorized {
		t.Fatalf("login with the lost password: got %v, want 401", err)
	}
	var all [][]string
	testutil.Eventually(t, 15*time.Second, "a second generated password", func() bool {
		all = generatedPassword.FindAllStringSubmatch(cp.out.String(), -1)
		return len(all) == 2
	})
	if _, err := login(t, cp, all[1][1]); err != nil {
		t.Fatalf("login with the new generated password: %v", err)
	}
	if strings.Count(cp.out.String(), all[1][1]) != 1 {
		t.Error("the new password appears more than once in the output, want it shown once")
	}
}
