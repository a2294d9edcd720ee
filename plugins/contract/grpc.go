package contract

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ServeAuth serves impl as an auth provider plugin until the host stops it. It logs JSON
// hclog to stderr (never stdout, which belongs to the handshake).
func ServeAuth(name string, impl Auth) {
	serve(name, map[string]plugin.Plugin{AuthPluginName: &AuthPlugin{Impl: impl}})
}

// ServeCrypto serves impl as a crypto provider plugin until the host stops it.
func ServeCrypto(name string, impl Crypto) {
	serve(name, map[string]plugin.Plugin{CryptoPluginName: &CryptoPlugin{Impl: impl}})
}

func serve(name string, plugins map[string]plugin.Plugin) {
	// The host decides when a plugin stops: a SIGTERM sent to the whole process group (a
	// service manager stopping the relay) must not take providers away while the relay
	// drains its streams. The host stops them when it is done, and the kernel kills them
	// if the host dies first.
	signal.Ignore(syscall.SIGTERM)
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: Handshake(),
		Plugins:         plugins,
		GRPCServer:      plugin.DefaultGRPCServer,
		Logger:          PluginLogger(name),
	})
}

// PluginLogger is the logger a plugin process uses: JSON lines on stderr, which the host
// re-logs under the plugin's name.
func PluginLogger(name string) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: name, Level: hclog.Debug, JSONFormat: true, Output: os.Stderr})
}

// AuthPlugin is the go-plugin glue of the Auth contract. Impl is set on the plugin side only.
type AuthPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl Auth
}

// GRPCServer registers Impl on the plugin's gRPC server.
func (p *AuthPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	if p.Impl == nil {
		return errors.New("auth plugin: no implementation to serve")
	}
	RegisterAuthServer(s, &authGRPCServer{impl: p.Impl})
	return nil
}

// GRPCClient returns an Auth that calls the plugin over c.
func (p *AuthPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return &authGRPCClient{c: NewAuthClient(c)}, nil
}

// CryptoPlugin is the go-plugin glue of the Crypto contract. Impl is set on the plugin side only.
type CryptoPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl Crypto
}

// GRPCServer registers Impl on the plugin's gRPC server.
func (p *CryptoPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	if p.Impl == nil {
		return errors.New("crypto plugin: no implementation to serve")
	}
	RegisterCryptoServer(s, &cryptoGRPCServer{impl: p.Impl})
	return nil
}

// GRPCClient returns a Crypto that calls the plugin over c.
func (p *CryptoPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return &cryptoGRPCClient{c: NewCryptoClient(c)}, nil
}

// toStatus turns a provider error into a gRPC status the client maps back. A backend
// failure must not read as Unavailable: that code means "the process is gone" to the host.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	code := codes.Internal
	switch {
	case errors.Is(err, ErrRejected):
		code = codes.InvalidArgument
	case errors.Is(err, ErrNotConfigured):
		code = codes.FailedPrecondition
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	}
	return status.Error(code, err.Error())
}

// fromStatus maps a gRPC error from the plugin back to the contract's errors.
func fromStatus(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	switch st.Code() {
	case codes.Unavailable:
		return fmt.Errorf("%w: %s", ErrUnavailable, st.Message())
	case codes.InvalidArgument:
		return fmt.Errorf("%w: %s", ErrRejected, st.Message())
	case codes.FailedPrecondition:
		return fmt.Errorf("%w: %s", ErrNotConfigured, st.Message())
	case codes.Canceled:
		return fmt.Errorf("%s: %w", st.Message(), context.Canceled)
	case codes.DeadlineExceeded:
		return fmt.Errorf("%s: %w", st.Message(), context.DeadlineExceeded)
	}
	return errors.New(st.Message())
}

type authGRPCServer struct {
	UnimplementedAuthServer
	impl Auth
}

func (s *authGRPCServer) Configure(ctx context.Context, req *ConfigureRequest) (*ConfigureResponse, error) {
	return &ConfigureResponse{}, toStatus(s.impl.Configure(ctx, req.GetSettings()))
}

func (s *authGRPCServer) Info(ctx context.Context, _ *InfoRequest) (*InfoResponse, error) {
	info, err := s.impl.Info(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	return &InfoResponse{Name: info.Name, Version: info.Version}, nil
}

func (s *authGRPCServer) Authenticate(ctx context.Context, req *AuthenticateRequest) (*AuthenticateResponse, error) {
	res, err := s.impl.Authenticate(ctx, AuthRequest{
		Credential: req.GetCredential(),
		ClientIP:   req.GetClientIp(),
		Route:      req.GetRoute(),
		Headers:    req.GetHeaders(),
	})
	if err != nil {
		return nil, toStatus(err)
	}
	out := &AuthenticateResponse{Refusal: res.Refusal, CacheTtlMs: res.CacheTTL.Milliseconds()}
	if res.Accepted() {
		p := res.Principal
		out.Principal = &PrincipalInfo{KeyId: p.KeyID, Name: p.Name, Policy: p.Policy, Overrides: p.Overrides, Bindings: p.Bindings, Attributes: p.Attributes}
	}
	return out, nil
}

type authGRPCClient struct{ c AuthClient }

func (c *authGRPCClient) Configure(ctx context.Context, settings map[string]string) error {
	_, err := c.c.Configure(ctx, &ConfigureRequest{Settings: settings})
	return fromStatus(err)
}

func (c *authGRPCClient) Info(ctx context.Context) (Info, error) {
	r, err := c.c.Info(ctx, &InfoRequest{})
	if err != nil {
		return Info{}, fromStatus(err)
	}
	return Info{Name: r.GetName(), Version: r.GetVersion()}, nil
}

func (c *authGRPCClient) Authenticate(ctx context.Context, req AuthRequest) (AuthResult, error) {
	r, err := c.c.Authenticate(ctx, &AuthenticateRequest{
		Credential: req.Credential,
		ClientIp:   req.ClientIP,
		Route:      req.Route,
		Headers:    req.Headers,
	})
	if err != nil {
		return AuthResult{}, fromStatus(err)
	}
	res := AuthResult{Refusal: r.GetRefusal(), CacheTTL: time.Duration(r.GetCacheTtlMs()) * time.Millisecond}
	if res.Refusal == "" {
		p := r.GetPrincipal()
		if p == nil {
			return AuthResult{}, errors.New("auth provider answered neither a principal nor a refusal")
		}
		res.Principal = Principal{KeyID: p.GetKeyId(), Name: p.GetName(), Policy: p.GetPolicy(), Overrides: p.GetOverrides(), Bindings: p.GetBindings(), Attributes: p.GetAttributes()}
	}
	return res, nil
}

type cryptoGRPCServer struct {
	UnimplementedCryptoServer
	impl Crypto
}

func (s *cryptoGRPCServer) Configure(ctx context.Context, req *ConfigureRequest) (*ConfigureResponse, error) {
	return &ConfigureResponse{}, toStatus(s.impl.Configure(ctx, req.GetSettings()))
}

func (s *cryptoGRPCServer) Info(ctx context.Context, _ *InfoRequest) (*InfoResponse, error) {
	info, err := s.impl.Info(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	return &InfoResponse{Name: info.Name, Version: info.Version}, nil
}

func (s *cryptoGRPCServer) Encrypt(ctx context.Context, req *EncryptRequest) (*EncryptResponse, error) {
	env, err := s.impl.Encrypt(ctx, req.GetPlaintext(), req.GetContext())
	if err != nil {
		return nil, toStatus(err)
	}
	return &EncryptResponse{Envelope: env}, nil
}

func (s *cryptoGRPCServer) Decrypt(ctx context.Context, req *DecryptRequest) (*DecryptResponse, error) {
	plain, err := s.impl.Decrypt(ctx, req.GetEnvelope(), req.GetContext())
	if err != nil {
		return nil, toStatus(err)
	}
	return &DecryptResponse{Plaintext: plain}, nil
}

func (s *cryptoGRPCServer) Rewrap(ctx context.Context, req *RewrapRequest) (*RewrapResponse, error) {
	env, changed, err := s.impl.Rewrap(ctx, req.GetEnvelope(), req.GetContext())
	if err != nil {
		return nil, toStatus(err)
	}
	return &RewrapResponse{Envelope: env, Changed: changed}, nil
}

func (s *cryptoGRPCServer) KeyInfo(ctx context.Context, _ *KeyInfoRequest) (*KeyInfoResponse, error) {
	ki, err := s.impl.KeyInfo(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	return &KeyInfoResponse{PrimaryKeyId: ki.PrimaryKeyID, KeyIds: ki.KeyIDs}, nil
}

type cryptoGRPCClient struct{ c CryptoClient }

func (c *cryptoGRPCClient) Configure(ctx context.Context, settings map[string]string) error {
	_, err := c.c.Configure(ctx, &ConfigureRequest{Settings: settings})
	return fromStatus(err)
}

func (c *cryptoGRPCClient) Info(ctx context.Context) (Info, error) {
	r, err := c.c.Info(ctx, &InfoRequest{})
	if err != nil {
		return Info{}, fromStatus(err)
	}
	return Info{Name: r.GetName(), Version: r.GetVersion()}, nil
}

func (c *cryptoGRPCClient) Encrypt(ctx context.Context, plaintext, aad []byte) ([]byte, error) {
	r, err := c.c.Encrypt(ctx, &EncryptRequest{Plaintext: plaintext, Context: aad})
	if err != nil {
		return nil, fromStatus(err)
	}
	return r.GetEnvelope(), nil
}

func (c *cryptoGRPCClient) Decrypt(ctx context.Context, envelope, aad []byte) ([]byte, error) {
	r, err := c.c.Decrypt(ctx, &DecryptRequest{Envelope: envelope, Context: aad})
	if err != nil {
		return nil, fromStatus(err)
	}
	return r.GetPlaintext(), nil
}

func (c *cryptoGRPCClient) Rewrap(ctx context.Context, envelope, aad []byte) ([]byte, bool, error) {
	r, err := c.c.Rewrap(ctx, &RewrapRequest{Envelope: envelope, Context: aad})
	if err != nil {
		return nil, false, fromStatus(err)
	}
	return r.GetEnvelope(), r.GetChanged(), nil
}

func (c *cryptoGRPCClient) KeyInfo(ctx context.Context) (KeyInfo, error) {
	r, err := c.c.KeyInfo(ctx, &KeyInfoRequest{})
	if err != nil {
		return KeyInfo{}, fromStatus(err)
	}
	return KeyInfo{PrimaryKeyID: r.GetPrimaryKeyId(), KeyIDs: r.GetKeyIds()}, nil
}

// Interface guards.
var (
	_ plugin.GRPCPlugin = (*AuthPlugin)(nil)
	_ plugin.GRPCPlugin = (*CryptoPlugin)(nil)
	_ Auth              = (*authGRPCClient)(nil)
	_ Crypto            = (*cryptoGRPCClient)(nil)
)
