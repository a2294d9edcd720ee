package adminclient

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/claude-relay/claude-relay/internal/atomicfile"
)

// Session is what `claude-relay admin login` remembers: where the control plane is and the
// session token to send it.
type Session struct {
	Addr  string `json:"addr"`
	Token string `json:"token"`
}

// DefaultSessionPath is where the CLI keeps its session: claude-relay/admin.json under the
// user's configuration directory (e.g. ~/.config on Linux).
func DefaultSessionPath() (string, error) {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("find the user config directory: %w", err)
	}
	return filepath.Join(dir, "claude-relay", "admin.json"), nil
}

// SaveSession writes {addr, token} to path with mode 0600 (its directory 0700), atomically:
// a reader sees the old file or the new one, never a partial one.
func SaveSession(path, addr, token string) error {
	data, err := json.MarshalIndent(Session{Addr: addr, Token: token}, "", "  ")
	if err != nil {
		return fmt.Errorf("save session: %w", err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("save session: %w", err)
	}
	if err := atomicfile.WriteFile(path, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("save session: %w", err)
	}
	return nil
}

// LoadSession reads a session saved by SaveSession. A missing file yields an error that
// matches fs.ErrNotExist.
func LoadSession(path string) (Session, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Session{}, fmt.Errorf("load session: %w", err)
	}
	var s Session
	if err := json.Unmarshal(data, &s); err != nil {
		return Session{}, fmt.Errorf("load session %s: %w", path, err)
	}
	return s, nil
}

// RemoveSession deletes a saved session; a missing file is not an error.
func RemoveSession(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove session: %w", err)
	}
	return nil
}
