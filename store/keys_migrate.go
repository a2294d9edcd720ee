package store

import (
	"context"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// BackfillKeyIndexes adds keys created before the listing indexes existed (records without an
// "ord" field) to KeysLive or KeysDeleted and to their tag and policy indexes. It walks the
// creation-time index, never KEYS or SCAN; with nothing to do it costs one ZRANGE and one
// pipeline of HEXISTS. It returns how many keys it indexed.
func (s *Store) BackfillKeyIndexes(ctx context.Context) (int, error) {
	ids, err := s.rdb.ZRange(ctx, s.keys.KeysByCreation(), 0, -1).Result()
	if err != nil || len(ids) == 0 {
		return 0, wrapErr("backfill key indexes", err)
	}
	has := make([]*redis.BoolCmd, len(ids))
	if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			has[i] = p.HExists(ctx, s.keys.KeyRecord(id), "ord")
		}
		return nil
	}); err != nil {
		return 0, wrapErr("backfill key indexes", err)
	}
	var missing []string
	for i, c := range has {
		if !c.Val() {
			missing = append(missing, ids[i])
		}
	}
	keys, err := s.getKeys(ctx, missing)
	if err != nil {
		return 0, wrapErr("backfill key indexes", err)
	}
	for i, k := range keys {
		ord := orderMember(k.CreatedAt, k.ID)
		z := redis.Z{Member: ord}
		target := s.keys.KeysLive()
		if k.DeletedAt != nil {
			target = s.keys.KeysDeleted()
		}
		_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.ZAdd(ctx, target, z)
			for _, t := range k.Tags {
				p.ZAdd(ctx, s.keys.KeysByTag(t), z)
			}
			if k.Policy != "" && ValidIndexName(k.Policy) {
				p.ZAdd(ctx, s.keys.KeysByPolicy(k.Policy), z)
			}
			p.HSet(ctx, s.keys.KeyRecord(k.ID), "ord", ord, "tags", strings.Join(k.Tags, ","))
			return nil
		})
		if err != nil {
			return i, fmt.Errorf("backfill key %s: %w", k.ID, err)
		}
	}
	return len(keys), nil
}

// wrapErr wraps err with what, or returns nil.
func wrapErr(what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}
