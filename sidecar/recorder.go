package sidecar

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
	RecordUsageBatch(ctx context.Context, batchID string, recs ...store.UsageRecord) error
}

// Recorder writes usage records in batches, off the request path: one pipelined round
// trip per batch. While Redis is unavailable it keeps records in memory (bounded) and
// retries with backoff; on shutdown whatever it still cannot write goes to a spool file
// that is replayed at the next start, so a record is never silently lost. A batch keeps
// its id across retries and through the spool, and the store applies an id at most once,
// so a write that failed ambiguously (applied, but the reply was lost) is not counted twice.
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

	// Relay keys' last use rides on the batches: at most one write per key per
	// keyTouchEvery, off the request path. Only Run's goroutine uses touched.
	keys    KeyToucher // nil when the writer cannot record it
	touched map[string]time.Time
}

// KeyToucher records when a relay key was last used (store.Store implements it).
type KeyToucher interface {
	TouchKey(ctx context.Context, id string, at time.Time) error
}

// keyTouchEvery bounds how often one sidecar writes a key's last use.
const keyTouchEvery = 10 * time.Second

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
	keys, _ := w.(KeyToucher)
	return &Recorder{
		keys:      keys,
		touched:   make(map[string]time.Time),
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

// batch is a set of records written together under one id.
type batch struct {
	ID      string              `json:"batch"`
	Records []store.UsageRecord `json:"records"`
}

func newBatchID() string {
	b := make([]byte, 12)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Run writes records until ctx ends, then drains the queue, tries once more to write
// everything pending (within flushTimeout), and spools what remains.
func (r *Recorder) Run(ctx context.Context, flushTimeout time.Duration) {
	defer close(r.done)
	// todo holds batches whose records are fixed (written before, or replayed from the
	// spool): they are retried with the same id. pending holds records not yet batched.
	todo := r.loadSpool()
	var pending []store.UsageRecord
	backoff := time.Duration(0)
	for {
		if (len(todo) == 0 && len(pending) == 0) || backoff > 0 {
			var timer <-chan time.Time
			if backoff > 0 {
				timer = time.After(backoff)
			}
			select {
			case <-ctx.Done():
				r.shutdown(todo, pending, flushTimeout)
				return
			case rec := <-r.in:
				pending = append(pending, rec)
				continue
			case <-timer:
				backoff = 0
			}
		}
		if len(todo) == 0 {
			// Linger briefly so bursts go out together, then take what is queued.
			pending = r.collect(ctx, pending)
			n := min(len(pending), r.batchMax*8)
			todo = append(todo, batch{ID: newBatchID(), Records: append([]store.UsageRecord(nil), pending[:n]...)})
			pending = append(pending[:0], pending[n:]...)
		}
		b := todo[0]
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := r.w.RecordUsageBatch(wctx, b.ID, b.Records...)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				r.shutdown(todo, pending, flushTimeout)
				return
			}
			r.failures.Inc()
			backoff = min(max(2*backoff, 100*time.Millisecond), 10*time.Second)
			r.log.Warn("cannot write usage; will retry", "records", countRecords(todo)+len(pending), "retry_in", backoff, "error", err)
			if over := len(pending) - r.pendMax; over > 0 {
				r.dropped.Add(float64(over))
				r.log.Error("usage backlog over its bound; oldest records dropped", "dropped", over)
				pending = pending[over:]
			}
			continue
		}
		r.written.Add(float64(len(b.Records)))
		r.touchKeys(ctx, b.Records)
		todo = todo[1:]
		backoff = 0
	}
}

func countRecords(bs []batch) int {
	n := 0
	for _, b := range bs {
		n += len(b.Records)
	}
	return n
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

// shutdown writes what is left, within timeout, and spools what it cannot write.
func (r *Recorder) shutdown(todo []batch, pending []store.UsageRecord, timeout time.Duration) {
	for drained := false; !drained; {
		select {
		case rec := <-r.in:
			pending = append(pending, rec)
		default:
			drained = true
		}
	}
	if len(pending) > 0 {
		todo = append(todo, batch{ID: newBatchID(), Records: pending})
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var left []batch
	var lastErr error
	for _, b := range todo {
		if lastErr == nil {
			if lastErr = r.w.RecordUsageBatch(ctx, b.ID, b.Records...); lastErr == nil {
				r.written.Add(float64(len(b.Records)))
				continue
			}
		}
		left = append(left, b)
	}
	if len(left) == 0 {
		return
	}
	n := countRecords(left)
	if serr := r.writeSpool(left); serr != nil {
		r.dropped.Add(float64(n))
		r.log.Error("usage records lost: Redis unavailable and spool not writable", "records", n, "error", errors.Join(lastErr, serr))
		return
	}
	r.log.Warn("Redis unavailable at shutdown; usage spooled for the next start", "records", n, "spool", r.spool, "error", lastErr)
}

// touchKeys records the last use of the keys in a written batch, at most once per key per
// keyTouchEvery; a failure only delays the next attempt.
func (r *Recorder) touchKeys(ctx context.Context, recs []store.UsageRecord) {
	if r.keys == nil {
		return
	}
	latest := make(map[string]time.Time)
	for _, rec := range recs {
		if rec.KeyID != "" && rec.At.After(latest[rec.KeyID]) {
			latest[rec.KeyID] = rec.At
		}
	}
	for id, at := range latest {
		if last, ok := r.touched[id]; ok && at.Sub(last) < keyTouchEvery {
			continue
		}
		tctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := r.keys.TouchKey(tctx, id, at)
		cancel()
		if err != nil {
			r.log.Debug("cannot record the key's last use", "key", id, "error", err)
			continue
		}
		r.touched[id] = at
	}
	if len(r.touched) > 100_000 { // bounded: forgetting only costs a write
		clear(r.touched)
	}
}

// Wait blocks until Run has returned.
func (r *Recorder) Wait() { <-r.done }

func (r *Recorder) writeSpool(bs []batch) error {
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
	for _, b := range bs {
		if err := enc.Encode(b); err != nil {
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

// loadSpool reads and removes the spool file; its batches are retried with their ids.
func (r *Recorder) loadSpool() []batch {
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
	var bs []batch
	dec := json.NewDecoder(f)
	for {
		var b batch
		if err := dec.Decode(&b); err != nil {
			if !errors.Is(err, io.EOF) {
				r.log.Error("usage spool ends with a damaged entry; the rest is replayed", "spool", r.spool, "error", err)
			}
			break
		}
		if b.ID != "" && len(b.Records) > 0 {
			bs = append(bs, b)
		}
	}
	// The batches now live in memory; Run writes them or spools them again at shutdown,
	// and their ids keep a batch that did land before from counting twice.
	if err := os.Remove(r.spool); err != nil {
		r.log.Error("cannot remove usage spool", "spool", r.spool, "error", err)
	}
	r.log.Info("replaying spooled usage", "batches", len(bs), "records", countRecords(bs))
	return bs
}
