package deploytest

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/claude-relay/claude-relay/config"
)

// logrotateRetention returns the days after which logrotate.conf deletes
// compressed files (find … -mtime +N -delete) and the log file glob.
func logrotateRetention(t *testing.T) (days int, glob string) {
	t.Helper()
	conf := readRepoFile(t, logrotatePath)
	m := regexp.MustCompile(`-mtime \+(\d+) -delete`).FindStringSubmatch(conf)
	if m == nil {
		t.Fatalf("%s: got no find … -mtime +N -delete, want the retention of compressed files", logrotatePath)
	}
	days, _ = strconv.Atoi(m[1])
	g := regexp.MustCompile(`(?m)^(/\S+)\s*\{`).FindStringSubmatch(conf)
	if g == nil {
		t.Fatalf("%s: got no log file pattern block", logrotatePath)
	}
	return days, g[1]
}

// TestLogRetentionIsTheSameEverywhere keeps the binary's LOG_RETENTION_DAYS
// (default, env example, compose) and logrotate's retention equal, and
// logrotate looking where the logs are written.
func TestLogRetentionIsTheSameEverywhere(t *testing.T) {
	days, glob := logrotateRetention(t)
	ex := parseEnvExample(t)
	want := strconv.Itoa(config.DefaultLogRetentionDays)
	if got := strconv.Itoa(days); got != want {
		t.Errorf("%s retention: got %s days, want %s (config.DefaultLogRetentionDays)", logrotatePath, got, want)
	}
	if got := ex.set[config.EnvLogRetentionDays]; got != want {
		t.Errorf("%s %s: got %q, want %s", envExamplePath, config.EnvLogRetentionDays, got, want)
	}
	c := parseCompose(t)
	for cmd, s := range relayServices(t, c) {
		if got := s.Environment[config.EnvLogRetentionDays]; got != want && got != "${"+config.EnvLogRetentionDays+":-"+want+"}" {
			t.Errorf("%s %s %s: got %q, want %s", composePath, cmd, config.EnvLogRetentionDays, got, want)
		}
	}
	logDir := ex.set[config.EnvLogDir]
	if filepath.Dir(glob) != logDir {
		t.Errorf("%s pattern %s: got directory %s, want LOG_DIR %s", logrotatePath, glob, filepath.Dir(glob), logDir)
	}
	name := "claude-relay-" + time.Now().UTC().Format(time.DateOnly) + ".log"
	if ok, err := filepath.Match(filepath.Base(glob), name); err != nil || !ok {
		t.Errorf("%s pattern %s: does not match the binary's daily file %s", logrotatePath, glob, name)
	}
}

// TestLogrotateCompressesOnlyPastDays runs logrotate on a copy of the
// configuration pointed at a temporary directory: the file of the current day
// stays as it is (the relay has it open), files of past days are compressed,
// and compressed files past the retention are deleted.
func TestLogrotateCompressesOnlyPastDays(t *testing.T) {
	logrotate, ok := lookTool("logrotate")
	if !ok {
		t.Skip("logrotate is not installed")
	}
	dir := t.TempDir()
	logs := filepath.Join(dir, "logs")
	if err := os.Mkdir(logs, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := readRepoFile(t, logrotatePath)
	const suLine = "su claude-relay claude-relay"
	if !strings.Contains(conf, suLine) {
		t.Fatalf("%s: got no %q, want rotation as the service user (its log directory is not root's)", logrotatePath, suLine)
	}
	repl := ""
	if os.Geteuid() == 0 {
		// As root, logrotate insists on su for a directory it does not own
		// alone; here the directory is root's, so rotate as root.
		u, err := user.Current()
		if err != nil {
			t.Fatal(err)
		}
		g, err := user.LookupGroupId(u.Gid)
		if err != nil {
			t.Fatal(err)
		}
		repl = "su " + u.Username + " " + g.Name
	}
	conf = strings.ReplaceAll(conf, suLine, repl)
	conf = strings.ReplaceAll(conf, "/opt/claude-relay/logs", logs)
	confPath := filepath.Join(dir, "logrotate.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}

	now := time.Now()
	day := func(d time.Duration) string {
		return "claude-relay-" + now.Add(-d).UTC().Format(time.DateOnly) + ".log"
	}
	files := []struct {
		name    string
		content string
		age     time.Duration
		gz      bool
	}{
		{name: day(0), content: "today\n", age: 0},
		{name: day(30 * time.Hour), content: "yesterday\n", age: 30 * time.Hour},
		{name: day(72 * time.Hour), content: "", age: 72 * time.Hour}, // empty: left to the binary
		{name: day(20*24*time.Hour) + ".1.gz", content: "recent\n", age: 20 * 24 * time.Hour, gz: true},
		{name: day(40*24*time.Hour) + ".1.gz", content: "old\n", age: 40 * 24 * time.Hour, gz: true},
		{name: "other.log.1.gz", content: "not ours\n", age: 40 * 24 * time.Hour, gz: true},
	}
	var state strings.Builder
	state.WriteString("logrotate state -- version 2\n")
	for _, f := range files {
		p := filepath.Join(logs, f.name)
		data := []byte(f.content)
		if f.gz {
			data = gzipBytes(t, f.content)
		}
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		mtime := now.Add(-f.age)
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
		// Last rotated long ago, so that "daily" lets every file through and
		// only minage and notifempty decide.
		if !f.gz {
			fmt.Fprintf(&state, "%q 2000-1-1-0:0:0\n", p)
		}
	}
	statePath := filepath.Join(dir, "state")
	if err := os.WriteFile(statePath, []byte(state.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, logrotate, "-s", statePath, confPath).CombinedOutput(); err != nil {
		t.Fatalf("logrotate: %v\n%s", err, out)
	}

	want := []struct {
		name    string
		exists  bool
		content string
	}{
		{day(0), true, "today\n"},
		{day(30 * time.Hour), false, ""},
		{day(30*time.Hour) + ".1.gz", true, "yesterday\n"},
		{day(72 * time.Hour), true, ""},
		{day(20*24*time.Hour) + ".1.gz", true, "recent\n"},
		{day(40*24*time.Hour) + ".1.gz", false, ""},
		{"other.log.1.gz", true, "not ours\n"},
	}
	for _, w := range want {
		t.Run(w.name, func(t *testing.T) {
			p := filepath.Join(logs, w.name)
			data, err := os.ReadFile(p)
			if exists := err == nil; exists != w.exists {
				t.Fatalf("exists: got %v, want %v", exists, w.exists)
			}
			if !w.exists {
				return
			}
			got := string(data)
			if strings.HasSuffix(w.name, ".gz") {
				got = gunzipString(t, data)
			}
			if got != w.content {
				t.Errorf("content: got %q, want %q", got, w.content)
			}
		})
	}
}

func gzipBytes(t *testing.T, s string) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := io.WriteString(zw, s); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func gunzipString(t *testing.T, data []byte) string {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("gunzip: %v", err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("gunzip: %v", err)
	}
	return string(out)
}
