package host_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/redis/go-redis/v9"

	"github.com/claude-relay/claude-relay/internal/testredis"
	"github.com/claude-relay/claude-relay/internal/testutil"
	"github.com/claude-relay/claude-relay/plugins/auth-apikey/apikey"
	"github.com/claude-relay/claude-relay/plugins/host"
	"github.com/claude-relay/claude-relay/store"
	"github.com/claude-relay/claude-relay/store/storetest"
)

// bins holds the plugin binaries TestMain builds: real processes for every test.
var bins struct {
	authV1, authV2, crypto, env string
}

const modulePath = "github.com/claude-relay/claude-relay"

func TestMain(m *testing.M) {
	bin := func(path *string, name, pkg, version string) testutil.Binary {
		return testutil.Binary{Path: path, Name: name, Package: modulePath + pkg, LDFlags: "-X main.version=" + version}
	}
	os.Exit(testutil.RunWithBinaries(m,
		bin(&bins.authV1, "auth-apikey-v1", "/plugins/auth-apikey", "v1"),
		bin(&bins.authV2, "auth-apikey-v2", "/plugins/auth-apikey", "v2"),
		bin(&bins.crypto, "crypto-aesgcm", "/plugins/crypto-aesgcm", "v1"),
		bin(&bins.env, "envauth", "/plugins/host/testdata/envauth", "test"),
	))
}

// install copies src to dst the way package managers do: write a temporary file beside it,
// then rename it over the target.
func install(t testing.TB, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	installBytes(t, data, dst)
}

func installBytes(t testing.TB, data []byte, dst string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp")
	if err := os.WriteFile(tmp, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		t.Fatal(err)
	}
}

// redisConfig tells a plugin how to reach the test Redis.
func redisConfig(t testing.TB, rdb redis.UniversalClient) string {
	t.Helper()
	var rc store.RedisConfig
	switch c := rdb.(type) {
	case *redis.Client:
		rc.Addr = c.Options().Addr
	case *redis.ClusterClient:
		rc.ClusterAddrs = c.Options().Addrs
	default:
		t.Fatalf("unexpected redis client %T", rdb)
	}
	b, err := json.Marshal(rc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

const (
	oldKey = "0123456789abcdef0123456789abcdef"
	newKey = "fedcba9876543210fedcba9876543210"
)

// keyFixture is a store with relay keys, and the settings that point auth-apikey at it.
type keyFixture struct {
	st       *store.Store
	secrets  []string
	settings map[string]string
}

func newKeyFixture(t testing.TB, n int) *keyFixture {
	t.Helper()
	rdb, prefix := testredis.New(t)
	st := storetest.Open(t, rdb, store.Options{Prefix: prefix, Sealer: storetest.Sealer(t, oldKey)})
	f := &keyFixture{st: st, settings: map[string]string{
		apikey.SettingRedis:  redisConfig(t, rdb),
		apikey.SettingPrefix: prefix,
		apikey.SettingPepper: hex.EncodeToString(st.Pepper()),
	}}
	for i := range n {
		_, secret, err := st.CreateKey(context.Background(), store.KeySpec{Name: fmt.Sprintf("k%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		f.secrets = append(f.secrets, secret)
	}
	return f
}

// hostConfig is a Config tuned for tests: quick health checks and debounce.
func hostConfig(t testing.TB, path string, settings map[string]string, log hclog.Logger) host.Config {
	if log == nil {
		buf := &testutil.Buffer{}
		log = hclog.New(&hclog.LoggerOptions{Output: buf, Level: hclog.Info})
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("host log:\n%s", buf.String())
			}
		})
	}
	return host.Config{
		Path:           path,
		Settings:       settings,
		Logger:         log,
		HealthInterval: 200 * time.Millisecond,
		Debounce:       100 * time.Millisecond,
		RestartWait:    15 * time.Second,
		DrainTimeout:   5 * time.Second,
		BackoffMax:     time.Second,
	}
}
