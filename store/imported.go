package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// ImportedAccount returns the id of the account imported from source ("" if none was).
func (s *Store) ImportedAccount(ctx context.Context, source string) (string, error) {
	id, err := s.rdb.HGet(ctx, s.keys.ImportedAccounts(), source).Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("imported account %s: %w", source, err)
	}
	return id, nil
}

// MarkImportedAccount records that source was imported as account id.
func (s *Store) MarkImportedAccount(ctx context.Context, source, id string) error {
	if err := s.rdb.HSet(ctx, s.keys.ImportedAccounts(), source, id).Err(); err != nil {
		return fmt.Errorf("mark account %s imported from %s: %w", id, source, err)
	}
	return nil
}

// ImportedKeyIDs returns source → key id of every imported key.
func (s *Store) ImportedKeyIDs(ctx context.Context) (map[string]string, error) {
	m, err := s.rdb.HGetAll(ctx, s.keys.ImportedKeys()).Result()
	if err != nil {
		return nil, fmt.Errorf("imported keys: %w", err)
	}
	return m, nil
}

// ImportedAccountIDs returns source → account id of every imported account.
func (s *Store) ImportedAccountIDs(ctx context.Context) (map[string]string, error) {
	m, err := s.rdb.HGetAll(ctx, s.keys.ImportedAccounts()).Result()
	if err != nil {
		return nil, fmt.Errorf("imported accounts: %w", err)
	}
	return m, nil
}
