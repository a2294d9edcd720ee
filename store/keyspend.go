package store

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// KeySpend is what one relay key consumed today, this week (from Monday), this month (UTC)
// by model, and in all its life.
type KeySpend struct {
	Today, Week, Month map[string]Usage
	Total              Usage
}

// KeySpend reads a key's daily hashes from the earlier of its week's and month's first day
// up to now's day, and its total, in one pipelined round trip (all in the key's slot).
func (s *Store) KeySpend(ctx context.Context, keyID string, now time.Time) (KeySpend, error) {
	today := now.UTC().Truncate(24 * time.Hour)
	week := today.AddDate(0, 0, -((int(today.Weekday()) + 6) % 7))
	month := time.Date(today.Year(), today.Month(), 1, 0, 0, 0, 0, time.UTC)
	first := month
	if week.Before(month) {
		first = week
	}
	var days []time.Time
	for d := first; !d.After(today); d = d.AddDate(0, 0, 1) {
		days = append(days, d)
	}
	cmds := make([]*redis.MapStringStringCmd, len(days))
	var total *redis.MapStringStringCmd
	if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, d := range days {
			cmds[i] = p.HGetAll(ctx, s.keys.KeyUsageDay(keyID, d))
		}
		total = p.HGetAll(ctx, s.keys.KeyUsageTotal(keyID))
		return nil
	}); err != nil {
		return KeySpend{}, fmt.Errorf("key %s spend: %w", keyID, err)
	}
	out := KeySpend{Today: map[string]Usage{}, Week: map[string]Usage{}, Month: map[string]Usage{}}
	for i, d := range days {
		byModel, err := modelUsage(cmds[i].Val())
		if err != nil {
			return KeySpend{}, fmt.Errorf("key %s spend: %w", keyID, err)
		}
		for m, u := range byModel {
			if !d.Before(week) {
				out.Week[m] = out.Week[m].Add(u)
			}
			if !d.Before(month) {
				out.Month[m] = out.Month[m].Add(u)
			}
			if d.Equal(today) {
				out.Today[m] = out.Today[m].Add(u)
			}
		}
	}
	for field, val := range total.Val() {
		v, err := parseCounter(field, val)
		if err != nil {
			return KeySpend{}, fmt.Errorf("key %s spend: %w", keyID, err)
		}
		out.Total.set(field, v)
	}
	return out, nil
}

// modelUsage parses a key's day hash ("<model>:<counter>" fields) into model → usage.
func modelUsage(h map[string]string) (map[string]Usage, error) {
	var out map[string]Usage
	for field, val := range h {
		i := strings.LastIndexByte(field, ':')
		if i < 0 {
			continue
		}
		model, counter := field[:i], field[i+1:]
		v, err := parseCounter(field, val)
		if err != nil {
			return nil, err
		}
		if out == nil {
			out = map[string]Usage{}
		}
		u := out[model]
		if u.set(counter, v) {
			out[model] = u
		}
	}
	return out, nil
}
