package sidecar

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/claude-relay/claude-relay/internal/metrics"
	"github.com/claude-relay/claude-relay/store"
)

// UsageWriter is what Recorder needs from the store.
type UsageWriter interface {
	RecordUsage(ctx context.Context, recs ...store.UsageRecord) error
}

// Recorder writes usage records in batches, off the request path: one pipelined round
// trip per batch. While Redis is unavailable it keeps records in memory (bounded) and
// retries with backoff; on shutdown whatever it still cannot write goes to a spool file
// that is replayed at the next start, so a record is never silently lost.
type Recorder struct {
	w         UsageWriter
	log       hclog.Logger
	spool     string // "" = no spool
	in        chan store.UsageRecord
	done      chan struct{}
	batchMax  int
	pendMax   int
	dropped   *metrics.Counter
	written   *metrics.Counter
	failures  *metrics.Counter
	lingering time.Duration
}

// RecorderOptions configures a Recorder.
type RecorderOptions struct {
	Logger    hclog.Logger
	Metrics   *metrics.Registry
	SpoolPath string // file for records that could not be written at shutdown
	Buffer    int    // queue length before records are dropped (counted); default 65536
}

// NewRecorder returns a Recorder; Run must be running for records to be written.
func NewRecorder(w UsageWriter, opts RecorderOptions) *Recorder {
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.Metrics == nil {
		opts.Metrics = metrics.NewRegistry()
	}
	if opts.Buffer <= 0 {
		opts.Buffer = 65536
	}
	return &Recorder{
		w:         w,
		log:       opts.Logger.Named("usage"),
		spool:     opts.SpoolPath,
		in:        make(chan store.UsageRecord, opts.Buffer),
		done:      make(chan struct{}),
		batchMax:  512,
		pendMax:   1_000_000,
		lingering: 20 * time.Millisecond,
		dropped:   opts.Metrics.Counter("claude_relay_usage_records_dropped_total", "Usage records dropped because the queue was full.").With(),
		written:   opts.Metrics.Counter("claude_relay_usage_records_written_total", "Usage records written to Redis.").With(),
		failures:  opts.Metrics.Counter("claude_relay_redis_errors_total", "Redis operations that failed.", "op").With("record_usage"),
	}
}

// Record implements UsageSink. It never blocks.
func (r *Recorder) Record(u UsageRecord) {
	rec := store.UsageRecord{
		KeyID: u.KeyID, AccountID: u.AccountID, Model: u.Model, At: u.At,
		Usage: store.Usage{
			Requests: 1, InputTokens: u.Counts.Input, OutputTokens: u.Counts.Output,
			CacheWrite5m: u.Counts.CacheWrite5m, CacheWrite1h: u.Counts.CacheWrite1h, CacheRead: u.Counts.CacheRead,
			CostMicroUSD: int64(math.Round(u.CostUSD * 1e6)),
		},
	}
	select {
	case r.in <- rec:
	default:
		r.dropped.Inc()
		r.log.Error("usage queue full; record dropped", "key", u.KeyID, "model", u.Model)
	}
}

// Run writes records until ctx ends, then drains the queue, tries once more to write
// everything pending (within flushTimeout), and spools what remains.
func (r *Recorder) Run(ctx context.Context, flushTimeout time.Duration) {
	defer close(r.done)
	var pending []store.UsageRecord
	if replayed := r.loadSpool(); len(replayed) > 0 {
		pending = replayed
	}
	backoff := time.Duration(0)
	for {
		if len(pending) == 0 || backoff > 0 {
			var timer <-chan time.Time
			if backoff > 0 {
				timer = time.After(backoff)
			}
			select {
			case <-ctx.Done():
				r.shutdown(pending, flushTimeout)
				return
			case rec := <-r.in:
				pending = append(pending, rec)
				continue
			case <-timer:
				backoff = 0
			}
		}
		// Linger briefly so bursts go out together, then take what is queued.
		pending = r.collect(ctx, pending)
		n := min(len(pending), r.batchMax*8)
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := r.w.RecordUsage(wctx, pending[:n]...)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				r.shutdown(pending, flushTimeout)
				return
			}
			r.failures.Inc()
			backoff = min(max(2*backoff, 100*time.Millisecond), 10*time.Second)
			r.log.Warn("cannot write usage; will retry", "records", len(pending), "retry_in", backoff, "error", err)
			if len(pending) > r.pendMax {
				lost := len(pending) - r.pendMax
				r.dropped.Add(float64(lost))
				r.log.Error("usage backlog over its bound; oldest records dropped", "dropped", lost)
				pending = pending[lost:]
			}
			continue
		}
		r.written.Add(float64(n))
		pending = append(pending[:0], pending[n:]...)
		backoff = 0
	}
}

func (r *Recorder) collect(ctx context.Context, pending []store.UsageRecord) []store.UsageRecord {
	t := time.NewTimer(r.lingering)
	defer t.Stop()
	for len(pending) < r.batchMax {
		select {
		case rec := <-r.in:
			pending = append(pending, rec)
		case <-t.C:
			return pending
		case <-ctx.Done():
			return pending
		}
	}
	return pending
}

func (r *Recorder) shutdown(pending []store.UsageRecord, timeout time.Duration) {
	for {
		select {
		case rec := <-r.in:
			pending = append(pending, rec)
			continue
		default:
		}
		break
	}
	if len(pending) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := r.w.RecordUsage(ctx, pending...)
	if err == nil {
		r.written.Add(float64(len(pending)))
		return
	}
	if serr := r.writeSpool(pending); serr != nil {
		r.dropped.Add(float64(len(pending)))
		r.log.Error("usage records lost: Redis unavailable and spool not writable", "records", len(pending), "error", errors.Join(err, serr))
		return
	}
	r.log.Warn("Redis unavailable at shutdown; usage spooled for the next start", "records", len(pending), "spool", r.spool, "error", err)
}

// Wait blocks until Run has returned.
func (r *Recorder) Wait() { <-r.done }

func (r *Recorder) writeSpool(recs []store.UsageRecord) error {
	if r.spool == "" {
		return errors.New("no spool file configured")
	}
	if err := os.MkdirAll(filepath.Dir(r.spool), 0o700); err != nil {
		return fmt.Errorf("create spool dir: %w", err)
	}
	f, err := os.OpenFile(r.spool, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("open spool: %w", err)
	}
	bw := bufio.NewWriter(f)
	enc := json.NewEncoder(bw)
	for _, rec := range recs {
		if err := enc.Encode(rec); err != nil {
			f.Close()
			return fmt.Errorf("write spool: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("write spool: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync spool: %w", err)
	}
	return f.Close()
}

// loadSpool reads and removes the spool file; its records are written like new ones.
func (r *Recorder) loadSpool() []store.UsageRecord {
	if r.spool == "" {
		return nil
	}
	f, err := os.Open(r.spool)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			r.log.Error("cannot read usage spool", "spool", r.spool, "error", err)
		}
		return nil
	}
	defer f.Close()
	var recs []store.UsageRecord
	dec := json.NewDecoder(f)
	for {
		var rec store.UsageRecord
		if err := dec.Decode(&rec); err != nil {
			break
		}
		recs = append(recs, rec)
	}
	// Records now live in memory; Run writes them or spools them again at shutdown.
	if err := os.Remove(r.spool); err != nil {
		r.log.Error("cannot remove usage spool; records may be counted twice", "spool", r.spool, "error", err)
	}
	r.log.Info("replaying spooled usage", "records", len(recs))
	return recs
}
