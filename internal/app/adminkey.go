package app

import (
	"crypto/ed25519"
	"fmt"
	"io"

	"github.com/claude-relay/claude-relay/config"
	"github.com/claude-relay/claude-relay/controlplane"
)

// adminSigningKey loads the control plane's admin session signing key from the data dir,
// generating it at the first start. Sidecars never read it.
func (b *Base) adminSigningKey(dataDir string) (ed25519.PrivateKey, error) {
	path, err := dataPath(dataDir, controlplane.SigningKeyFile)
	if err != nil {
		return nil, err
	}
	key, created, err := controlplane.LoadOrCreateSigningKey(path)
	if err != nil {
		return nil, err
	}
	kid := controlplane.KeyID(key.Public().(ed25519.PublicKey))
	if created {
		b.Log.Info("generated the admin session signing key; every control plane serving this admin API needs a copy of the file", "path", path, "key_id", kid)
	} else {
		b.Log.Info("admin session signing key loaded", "path", path, "key_id", kid)
	}
	return key, nil
}

// adminBootstrap is the admin the control plane creates in a store without one (at the
// first start, and after Redis was emptied): ADMIN_USERNAME with ADMIN_PASSWORD, or a
// generated password printed once to out.
func adminBootstrap(env *config.Env, out io.Writer) controlplane.AdminBootstrap {
	return controlplane.AdminBootstrap{
		Username: env.AdminUsername,
		Password: env.AdminPassword,
		Announce: func(user, password string) {
			fmt.Fprintf(out, "Created admin %q with generated password (shown once): %s\n", user, password)
		},
	}
}
