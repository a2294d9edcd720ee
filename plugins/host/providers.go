package host

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"

	"github.com/claude-relay/claude-relay/plugins/contract"
)

// Auth is an auth provider running as a plugin process. It implements contract.Auth; calls
// wait for a healthy instance (up to Config.RestartWait) and fail with
// contract.ErrUnavailable when there is none, so callers can fail closed.
type Auth struct{ *Plugin[contract.Auth] }

// StartAuth starts the auth plugin at cfg.Path and returns once it is healthy and has passed
// its self-test (a random well-formed relay key must be refused, not fail).
func StartAuth(ctx context.Context, cfg Config) (*Auth, error) {
	p, err := start(ctx, cfg, contract.AuthPluginName, authSelfTest)
	if err != nil {
		return nil, err
	}
	return &Auth{p}, nil
}

func authSelfTest(ctx context.Context, a contract.Auth) error {
	probe := make([]byte, 32)
	if _, err := rand.Read(probe); err != nil {
		return fmt.Errorf("generate probe: %w", err)
	}
	res, err := a.Authenticate(ctx, contract.AuthRequest{Credential: "cr_" + hex.EncodeToString(probe), ClientIP: "127.0.0.1", Route: "self-test"})
	if err != nil {
		return fmt.Errorf("authenticate a random key: %w", err)
	}
	if res.Accepted() {
		return errors.New("a random relay key was accepted")
	}
	return nil
}

// Authenticate implements contract.Auth.
func (a *Auth) Authenticate(ctx context.Context, req contract.AuthRequest) (res contract.AuthResult, err error) {
	err = a.call(ctx, func(c contract.Auth) (e error) {
		res, e = c.Authenticate(ctx, req)
		return e
	})
	return res, err
}

// Configure implements contract.Auth: the settings are kept for every later start and sent
// to the running instance.
func (a *Auth) Configure(ctx context.Context, settings map[string]string) error {
	return a.configure(ctx, settings, func(c contract.Auth) error { return c.Configure(ctx, settings) })
}

// Info implements contract.Auth.
func (a *Auth) Info(ctx context.Context) (info contract.Info, err error) {
	err = a.call(ctx, func(c contract.Auth) (e error) {
		info, e = c.Info(ctx)
		return e
	})
	return info, err
}

// Crypto is a crypto provider running as a plugin process. It implements contract.Crypto.
type Crypto struct{ *Plugin[contract.Crypto] }

// StartCrypto starts the crypto plugin at cfg.Path and returns once it is healthy and has
// passed its self-test (an encrypt/decrypt round trip).
func StartCrypto(ctx context.Context, cfg Config) (*Crypto, error) {
	p, err := start(ctx, cfg, contract.CryptoPluginName, cryptoSelfTest)
	if err != nil {
		return nil, err
	}
	return &Crypto{p}, nil
}

func cryptoSelfTest(ctx context.Context, c contract.Crypto) error {
	plain := make([]byte, 32)
	if _, err := rand.Read(plain); err != nil {
		return fmt.Errorf("generate probe: %w", err)
	}
	aad := []byte("claude-relay plugin self-test")
	env, err := c.Encrypt(ctx, plain, aad)
	if err != nil {
		return fmt.Errorf("encrypt: %w", err)
	}
	back, err := c.Decrypt(ctx, env, aad)
	if err != nil {
		return fmt.Errorf("decrypt: %w", err)
	}
	if !bytes.Equal(back, plain) {
		return errors.New("decrypt did not return what was encrypted")
	}
	if _, err := c.Decrypt(ctx, env, []byte("another record")); err == nil {
		return errors.New("an envelope opened with the wrong context")
	}
	ki, err := c.KeyInfo(ctx)
	if err != nil {
		return fmt.Errorf("key info: %w", err)
	}
	if ki.PrimaryKeyID == "" {
		return errors.New("no primary key id")
	}
	return nil
}

// Configure implements contract.Crypto.
func (c *Crypto) Configure(ctx context.Context, settings map[string]string) error {
	return c.configure(ctx, settings, func(p contract.Crypto) error { return p.Configure(ctx, settings) })
}

// Info implements contract.Crypto.
func (c *Crypto) Info(ctx context.Context) (info contract.Info, err error) {
	err = c.call(ctx, func(p contract.Crypto) (e error) {
		info, e = p.Info(ctx)
		return e
	})
	return info, err
}

// Encrypt implements contract.Crypto.
func (c *Crypto) Encrypt(ctx context.Context, plaintext, aad []byte) (out []byte, err error) {
	err = c.call(ctx, func(p contract.Crypto) (e error) {
		out, e = p.Encrypt(ctx, plaintext, aad)
		return e
	})
	return out, err
}

// Decrypt implements contract.Crypto.
func (c *Crypto) Decrypt(ctx context.Context, envelope, aad []byte) (out []byte, err error) {
	err = c.call(ctx, func(p contract.Crypto) (e error) {
		out, e = p.Decrypt(ctx, envelope, aad)
		return e
	})
	return out, err
}

// Rewrap implements contract.Crypto.
func (c *Crypto) Rewrap(ctx context.Context, envelope, aad []byte) (out []byte, changed bool, err error) {
	err = c.call(ctx, func(p contract.Crypto) (e error) {
		out, changed, e = p.Rewrap(ctx, envelope, aad)
		return e
	})
	return out, changed, err
}

// KeyInfo implements contract.Crypto.
func (c *Crypto) KeyInfo(ctx context.Context) (ki contract.KeyInfo, err error) {
	err = c.call(ctx, func(p contract.Crypto) (e error) {
		ki, e = p.KeyInfo(ctx)
		return e
	})
	return ki, err
}

// configure stores settings for later starts and applies them to the running instance.
func (p *Plugin[T]) configure(ctx context.Context, settings map[string]string, apply func(T) error) error {
	p.mu.Lock()
	p.settings = maps.Clone(settings)
	p.mu.Unlock()
	return p.call(ctx, apply)
}

// Interface guards.
var (
	_ contract.Auth   = (*Auth)(nil)
	_ contract.Crypto = (*Crypto)(nil)
)
