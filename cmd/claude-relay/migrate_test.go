package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/claude-relay/claude-relay/internal/testredis"
	"github.com/claude-relay/claude-relay/plugins/crypto-aesgcm/aesgcm"
	"github.com/claude-relay/claude-relay/store"
)

func TestImportAndExportHelpNameTheirFlags(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct {
		args []string
		want []string
	}{
		{[]string{"import", "crs", "-h"}, []string{"--from", "--crs-encryption-key-file", "--dry-run", "crs-timezone-offset"}},
		{[]string{"import", "crs", "--help"}, []string{"--from", "--crs-encryption-key-file", "--dry-run"}},
		{[]string{"import", "backup", "-h"}, []string{"--from", "age-identity-file", "passphrase-file", "dry-run"}},
		{[]string{"export", "--help"}, []string{"--to", "--age-recipient", "--passphrase-file"}},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(ctx, tt.args, &stdout, &stderr); code != 0 {
			t.Errorf("%v: exit %d", tt.args, code)
		}
		for _, w := range tt.want {
			if !strings.Contains(stdout.String()+stderr.String(), w) {
				t.Errorf("%v does not list %s:\n%s", tt.args, w, stdout.String()+stderr.String())
			}
		}
	}
	var stdout, stderr bytes.Buffer
	if code := run(ctx, []string{"import", "crs", "--dry-run"}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "--from and --crs-encryption-key-file are required") {
		t.Errorf("import crs without --from: exit %d, %q", code, stderr.String())
	}
}

func TestExportThenImportBackupMovesAnInstallationToAnotherHost(t *testing.T) {
	ctx := context.Background()
	const encKey = "0123456789abcdef0123456789abcdef"
	hosts := [2]*testredis.Server{testredis.StartServer(t), testredis.StartServer(t)}
	useHost := func(i int) {
		host, port, _ := net.SplitHostPort(hosts[i].Addr())
		t.Setenv("REDIS_HOST", host)
		t.Setenv("REDIS_PORT", port)
	}
	t.Setenv("CRS_SECURITY__ENCRYPTION_KEY", encKey)
	t.Setenv("CLAUDE_RELAY_PLUGIN_DIR", "")
	sealer, _ := aesgcm.New(encKey)
	open := func(i int) *store.Store {
		rdb := redis.NewClient(&redis.Options{Addr: hosts[i].Addr()})
		t.Cleanup(func() { rdb.Close() })
		st, err := store.Open(ctx, rdb, store.Options{Sealer: sealer})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	src := open(0)
	_, secret, err := src.CreateKey(ctx, store.KeySpec{Name: "moves"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.AddAccount(ctx, store.AccountSpec{Name: "acct", Credential: "sk-ant-api03-moving-0123456789abcdef"}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	file, passFile := filepath.Join(dir, "relay.backup"), filepath.Join(dir, "pass")
	os.WriteFile(passFile, []byte("a long passphrase\n"), 0o600)

	useHost(0)
	var out, errOut bytes.Buffer
	if code := run(ctx, []string{"export", "--to", file, "--passphrase-file", passFile}, &out, &errOut); code != 0 {
		t.Fatalf("export: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	if st, err := os.Stat(file); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("backup file: %v, mode %v; want 0600", err, st.Mode().Perm())
	}
	useHost(1)
	out.Reset()
	if code := run(ctx, []string{"import", "backup", "--from", file, "--passphrase-file", passFile}, &out, &errOut); code != 0 {
		t.Fatalf("import backup: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	if !strings.Contains(out.String(), "restored 1 keys, 1 accounts") {
		t.Errorf("import output:\n%s", out.String())
	}
	if _, err := open(1).LookupKey(ctx, secret); err != nil {
		t.Errorf("the key on the new host: %v", err)
	}
	os.WriteFile(passFile, []byte("the wrong passphrase"), 0o600)
	if code := run(ctx, []string{"import", "backup", "--from", file, "--passphrase-file", passFile}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "wrong passphrase") {
		t.Errorf("wrong passphrase: exit %d, %q", code, errOut.String())
	}
}
