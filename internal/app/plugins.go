package app

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/redis/go-redis/v9"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/internal/health"
	"github.com/claude-relay/claude-relay/internal/metrics"
	"github.com/claude-relay/claude-relay/plugins/auth-apikey/apikey"
	"github.com/claude-relay/claude-relay/plugins/contract"
	"github.com/claude-relay/claude-relay/plugins/crypto-aesgcm/aesgcm"
	"github.com/claude-relay/claude-relay/plugins/host"
	"github.com/claude-relay/claude-relay/store"
	"github.com/claude-relay/claude-relay/store/decryptcache"
)

// Plugin binary names in the plugin directory. Another provider (an IdP, Vault transit, a
// KMS) is installed under the same name.
const (
	authPluginFile   = "auth-apikey"
	cryptoPluginFile = "crypto-aesgcm"
)

// Auth cache lifetimes the sidecar uses when the provider names none.
const (
	authCacheTTL    = 60 * time.Second
	authNegativeTTL = 2 * time.Second
)

// Decryption cache bounds: opened credentials kept in memory in front of the crypto provider.
const (
	decryptCacheSize = 10_000
	decryptCacheTTL  = 10 * time.Minute
)

// pluginDir returns the plugin directory and whether the operator chose it: the -plugin-dir
// flag or CLAUDE_RELAY_PLUGIN_DIR, else "plugins" beside the claude-relay binary (bin/plugins
// after `make build`).
func pluginDir(env *config.Env) (string, bool) {
	if env.PluginDir != "" {
		return env.PluginDir, true
	}
	exe, err := os.Executable()
	if err != nil {
		return "plugins", false
	}
	if real, err := filepath.EvalSymlinks(exe); err == nil {
		exe = real
	}
	return filepath.Join(filepath.Dir(exe), "plugins"), false
}

// pluginPath finds a plugin binary. found is false when it is absent from a directory the
// operator did not choose: the built-in provider then runs in-process.
func (b *Base) pluginPath(file string) (path string, found bool, err error) {
	dir, explicit := pluginDir(b.Env)
	path = filepath.Join(dir, file)
	if _, err := os.Stat(path); err != nil {
		if explicit || !errors.Is(err, os.ErrNotExist) {
			return "", false, fmt.Errorf("provider plugin %s: %w (set %s or -plugin-dir to the directory `make build` fills, bin/plugins)", file, err, config.EnvPluginDir)
		}
		b.Log.Warn("provider plugin not installed; running the built-in provider in-process (no hot swap)", "plugin", file, "looked_for", path)
		return "", false, nil
	}
	return path, true, nil
}

// hostConfig is how the relay runs a plugin: no inherited environment, settings (secrets
// included) sent over the plugin channel.
func (b *Base) hostConfig(file, path string, settings map[string]string) host.Config {
	return host.Config{Name: file, Path: path, Settings: settings, Logger: b.Log}
}

// addPluginHealth shows a plugin in /health.
func (b *Base) addPluginHealth(name string, check func(context.Context) error, status func() host.Status) {
	b.pluginHealth = append(b.pluginHealth, health.Check{
		Name:  "plugin." + name,
		Check: check,
		Info:  func() any { return status() },
	})
}

// startCrypto starts the crypto provider: the crypto-aesgcm plugin, else the same provider
// in-process. Keys go to it through Configure, never through its environment.
func (b *Base) startCrypto(ctx context.Context) (contract.Crypto, error) {
	settings := map[string]string{
		aesgcm.SettingKey:          b.Env.EncryptionKey,
		aesgcm.SettingPreviousKeys: strings.Join(b.Env.EncryptionKeyPrevious, ","),
	}
	path, found, err := b.pluginPath(cryptoPluginFile)
	if err != nil {
		return nil, err
	}
	if !found {
		p := aesgcm.NewProvider(Version)
		if err := p.Configure(ctx, settings); err != nil {
			return nil, err
		}
		return p, nil
	}
	h, err := host.StartCrypto(ctx, b.hostConfig(cryptoPluginFile, path, settings))
	if err != nil {
		return nil, err
	}
	b.closers = append(b.closers, h.Close)
	b.addPluginHealth("crypto", h.Check, h.Status)
	return h, nil
}

// startAuth starts the auth provider for the sidecar: the auth-apikey plugin, told where
// Redis is and given the relay-key pepper (and the legacy key secret while imported keys wait
// for their first use), else the same provider in-process.
func (b *Base) startAuth(ctx context.Context) (contract.Auth, error) {
	path, found, err := b.pluginPath(authPluginFile)
	if err != nil {
		return nil, err
	}
	if !found {
		return apikey.FromStore(b.Store, Version, authCacheTTL, authNegativeTTL), nil
	}
	rc, err := json.Marshal(b.pluginRedisConfig())
	if err != nil {
		return nil, fmt.Errorf("encode redis settings: %w", err)
	}
	settings := map[string]string{
		apikey.SettingRedis:       string(rc),
		apikey.SettingPrefix:      b.Store.Schema().Prefix(),
		apikey.SettingPepper:      hex.EncodeToString(b.Store.Pepper()),
		apikey.SettingCacheTTL:    authCacheTTL.String(),
		apikey.SettingNegativeTTL: authNegativeTTL.String(),
	}
	if legacy := b.Store.LegacySecret(); legacy != nil {
		settings[apikey.SettingLegacySecret] = hex.EncodeToString(legacy)
	}
	h, err := host.StartAuth(ctx, b.hostConfig(authPluginFile, path, settings))
	if err != nil {
		return nil, err
	}
	b.closers = append(b.closers, h.Close)
	b.addPluginHealth("auth", h.Check, h.Status)
	return h, nil
}

// pluginRedisConfig tells a plugin how to reach the Redis this process uses: the operator's
// settings, or the address of dev mode's in-memory server.
func (b *Base) pluginRedisConfig() store.RedisConfig {
	if b.Env.RedisConfigured() {
		rc := redisConfig(b.Env)
		rc.PoolSize = 0 // go-redis's default is plenty for cache misses
		return rc
	}
	if c, ok := b.Redis.(*redis.Client); ok {
		o := c.Options()
		return store.RedisConfig{Addr: o.Addr, Password: o.Password, DB: o.DB}
	}
	return redisConfig(b.Env)
}

// sealer is what the store seals and opens with: the crypto provider behind the bounded
// decryption cache.
func sealer(c contract.Crypto) store.Sealer {
	return decryptcache.New(contract.Sealer{Crypto: c}, decryptCacheSize, decryptCacheTTL)
}

// OpenTool connects to Redis and starts the crypto provider the way the relay does, for
// commands that work on stored secrets (`claude-relay crypto rotate`). Close releases it.
func OpenTool(ctx context.Context, env *config.Env, stderr io.Writer) (*Base, error) {
	if n := len(env.EncryptionKey); n != config.EncryptionKeyLen {
		return nil, fmt.Errorf("%s must be exactly %d characters, got %d", config.EnvEncryptionKey, config.EncryptionKeyLen, n)
	}
	log := hclog.New(&hclog.LoggerOptions{Name: "claude-relay", Level: hclog.Warn, Output: stderr})
	b := &Base{Env: env, Log: log, Metrics: metrics.NewRegistry()}
	rdb, err := store.Connect(ctx, redisConfig(env))
	if err != nil {
		return nil, err
	}
	b.closers = append(b.closers, rdb.Close)
	if err := b.openStore(ctx, rdb); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}
