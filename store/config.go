package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// StoredConfig is a configuration snapshot as the store numbers and keeps it: the control
// planes' shared current version. Config is the snapshot's JSON, SHA256 its hex SHA-256 as
// the publisher computed it (the reader checks it).
type StoredConfig struct {
	Epoch     string
	Version   int64
	SHA256    string
	CreatedAt time.Time
	Config    []byte
}

// publishConfigScript publishes a snapshot unless its hash is already the current one.
// KEYS: epoch, version, current (one {config} slot). ARGV: sha256, config JSON, created_at,
// a fresh epoch id used only when the store has none. Returns {published (0/1), epoch,
// version}.
var publishConfigScript = redis.NewScript(`
local epoch = redis.call('GET', KEYS[1])
if not epoch then
  epoch = ARGV[4]
  redis.call('SET', KEYS[1], epoch)
end
local cur = redis.call('HMGET', KEYS[3], 'sha256', 'epoch', 'version')
if cur[1] == ARGV[1] and cur[2] == epoch then
  return {0, epoch, cur[3]}
end
local v = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[3], 'epoch', epoch, 'version', v, 'sha256', ARGV[1], 'created_at', ARGV[3], 'config', ARGV[2])
return {1, epoch, tostring(v)}
`)

// PublishConfig makes c (its SHA256, Config and CreatedAt) the current configuration
// unless a snapshot with the same hash already is, and fills in c.Epoch and c.Version: the
// next version of the store's numbering when published, else the current one's. Versions
// strictly increase across restarts and agree between control planes sharing the store.
func (s *Store) PublishConfig(ctx context.Context, c *StoredConfig) (published bool, err error) {
	fresh := make([]byte, 8)
	if _, err := rand.Read(fresh); err != nil {
		return false, fmt.Errorf("generate configuration epoch: %w", err)
	}
	res, err := publishConfigScript.Run(ctx, s.rdb,
		[]string{s.keys.ConfigEpoch(), s.keys.ConfigVersion(), s.keys.ConfigCurrent()},
		c.SHA256, string(c.Config), c.CreatedAt.Format(time.RFC3339Nano), hex.EncodeToString(fresh)).Slice()
	if err != nil {
		return false, fmt.Errorf("publish configuration: %w", err)
	}
	if len(res) != 3 {
		return false, fmt.Errorf("publish configuration: script returned %d values", len(res))
	}
	n, _ := res[0].(int64)
	c.Epoch, _ = res[1].(string)
	verStr, _ := res[2].(string)
	if c.Version, err = strconv.ParseInt(verStr, 10, 64); err != nil {
		return false, fmt.Errorf("publish configuration: script returned version %q: %w", verStr, err)
	}
	return n == 1, nil
}

// CurrentConfig reads the current configuration; nil (and no error) when none was ever
// published.
func (s *Store) CurrentConfig(ctx context.Context) (*StoredConfig, error) {
	m, err := s.rdb.HGetAll(ctx, s.keys.ConfigCurrent()).Result()
	if err != nil {
		return nil, fmt.Errorf("read current configuration: %w", err)
	}
	if len(m) == 0 {
		return nil, nil
	}
	v, err := strconv.ParseInt(m["version"], 10, 64)
	if err != nil {
		return nil, fmt.Errorf("current configuration has version %q: %w", m["version"], err)
	}
	created, _ := time.Parse(time.RFC3339Nano, m["created_at"])
	return &StoredConfig{Epoch: m["epoch"], Version: v, SHA256: m["sha256"], CreatedAt: created, Config: []byte(m["config"])}, nil
}

// AnnounceConfig tells the other control planes that version was just published (they
// read it with CurrentConfig).
func (s *Store) AnnounceConfig(ctx context.Context, version int64) error {
	if err := s.rdb.Publish(ctx, s.keys.ConfigChannel(), strconv.FormatInt(version, 10)).Err(); err != nil {
		return fmt.Errorf("announce configuration version %d: %w", version, err)
	}
	return nil
}

// SubscribeConfig subscribes to AnnounceConfig's announcements; the caller closes the
// subscription.
func (s *Store) SubscribeConfig(ctx context.Context) *redis.PubSub {
	return s.rdb.Subscribe(ctx, s.keys.ConfigChannel())
}

// RecordSidecar saves what sidecar id last reported (its JSON) in the sidecar registry.
func (s *Store) RecordSidecar(ctx context.Context, id string, report []byte) error {
	if err := s.rdb.HSet(ctx, s.keys.Sidecars(), id, report).Err(); err != nil {
		return fmt.Errorf("write sidecar registry: %w", err)
	}
	return nil
}

// SidecarReports returns the sidecar registry: sidecar id → its last report's JSON.
func (s *Store) SidecarReports(ctx context.Context) (map[string]string, error) {
	m, err := s.rdb.HGetAll(ctx, s.keys.Sidecars()).Result()
	if err != nil {
		return nil, fmt.Errorf("read sidecar registry: %w", err)
	}
	return m, nil
}

// ForgetSidecars drops sidecars from the registry.
func (s *Store) ForgetSidecars(ctx context.Context, ids ...string) error {
	if len(ids) == 0 {
		return nil
	}
	if err := s.rdb.HDel(ctx, s.keys.Sidecars(), ids...).Err(); err != nil {
		return fmt.Errorf("drop sidecars from the registry: %w", err)
	}
	return nil
}
