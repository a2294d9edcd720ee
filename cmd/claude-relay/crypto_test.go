package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/claude-relay/claude-relay/internal/testredis"
	"github.com/claude-relay/claude-relay/plugins/crypto-aesgcm/aesgcm"
	"github.com/claude-relay/claude-relay/store"
)

const (
	rotateOldKey = "0123456789abcdef0123456789abcdef"
	rotateNewKey = "fedcba9876543210fedcba9876543210"
)

// failAfter rewraps n envelopes, then fails: an interrupted rotation.
type failAfter struct {
	*aesgcm.Sealer
	n int
}

func (f *failAfter) Rewrap(ctx context.Context, env, aad []byte) ([]byte, bool, error) {
	if f.n == 0 {
		return nil, false, errors.New("interrupted")
	}
	f.n--
	return f.Sealer.Rewrap(ctx, env, aad)
}

// rotateRedis starts a Redis of the test's own and points the environment of crypto rotate
// at it (REDIS_HOST, REDIS_PORT; the built-in crypto provider: the plugin path is tested in
// plugins/host); it returns a client of that Redis.
func rotateRedis(t *testing.T) *redis.Client {
	t.Helper()
	srv := testredis.StartServer(t)
	host, port, _ := net.SplitHostPort(srv.Addr())
	t.Setenv("REDIS_HOST", host)
	t.Setenv("REDIS_PORT", port)
	t.Setenv("CLAUDE_RELAY_PLUGIN_DIR", "")
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// rotate runs "crypto rotate", which must succeed, and returns its stdout.
func rotate(t *testing.T) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if code := runCrypto(context.Background(), []string{"rotate"}, &stdout, &stderr); code != 0 {
		t.Fatalf("got exit %d, want 0\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	return stdout.String()
}

func TestCryptoRotateResumesAndLeavesEverythingUnderTheNewKey(t *testing.T) {
	ctx := context.Background()
	rdb := rotateRedis(t)
	old, _ := aesgcm.New(rotateOldKey)
	both, _ := aesgcm.New(rotateNewKey, rotateOldKey)
	onlyNew, _ := aesgcm.New(rotateNewKey)
	seed, err := store.Open(ctx, rdb, store.Options{Sealer: old})
	if err != nil {
		t.Fatal(err)
	}
	const accounts = 12
	for i := range accounts {
		if _, err := seed.AddAccount(ctx, store.AccountSpec{Name: fmt.Sprint("a", i), Credential: fmt.Sprintf("sk-ant-api03-%030d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	// An interrupted earlier run re-encrypted the pepper and 4 accounts.
	partial, err := store.Open(ctx, rdb, store.Options{Sealer: both})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := partial.RotateSecrets(ctx, &failAfter{Sealer: both, n: 5}, nil); err == nil {
		t.Fatal("got no error from the interrupted run")
	}

	t.Setenv("CRS_SECURITY__ENCRYPTION_KEY", rotateNewKey)
	t.Setenv("CRS_SECURITY__ENCRYPTION_KEY_PREVIOUS", rotateOldKey)
	summary := regexp.MustCompile(`(\d+) secrets: (\d+) re-encrypted, (\d+) already under key ([0-9a-f]+), (\d+) failed`)
	runs := []struct {
		name                 string
		wantRewrapped, wantC string
	}{
		{"resumes the interrupted run", fmt.Sprint(accounts - 4), "5"},
		{"a second run changes nothing", "0", fmt.Sprint(accounts + 1)},
	}
	for _, r := range runs {
		t.Run(r.name, func(t *testing.T) {
			out := rotate(t)
			m := summary.FindStringSubmatch(out)
			if m == nil {
				t.Fatalf("no summary line in:\n%s", out)
			}
			if m[1] != fmt.Sprint(accounts+1) || m[2] != r.wantRewrapped || m[3] != r.wantC || m[4] != onlyNew.KeyID() || m[5] != "0" {
				t.Errorf("got summary %q, want %d secrets, %s re-encrypted, %s already under %s, 0 failed", m[0], accounts+1, r.wantRewrapped, r.wantC, onlyNew.KeyID())
			}
			if !strings.Contains(out, "progress: 13/13 (100%)") {
				t.Errorf("no final plain progress line (stdout is not a terminal) in:\n%s", out)
			}
		})
	}
	// The old key can be dropped.
	st, err := store.Open(ctx, rdb, store.Options{Sealer: onlyNew})
	if err != nil {
		t.Fatalf("open with only the new key: %v", err)
	}
	sealed, err := st.SealedSecrets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for name, env := range sealed {
		if id, _ := aesgcm.KeyIDOf(env); id != onlyNew.KeyID() {
			t.Errorf("%s is under key %s, want %s", name, id, onlyNew.KeyID())
		}
	}
}

func TestCryptoWithoutASubcommandPrintsUsage(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := runCrypto(context.Background(), nil, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "crypto rotate") {
		t.Errorf("got exit %d and %q, want 2 and the usage", code, stderr.String())
	}
}

func TestCryptoRotateBindsCredentialsOfOlderVersionsToTheirDestination(t *testing.T) {
	ctx := context.Background()
	rdb := rotateRedis(t)
	sealer, _ := aesgcm.New(rotateOldKey)
	st, err := store.Open(ctx, rdb, store.Options{Sealer: sealer})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := range 3 {
		a, err := st.AddAccount(ctx, store.AccountSpec{Name: fmt.Sprint("a", i), Credential: fmt.Sprintf("sk-ant-api03-%030d", i)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, a.ID)
	}
	// Two of them as an older version stored them: sealed with aad = account id, unbound.
	for i, id := range ids[:2] {
		env, err := sealer.Seal(ctx, []byte(fmt.Sprintf("sk-ant-api03-%030d", i)), []byte(id))
		if err != nil {
			t.Fatal(err)
		}
		key := st.Schema().Account(id)
		rdb.HSet(ctx, key, "credential", env)
		rdb.HDel(ctx, key, "credential_binding")
	}
	t.Setenv("CRS_SECURITY__ENCRYPTION_KEY", rotateOldKey)
	t.Setenv("CRS_SECURITY__ENCRYPTION_KEY_PREVIOUS", "")
	for _, want := range []string{"2 account credentials are now bound to their account's type, base URL and proxy", ""} {
		out := rotate(t)
		if got := strings.Contains(out, "now bound"); want == "" && got || want != "" && !strings.Contains(out, want) {
			t.Errorf("got:\n%s\nwant a line %q", out, want)
		}
	}
	for _, id := range ids {
		if a, err := st.OpenAccount(ctx, id); err != nil || a.Legacy {
			t.Errorf("account %s: got (legacy %v, %v), want bound", id, a.Legacy, err)
		}
	}
}
