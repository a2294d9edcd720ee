// Package crstest writes Claude Relay Service (CRS) data into a Redis the way CRS does, from
// the recipes of its public source (key hashing, scrypt + AES-256-CBC account envelopes, the
// key layout and the usage keys), so import tests run against a faithful dataset. It is test
// support: nothing in the relay imports it.
package crstest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/claude-relay/claude-relay/internal/migrate/crs"
)

// Writer writes CRS records with one ENCRYPTION_KEY and timezone.
type Writer struct {
	RDB           redis.UniversalClient
	EncryptionKey string
	// TZOffset is CRS's TIMEZONE_OFFSET in hours (0 means 8, as in CRS).
	TZOffset int
	// Now is the clock (default time.Now).
	Now func() time.Time
}

func (w *Writer) now() time.Time {
	if w.Now != nil {
		return w.Now()
	}
	return time.Now()
}

func (w *Writer) offset() time.Duration {
	if w.TZOffset == 0 {
		return 8 * time.Hour
	}
	return time.Duration(w.TZOffset) * time.Hour
}

// LocalDate is CRS's getDateStringInTimezone.
func (w *Writer) LocalDate(t time.Time) string { return t.UTC().Add(w.offset()).Format(time.DateOnly) }

func uuid() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// NewSecret returns a relay key as CRS made them: cr_ + 64 hex.
func NewSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return "cr_" + hex.EncodeToString(b)
}

// Hash is CRS's _hashApiKey: hex sha256(key + ENCRYPTION_KEY).
func (w *Writer) Hash(secret string) string {
	s := sha256.Sum256([]byte(secret + w.EncryptionKey))
	return hex.EncodeToString(s[:])
}

// AddKey writes an API key as generateApiKey does (apikey:<id> and apikey:hash_map), with
// fields overriding the defaults. It returns the id and the secret.
func (w *Writer) AddKey(ctx context.Context, fields map[string]string) (id, secret string, err error) {
	id, secret = uuid(), NewSecret()
	hash := w.Hash(secret)
	now := w.now().UTC().Format(time.RFC3339Nano)
	rec := map[string]string{
		"id": id, "name": "Unnamed Key", "description": "", "apiKey": hash, "tokenLimit": "0",
		"concurrencyLimit": "0", "rateLimitWindow": "0", "rateLimitRequests": "0", "rateLimitCost": "0",
		"isActive": "true", "claudeAccountId": "", "claudeConsoleAccountId": "", "geminiAccountId": "",
		"openaiAccountId": "", "azureOpenaiAccountId": "", "bedrockAccountId": "", "droidAccountId": "",
		"permissions": "[]", "enableModelRestriction": "false", "restrictedModels": "[]",
		"enableClientRestriction": "false", "allowedClients": "[]", "dailyCostLimit": "0",
		"totalCostLimit": "0", "weeklyOpusCostLimit": "0", "tags": "[]", "activationDays": "0",
		"activationUnit": "days", "expirationMode": "fixed", "isActivated": "true", "activatedAt": now,
		"createdAt": now, "lastUsedAt": "", "expiresAt": "", "createdBy": "admin", "userId": "",
		"userUsername": "", "icon": "", "serviceRates": "{}", "weeklyResetDay": "1", "weeklyResetHour": "0",
	}
	for k, v := range fields {
		rec[k] = v
	}
	_, err = w.RDB.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, "apikey:hash_map", hash, id)
		p.HSet(ctx, "apikey:"+id, rec)
		p.ZAdd(ctx, "apikey:idx:createdAt", redis.Z{Score: float64(w.now().UnixMilli()), Member: id})
		p.SAdd(ctx, "apikey:idx:all", id)
		return nil
	})
	return id, secret, err
}

func (w *Writer) seal(salt, field string) (string, error) {
	iv := make([]byte, 16)
	_, _ = rand.Read(iv)
	return crs.Seal(w.EncryptionKey, salt, iv, field)
}

// Proxy is CRS's proxy JSON.
type Proxy struct {
	Type     string `json:"type"`
	Host     string `json:"host"`
	Port     int    `json:"port"`
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
}

func proxyJSON(p *Proxy) string {
	if p == nil {
		return ""
	}
	b, _ := json.Marshal(p)
	return string(b)
}

// AddOAuthAccount writes a Claude OAuth account as claudeAccountService.createAccount does
// (tokens sealed under scrypt(key, "salt")), with fields overriding the defaults.
func (w *Writer) AddOAuthAccount(ctx context.Context, name, access, refresh string, expires time.Time, proxy *Proxy, fields map[string]string) (string, error) {
	id := uuid()
	oauth, _ := json.Marshal(map[string]any{"accessToken": access, "refreshToken": refresh, "expiresAt": expires.UnixMilli(), "scopes": []string{"user:inference", "user:profile"}})
	rec := map[string]string{
		"id": id, "name": name, "description": "", "expiresAt": strconv.FormatInt(expires.UnixMilli(), 10),
		"scopes": "user:inference user:profile", "proxy": proxyJSON(proxy), "isActive": "true",
		"accountType": "shared", "platform": "claude", "priority": "50", "createdAt": w.now().UTC().Format(time.RFC3339Nano),
		"status": "active", "schedulable": "true",
	}
	for f, v := range map[string]string{"email": "member@example.com", "password": "", "claudeAiOauth": string(oauth), "accessToken": access, "refreshToken": refresh} {
		s, err := w.seal(crs.SaltClaudeOAuth, v)
		if err != nil {
			return "", err
		}
		if v == "" {
			s = ""
		}
		rec[f] = s
	}
	for k, v := range fields {
		rec[k] = v
	}
	_, err := w.RDB.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, "claude:account:"+id, rec)
		p.SAdd(ctx, "claude:account:index", id)
		return nil
	})
	return id, err
}

// AddConsoleAccount writes a Claude Console account as claudeConsoleAccountService does (the
// key sealed under scrypt(key, "claude-console-salt")).
func (w *Writer) AddConsoleAccount(ctx context.Context, name, apiURL, apiKey string, proxy *Proxy, fields map[string]string) (string, error) {
	id := uuid()
	sealed, err := w.seal(crs.SaltClaudeConsole, apiKey)
	if err != nil {
		return "", err
	}
	rec := map[string]string{
		"id": id, "platform": "claude-console", "name": name, "description": "", "apiUrl": apiURL,
		"apiKey": sealed, "priority": "50", "supportedModels": "{}", "userAgent": "", "rateLimitDuration": "60",
		"proxy": proxyJSON(proxy), "isActive": "true", "accountType": "shared", "createdAt": w.now().UTC().Format(time.RFC3339Nano),
		"status": "active", "schedulable": "true", "dailyQuota": "0", "maxConcurrentTasks": "0",
	}
	for k, v := range fields {
		rec[k] = v
	}
	_, err = w.RDB.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, "claude_console_account:"+id, rec)
		p.SAdd(ctx, "claude_console_account:index", id)
		p.SAdd(ctx, "shared_claude_console_accounts", id)
		return nil
	})
	return id, err
}

// AddGroup writes an account group (accountGroupService.createGroup) with its members.
func (w *Writer) AddGroup(ctx context.Context, name, platform string, members ...string) (string, error) {
	id := uuid()
	now := w.now().UTC().Format(time.RFC3339Nano)
	_, err := w.RDB.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, "account_group:"+id, "id", id, "name", name, "platform", platform, "description", "", "createdAt", now, "updatedAt", now)
		p.SAdd(ctx, "account_groups", id)
		for _, m := range members {
			p.SAdd(ctx, "account_group_members:"+id, m)
			p.SAdd(ctx, "account_groups_reverse:"+platform+":"+m, id)
		}
		return nil
	})
	return id, err
}

// AddOther writes an account of another platform under prefix (e.g. "gemini_account:").
func (w *Writer) AddOther(ctx context.Context, prefix, name string) (string, error) {
	id := uuid()
	return id, w.RDB.HSet(ctx, prefix+id, "id", id, "name", name, "platform", prefix).Err()
}

// Usage is one request's usage as CRS records it.
type Usage struct {
	Input, Output, CacheCreate, CacheRead, Ephemeral5m, Ephemeral1h int64
	RealCost, RatedCost                                             float64 // USD
}

// Record counts one request at at, as incrementTokenUsage, incrementAccountUsage and
// incrementDailyCost do: per key (all-time, daily, per model daily/monthly/hourly/all-time),
// per account (daily, per model daily), cost totals, and their indexes.
func (w *Writer) Record(ctx context.Context, keyID, accountID, model string, at time.Time, u Usage) error {
	local := at.UTC().Add(w.offset())
	date := local.Format(time.DateOnly)
	month := local.Format("2006-01")
	hour := date + ":" + local.Format("15")
	all := u.Input + u.Output + u.CacheCreate + u.CacheRead
	counters := func(p redis.Pipeliner, key, prefix string) {
		p.HIncrBy(ctx, key, prefix+"inputTokens", u.Input)
		p.HIncrBy(ctx, key, prefix+"outputTokens", u.Output)
		p.HIncrBy(ctx, key, prefix+"cacheCreateTokens", u.CacheCreate)
		p.HIncrBy(ctx, key, prefix+"cacheReadTokens", u.CacheRead)
		p.HIncrBy(ctx, key, prefix+"allTokens", all)
		p.HIncrBy(ctx, key, prefix+"requests", 1)
		p.HIncrBy(ctx, key, prefix+"ephemeral5mTokens", u.Ephemeral5m)
		p.HIncrBy(ctx, key, prefix+"ephemeral1hTokens", u.Ephemeral1h)
	}
	costs := func(p redis.Pipeliner, key string) {
		if u.RealCost > 0 {
			p.HIncrBy(ctx, key, "realCostMicro", int64(u.RealCost*1e6+0.5))
		}
		if u.RatedCost > 0 {
			p.HIncrBy(ctx, key, "ratedCostMicro", int64(u.RatedCost*1e6+0.5))
		}
	}
	_, err := w.RDB.Pipelined(ctx, func(p redis.Pipeliner) error {
		total := "usage:" + keyID
		p.HIncrBy(ctx, total, "totalTokens", u.Input+u.Output)
		p.HIncrBy(ctx, total, "totalInputTokens", u.Input)
		p.HIncrBy(ctx, total, "totalOutputTokens", u.Output)
		p.HIncrBy(ctx, total, "totalCacheCreateTokens", u.CacheCreate)
		p.HIncrBy(ctx, total, "totalCacheReadTokens", u.CacheRead)
		p.HIncrBy(ctx, total, "totalAllTokens", all)
		p.HIncrBy(ctx, total, "totalEphemeral5mTokens", u.Ephemeral5m)
		p.HIncrBy(ctx, total, "totalEphemeral1hTokens", u.Ephemeral1h)
		p.HIncrBy(ctx, total, "totalRequests", 1)
		counters(p, "usage:daily:"+keyID+":"+date, "")
		counters(p, "usage:monthly:"+keyID+":"+month, "")
		counters(p, "usage:hourly:"+keyID+":"+hour, "")
		for _, k := range []string{
			"usage:" + keyID + ":model:daily:" + model + ":" + date,
			"usage:" + keyID + ":model:monthly:" + model + ":" + month,
			"usage:" + keyID + ":model:hourly:" + model + ":" + hour,
			"usage:" + keyID + ":model:alltime:" + model,
		} {
			counters(p, k, "")
			costs(p, k)
		}
		counters(p, "usage:model:daily:"+model+":"+date, "")
		p.SAdd(ctx, "usage:daily:index:"+date, keyID)
		p.SAdd(ctx, "usage:keymodel:daily:index:"+date, keyID+":"+model)
		p.IncrByFloat(ctx, "usage:cost:daily:"+keyID+":"+date, u.RatedCost)
		p.IncrByFloat(ctx, "usage:cost:total:"+keyID, u.RatedCost)
		p.IncrByFloat(ctx, "usage:cost:real:total:"+keyID, u.RealCost)
		p.IncrByFloat(ctx, "usage:cost:real:daily:"+keyID+":"+date, u.RealCost)
		if accountID != "" {
			p.HIncrBy(ctx, "account_usage:"+accountID, "totalRequests", 1)
			counters(p, "account_usage:daily:"+accountID+":"+date, "")
			counters(p, "account_usage:hourly:"+accountID+":"+hour, "")
			counters(p, "account_usage:hourly:"+accountID+":"+hour, "model:"+model+":")
			counters(p, "account_usage:model:daily:"+accountID+":"+model+":"+date, "")
			p.SAdd(ctx, "account_usage:daily:index:"+date, accountID)
			p.SAdd(ctx, "account_usage:model:daily:index:"+date, accountID+":"+model)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("record CRS usage: %w", err)
	}
	return nil
}
