package logging

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/claude-relay/claude-relay/internal/testutil"
)

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return string(b)
}

func TestDaySwitchWritesToNewFileWithoutRestart(t *testing.T) {
	dir := t.TempDir()
	clock := testutil.NewClock(time.Date(2025, 11, 25, 23, 59, 59, 0, time.UTC))
	var stderr bytes.Buffer
	log, files, err := New(Options{Name: "test", Dir: dir, Stderr: &stderr, Now: clock.Now})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer files.Close()

	log.Info("before midnight")
	clock.Set(time.Date(2025, 11, 26, 0, 0, 1, 0, time.UTC))
	log.Info("after midnight")
	if err := files.Flush(); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		file, want, notWant string
	}{
		{"claude-relay-2025-11-25.log", "before midnight", "after midnight"},
		{"claude-relay-2025-11-26.log", "after midnight", "before midnight"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got := readFile(t, filepath.Join(dir, tt.file))
			if !strings.Contains(got, tt.want) || strings.Contains(got, tt.notWant) {
				t.Errorf("got %q, want only %q", got, tt.want)
			}
		})
	}
	if got, want := files.Path(), filepath.Join(dir, "claude-relay-2025-11-26.log"); got != want {
		t.Errorf("got path %q, want %q", got, want)
	}
	if got := stderr.String(); !strings.Contains(got, "before midnight") || !strings.Contains(got, "after midnight") {
		t.Errorf("got stderr %q, want both lines", got)
	}
}

func TestDaySwitchFollowsUTCNotLocalTime(t *testing.T) {
	dir := t.TempDir()
	// 23:30 in UTC-5 is already 04:30 UTC the next day.
	clock := testutil.NewClock(time.Date(2025, 11, 25, 23, 30, 0, 0, time.FixedZone("EST", -5*3600)))
	log, files, err := New(Options{Dir: dir, Stderr: &bytes.Buffer{}, Now: clock.Now})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer files.Close()
	log.Info("late evening")
	if got, want := filepath.Base(files.Path()), "claude-relay-2025-11-26.log"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestRetentionDeletesOnlyExpiredLogFiles(t *testing.T) {
	dir := t.TempDir()
	existing := []string{
		"claude-relay-2025-09-01.log", // expired
		"claude-relay-2025-10-25.log", // expired: 31 days before 11-25
		"claude-relay-2025-10-26.log", // kept: exactly 30 days
		"claude-relay-2025-11-24.log", // kept
		"claude-relay-2025-09-01.log.gz",
		"claude-relay-2025-9-1.log",
		"other-2025-09-01.log",
		"claude-relay-2025-13-01.log",
		"notes.txt",
	}
	for _, name := range existing {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x\n"), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "claude-relay-2020-01-01.log"), 0o750); err != nil {
		t.Fatal(err)
	}
	clock := testutil.NewClock(time.Date(2025, 11, 25, 12, 0, 0, 0, time.UTC))
	log, files, err := New(Options{Dir: dir, RetentionDays: 30, Stderr: &bytes.Buffer{}, Now: clock.Now})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer files.Close()

	want := []string{
		"claude-relay-2020-01-01.log", // a directory: never touched
		"claude-relay-2025-09-01.log.gz",
		"claude-relay-2025-10-26.log",
		"claude-relay-2025-11-24.log",
		"claude-relay-2025-11-25.log",
		"claude-relay-2025-13-01.log",
		"claude-relay-2025-9-1.log",
		"notes.txt",
		"other-2025-09-01.log",
	}
	if got := listDir(t, dir); !slices.Equal(got, want) {
		t.Errorf("after start: got %v, want %v", got, want)
	}

	t.Run("sweeps again at day switch", func(t *testing.T) {
		clock.Set(time.Date(2025, 11, 26, 0, 0, 0, 0, time.UTC))
		log.Info("next day")
		got := listDir(t, dir)
		if slices.Contains(got, "claude-relay-2025-10-26.log") {
			t.Errorf("got %v, want claude-relay-2025-10-26.log expired", got)
		}
		if !slices.Contains(got, "claude-relay-2025-11-26.log") {
			t.Errorf("got %v, want today's file", got)
		}
	})
}

func TestNegativeRetentionKeepsEveryFile(t *testing.T) {
	dir := t.TempDir()
	old := filepath.Join(dir, "claude-relay-2001-01-01.log")
	if err := os.WriteFile(old, nil, 0o640); err != nil {
		t.Fatal(err)
	}
	_, files, err := New(Options{Dir: dir, RetentionDays: -1, Stderr: &bytes.Buffer{}})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer files.Close()
	if _, err := os.Stat(old); err != nil {
		t.Errorf("got %v, want the old file kept", err)
	}
}

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestParseLevel(t *testing.T) {
	tests := []struct {
		in      string
		want    hclog.Level
		wantErr bool
	}{
		{"", hclog.Info, false},
		{"trace", hclog.Trace, false},
		{"debug", hclog.Debug, false},
		{"info", hclog.Info, false},
		{"warn", hclog.Warn, false},
		{"WARNING", hclog.Warn, false},
		{" Error ", hclog.Error, false},
		{"off", hclog.Off, false},
		{"info,claude_relay=debug", hclog.Info, false},
		{"claude_relay=debug,hyper=warn", hclog.Debug, false},
		{"debug/foo", hclog.Debug, false},
		{"verbose", hclog.NoLevel, true},
		{"claude_relay=loud", hclog.NoLevel, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseLevel(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("got error %v, want error %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestLevelFromEnvPrefersLogLevel(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"log level wins", map[string]string{"LOG_LEVEL": "warn", "RUST_LOG": "debug"}, "warn"},
		{"rust log fallback", map[string]string{"RUST_LOG": "debug"}, "debug"},
		{"neither", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := LevelFromEnv(func(k string) string { return tt.env[k] }); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestLevelFiltersOutput(t *testing.T) {
	var stderr bytes.Buffer
	log, _, err := New(Options{Level: "warn", Stderr: &stderr})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	log.Info("quiet")
	log.Warn("loud")
	if got := stderr.String(); strings.Contains(got, "quiet") || !strings.Contains(got, "loud") {
		t.Errorf("got %q, want only the warning", got)
	}
}

func TestNewRejectsUnknownLevel(t *testing.T) {
	if _, _, err := New(Options{Level: "chatty", Stderr: &bytes.Buffer{}}); err == nil {
		t.Errorf("got nil error, want an unknown level error")
	}
}

func TestSecretsLoggedAsValuesNeverReachOutput(t *testing.T) {
	for _, jsonFormat := range []bool{false, true} {
		name := "text"
		if jsonFormat {
			name = "json"
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			var stderr bytes.Buffer
			log, files, err := New(Options{Name: "sidecar", Dir: dir, JSON: jsonFormat, Stderr: &stderr})
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			log.Named("auth").Warn("key rejected", "key", relayKey, "upstream", antKey,
				"headers", map[string]string{"Authorization": "Bearer " + jwt}, "password", "hunter2 with spaces")
			if err := files.Close(); err != nil {
				t.Fatal(err)
			}
			for _, out := range []struct{ where, text string }{
				{"stderr", stderr.String()},
				{"file", readFile(t, files.Path())},
			} {
				for _, secret := range []string{relayKey, antKey, jwt, "hunter2"} {
					if strings.Contains(out.text, secret) {
						t.Errorf("%s: got %q, want no %q", out.where, out.text, secret)
					}
				}
				if !strings.Contains(out.text, "cr_ab12…ef90") || !strings.Contains(out.text, "key rejected") {
					t.Errorf("%s: got %q, want the message and the key hint", out.where, out.text)
				}
			}
			if jsonFormat {
				var m map[string]any
				if err := json.Unmarshal(bytes.TrimSpace(stderr.Bytes()), &m); err != nil {
					t.Errorf("got invalid JSON after redaction: %v: %s", err, stderr.String())
				}
			}
		})
	}
}

func TestNewFailsNamingUnusableDir(t *testing.T) {
	parent := t.TempDir()
	blocker := filepath.Join(parent, "not-a-dir")
	if err := os.WriteFile(blocker, nil, 0o640); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(blocker, "logs")
	_, _, err := New(Options{Dir: dir, Stderr: &bytes.Buffer{}})
	if err == nil {
		t.Fatalf("got nil error, want one for %s", dir)
	}
	if !strings.Contains(err.Error(), dir) {
		t.Errorf("got %q, want it to name %q", err, dir)
	}
}

func TestCheckFailsWhenDirUnwritable(t *testing.T) {
	tests := []struct {
		name     string
		root     bool // case meaningful for root (which ignores permissions)
		breakDir func(t *testing.T, dir string)
	}{
		{"read-only dir", false, func(t *testing.T, dir string) {
			if err := os.Chmod(dir, 0o500); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = os.Chmod(dir, 0o750) })
		}},
		{"removed dir", true, func(t *testing.T, dir string) {
			if err := os.RemoveAll(dir); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !tt.root && os.Geteuid() == 0 {
				t.Skip("root ignores directory permissions")
			}
			dir := filepath.Join(t.TempDir(), "logs")
			_, files, err := New(Options{Dir: dir, Stderr: &bytes.Buffer{}})
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			defer files.Close()
			if err := files.Check(); err != nil {
				t.Fatalf("healthy dir: got %v, want nil", err)
			}
			tt.breakDir(t, dir)
			if err := files.Check(); err == nil {
				t.Errorf("got nil, want an error")
			}
		})
	}
}

func TestCheckReopensRemovedFile(t *testing.T) {
	dir := t.TempDir()
	log, files, err := New(Options{Dir: dir, Stderr: &bytes.Buffer{}})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer files.Close()
	if err := os.Remove(files.Path()); err != nil {
		t.Fatal(err)
	}
	if err := files.Check(); err != nil {
		t.Fatalf("got %v, want the file reopened", err)
	}
	log.Info("after reopen")
	if err := files.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, files.Path()); !strings.Contains(got, "after reopen") {
		t.Errorf("got %q, want the new line", got)
	}
}

func TestWriteAfterCloseFails(t *testing.T) {
	_, files, err := New(Options{Dir: t.TempDir(), Stderr: &bytes.Buffer{}})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := files.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := files.Write([]byte("x\n")); err == nil {
		t.Errorf("got nil error, want one after Close")
	}
	if err := files.Check(); err == nil {
		t.Errorf("got nil Check error, want one after Close")
	}
}

func TestConcurrentWritesKeepLinesWhole(t *testing.T) {
	dir := t.TempDir()
	log, files, err := New(Options{Dir: dir, Stderr: &bytes.Buffer{}})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	const goroutines, perG = 8, 200
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sub := log.Named("worker")
			for i := range perG {
				sub.Info("tick", "g", g, "i", i)
			}
		}()
	}
	wg.Wait()
	if err := files.Close(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(readFile(t, files.Path())), "\n")
	if len(lines) != goroutines*perG {
		t.Fatalf("got %d lines, want %d", len(lines), goroutines*perG)
	}
	for _, l := range lines {
		if !strings.Contains(l, "[INFO]  worker: tick: g=") {
			t.Fatalf("got mangled line %q", l)
		}
	}
}

func TestFileLinesReachDiskWithinTheFlushIntervalAndOnClose(t *testing.T) {
	dir := t.TempDir()
	log, files, err := New(Options{Dir: dir, Stderr: &bytes.Buffer{}})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	path := files.Path()
	log.Info("first line")
	deadline := time.Now().Add(flushInterval + time.Second)
	for !strings.Contains(readFile(t, path), "first line") {
		if time.Now().After(deadline) {
			t.Fatalf("the line is not on disk %s after it was logged", flushInterval+time.Second)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// A full buffer is written at once, without waiting for the timer.
	big := strings.Repeat("x", fileBufferSize)
	log.Info("big line", "payload", big)
	if got := readFile(t, path); !strings.Contains(got, big) {
		t.Error("a line longer than the buffer was not written at once")
	}
	log.Info("last line before shutdown")
	if err := files.Close(); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, path); !strings.Contains(got, "last line before shutdown") {
		t.Errorf("after Close: got %d bytes without the last line, want it flushed", len(got))
	}
}
