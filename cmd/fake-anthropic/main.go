// Command fake-anthropic serves a faithful fake of the Anthropic Messages API
// for benchmarks and demos.
//
// Every POST /v1/messages is answered with the default script built from the
// flags, unless the request carries its own script in the X-Fake-Script
// header (JSON of fakeupstream.Script, durations as Go duration strings).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/claude-relay/claude-relay/fakeupstream"
)

// stringList is a flag that may be repeated and takes comma-separated values.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }

func (l *stringList) Set(v string) error {
	for part := range strings.SplitSeq(v, ",") {
		if part = strings.TrimSpace(part); part != "" {
			*l = append(*l, part)
		}
	}
	return nil
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "fake-anthropic:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("fake-anthropic", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8090", "listen address")
	firstByte := fs.Duration("first-byte", 0, "delay before the response headers")
	pace := fs.Duration("pace", 0, "delay between SSE events")
	deltas := fs.Int("deltas", fakeupstream.DefaultDeltas, "deltas per content block")
	logLevel := fs.String("log-level", "info", "log level: trace, debug, info, warn, error")
	var keys stringList
	fs.Var(&keys, "api-key", "accepted API key (repeatable or comma-separated); none accepts any non-empty key")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("parse flags: %w", err)
	}
	if *deltas < 1 {
		return fmt.Errorf("-deltas must be at least 1, got %d", *deltas)
	}

	level := hclog.LevelFromString(*logLevel)
	if level == hclog.NoLevel {
		return fmt.Errorf("unknown -log-level %q", *logLevel)
	}
	log := hclog.New(&hclog.LoggerOptions{
		Name:   "fake-anthropic",
		Level:  level,
		Output: os.Stderr,
	})
	srv := fakeupstream.New(fakeupstream.Options{
		APIKeys: keys,
		Default: fakeupstream.Script{FirstByteDelay: *firstByte, Pace: *pace, Deltas: *deltas},
		Logger:  log,
	})
	ln, err := srv.Listen(*addr)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	log.Info("listening", "url", srv.URL(), "first_byte", *firstByte, "pace", *pace,
		"deltas", *deltas, "api_keys", len(keys))
	if err := srv.Serve(ctx, ln, 10*time.Second); err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}
