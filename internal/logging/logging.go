// Package logging builds the relay's hclog logger: stderr plus daily files, with secrets redacted.
package logging

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Options configure New.
type Options struct {
	// Name is the root logger's name.
	Name string
	// Level is trace, debug, info, warn or error, or a RUST_LOG directive
	// list; "" means info. See ParseLevel.
	Level string
	// Dir is LOG_DIR; "" writes to stderr only.
	Dir string
	// RetentionDays is how many days of files are kept besides today's;
	// 0 means DefaultRetentionDays, negative keeps every file.
	RetentionDays int
	// JSON selects JSON lines instead of hclog's text format.
	JSON bool
	// Stderr receives every line; nil means os.Stderr (journald under systemd).
	Stderr io.Writer
	// Now is the clock for timestamps and file dates; nil means time.Now.
	Now func() time.Time
}

// New returns the root logger, writing redacted lines to stderr and, when
// opts.Dir is set, to daily files in it. The returned *Files (nil without a
// Dir) must be closed on shutdown; its Check backs /health. New fails on an
// unknown level or a log directory that cannot be created or written.
func New(opts Options) (hclog.Logger, *Files, error) {
	level, err := ParseLevel(opts.Level)
	if err != nil {
		return nil, nil, err
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	var out io.Writer = opts.Stderr
	if out == nil {
		out = os.Stderr
	}
	var files *Files
	var removed []string
	if opts.Dir != "" {
		files, removed, err = openFiles(opts.Dir, opts.RetentionDays, now)
		if err != nil {
			return nil, nil, err
		}
		out = tee{first: out, second: files}
	}
	log := hclog.New(&hclog.LoggerOptions{
		Name:       opts.Name,
		Level:      level,
		Output:     redactWriter{w: out},
		JSONFormat: opts.JSON,
		TimeFn:     func() time.Time { return now().UTC() },
		Color:      hclog.ColorOff,
	})
	if len(removed) > 0 {
		log.Info("removed expired log files", "count", len(removed), "retention_days", files.retention)
	}
	return log, files, nil
}

// ParseLevel parses LOG_LEVEL or RUST_LOG. It accepts trace, debug, info,
// warn (or warning), error and off in any case; "" is info. A RUST_LOG
// directive list such as "info,claude_relay=debug" yields its bare level, or,
// when there is none, the most verbose per-target level.
func ParseLevel(s string) (hclog.Level, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return hclog.Info, nil
	}
	var bare, targeted hclog.Level = hclog.NoLevel, hclog.NoLevel
	for _, d := range strings.Split(s, ",") {
		d = strings.TrimSpace(d)
		if d == "" {
			continue
		}
		if slash := strings.IndexByte(d, '/'); slash >= 0 { // RUST_LOG span filter
			d = d[:slash]
		}
		name, isTarget := d, false
		if eq := strings.LastIndexByte(d, '='); eq >= 0 {
			name, isTarget = d[eq+1:], true
		}
		l, ok := levelByName(name)
		if !ok {
			return hclog.NoLevel, fmt.Errorf("unknown log level %q in %q (want trace, debug, info, warn, error or off)", name, s)
		}
		if !isTarget {
			bare = l
		} else if targeted == hclog.NoLevel || l < targeted {
			targeted = l
		}
	}
	switch {
	case bare != hclog.NoLevel:
		return bare, nil
	case targeted != hclog.NoLevel:
		return targeted, nil
	}
	return hclog.Info, nil
}

func levelByName(s string) (hclog.Level, bool) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "trace":
		return hclog.Trace, true
	case "debug":
		return hclog.Debug, true
	case "info":
		return hclog.Info, true
	case "warn", "warning":
		return hclog.Warn, true
	case "error":
		return hclog.Error, true
	case "off":
		return hclog.Off, true
	}
	return hclog.NoLevel, false
}

// LevelFromEnv returns the level setting from the environment: LOG_LEVEL,
// else RUST_LOG (the predecessor's two spellings), else "".
func LevelFromEnv(getenv func(string) string) string {
	if v := strings.TrimSpace(getenv("LOG_LEVEL")); v != "" {
		return v
	}
	return strings.TrimSpace(getenv("RUST_LOG"))
}

// redactWriter masks secrets in each write. hclog writes one whole entry per
// call, so a secret is never split across writes.
type redactWriter struct{ w io.Writer }

func (r redactWriter) Write(p []byte) (int, error) {
	out := RedactBytes(p)
	n, err := r.w.Write(out)
	if err != nil {
		return min(n, len(p)), err
	}
	return len(p), nil
}

// tee writes to both writers even when the first fails, so a full disk
// never silences stderr and a closed stderr never silences the files.
type tee struct{ first, second io.Writer }

func (t tee) Write(p []byte) (int, error) {
	_, err1 := t.first.Write(p)
	_, err2 := t.second.Write(p)
	if err1 != nil {
		return 0, err1
	}
	if err2 != nil {
		return 0, err2
	}
	return len(p), nil
}

// Interface guards.
var (
	_ io.Writer = (*Files)(nil)
	_ io.Writer = redactWriter{}
	_ io.Writer = tee{}
)
