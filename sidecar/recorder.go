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
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/claude-relay/claude-relay/internal/metrics"
	"github.com/claude-relay/claude-relay/sidecar/usage"
	"github.com/claude-relay/claude-relay/store"
)

// UsageWriter is what Recorder needs from the store.
type UsageWriter interface {
	RecordUsageBatch(ctx context.Context, id store.BatchID, recs ...store.UsageRecord) error
}

// Recorder writes usage records in batches, off the request path: one pipelined round
// trip per batch. While Redis is unavailable it keeps records in memory (bounded) and
// retries with a backoff that doubles up to retryMax; on shutdown whatever it still cannot
// write goes to a spool file that is replayed at the next start, so a record is never
// silently lost. Each Recorder is a writer of its own (a random id); its batches are
// numbered and written in order, each keeping its number across retries and through the
// spool, and the store applies a number at most once, so a write that failed ambiguously
// (applied, but the reply was lost) is not counted twice (see store.BatchID).
//
// A batch the store refuses for good (store.ErrUsageRefused: a count out of range, say from
// a spool written by an older version) is never retried: it is appended to the quarantine
// file and the batches behind it go on. Replayed spools follow the same rules.
type Recorder struct {
	w          UsageWriter
	log        hclog.Logger
	spool      string // "" = no spool
	quarantine string // "" = no quarantine file
	writer     string // this recorder's writer id
	seq        uint64 // the last batch sequence given out; only Run's goroutine uses it
	in         chan store.UsageRecord
	done       chan struct{}
	batchMax   int
	pendMax    int
	dropped    *metrics.Counter
	written    *metrics.Counter
	failures   *metrics.Counter
	setAsideN  *metrics.Counter
	invalid    *metrics.CounterVec
	lingering  time.Duration

	invalidLogged atomic.Int64 // unix ns of the last log line about out-of-range usage

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
	// QuarantinePath is the file for batches the store refused; default
	// usage-quarantine.jsonl beside SpoolPath (none without a SpoolPath).
	QuarantinePath string
	Buffer         int // queue length before records are dropped (counted); default 65536
}

// usageLinger is how long the recorder waits, after a record arrives, for more to write
// with it. Records of the same key, model and day in one batch are summed into one increment
// per counter, and each batch costs Redis one script per hash-tag group plus its bookkeeping,
// whatever it holds: at 20 ms a busy key paid that every ~20 requests at concurrency 1, at
// 100 ms every ~100 (issue 19). Usage reaches Redis at most this much later; records still
// in memory are spooled on shutdown as before.
const usageLinger = 100 * time.Millisecond

// Retry backoff of a batch that could not be written: it doubles from retryMin to retryMax.
const (
	retryMin = 100 * time.Millisecond
	retryMax = 10 * time.Second
)

// retryDelay is the wait after the n-th failure in a row (n >= 1).
func retryDelay(n int) time.Duration {
	d := retryMin
	for i := 1; i < n && d < retryMax; i++ {
		d *= 2
	}
	return min(d, retryMax)
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
	if opts.QuarantinePath == "" && opts.SpoolPath != "" {
		opts.QuarantinePath = filepath.Join(filepath.Dir(opts.SpoolPath), "usage-quarantine.jsonl")
	}
	keys, _ := w.(KeyToucher)
	return &Recorder{
		keys:       keys,
		touched:    make(map[string]time.Time),
		w:          w,
		log:        opts.Logger.Named("usage"),
		spool:      opts.SpoolPath,
		quarantine: opts.QuarantinePath,
		writer:     newWriterID(),
		in:         make(chan store.UsageRecord, opts.Buffer),
		done:       make(chan struct{}),
		batchMax:   512,
		pendMax:    1_000_000,
		lingering:  usageLinger,
		dropped:    opts.Metrics.Counter("claude_relay_usage_records_dropped_total", "Usage records dropped because the queue was full.").With(),
		written:    opts.Metrics.Counter("claude_relay_usage_records_written_total", "Usage records written to Redis.").With(),
		failures:   opts.Metrics.Counter("claude_relay_redis_errors_total", "Redis operations that failed.", "op").With("record_usage"),
		setAsideN: opts.Metrics.Counter("claude_relay_usage_quarantined_total",
			"Usage records in batches the store refused, set aside in the quarantine file instead of being retried.").With(),
		invalid: opts.Metrics.Counter("claude_relay_usage_invalid_total",
			"Token counts an upstream reported out of range (negative or above the bound), clamped before they were recorded.", "field"),
	}
}

// Record implements UsageSink. It never blocks.
func (r *Recorder) Record(u UsageRecord) {
	if u.Counts.Invalid != 0 {
		r.reportInvalid(u)
	}
	rec := store.UsageRecord{
		KeyID: u.KeyID, AccountID: u.AccountID, Model: u.Model, At: u.At,
		Usage: store.Usage{
			Requests: 1, InputTokens: u.Counts.Input, OutputTokens: u.Counts.Output,
			CacheWrite5m: u.Counts.CacheWrite5m, CacheWrite1h: u.Counts.CacheWrite1h, CacheRead: u.Counts.CacheRead,
			CostMicroUSD:     int64(math.Round(u.CostUSD * 1e6)),
			UnpricedRequests: oneIf(u.Unpriced), EstimatedRequests: oneIf(u.Estimated),
		},
		Ledger: u.Ledger,
	}
	select {
	case r.in <- rec:
	default:
		r.dropped.Inc()
		r.log.Error("usage queue full; record dropped", "key", u.KeyID, "model", u.Model)
	}
}

func oneIf(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// invalidLogEvery bounds the log lines about out-of-range usage: a broken upstream would
// otherwise log on every response. Every case is counted.
const invalidLogEvery = 10 * time.Second

// reportInvalid counts the token counts an upstream reported out of range and logs them, at
// most once per invalidLogEvery.
func (r *Recorder) reportInvalid(u UsageRecord) {
	var names []string
	u.Counts.Invalid.Each(func(name string) {
		names = append(names, name)
		r.invalid.With(name).Inc()
	})
	now, last := time.Now().UnixNano(), r.invalidLogged.Load()
	if now-last < int64(invalidLogEvery) || !r.invalidLogged.CompareAndSwap(last, now) {
		return
	}
	r.log.Warn("upstream reported token counts out of range; clamped to [0, "+strconv.Itoa(usage.MaxTokens)+"] (logged at most every 10s, all counted in claude_relay_usage_invalid_total)",
		"fields", strings.Join(names, ","), "key", u.KeyID, "account", u.AccountID, "model", u.Model,
		"input", u.Counts.Input, "output", u.Counts.Output, "cache_write_5m", u.Counts.CacheWrite5m,
		"cache_write_1h", u.Counts.CacheWrite1h, "cache_read", u.Counts.CacheRead)
}

// batch is a set of records written together under one identity. Spool lines written before
// batch sequences carry only "batch" (a random id), which the store applies once by name.
type batch struct {
	Writer  string              `json:"writer,omitempty"`
	Seq     uint64              `json:"seq,omitempty"`
	Name    string              `json:"batch,omitempty"`
	Records []store.UsageRecord `json:"records"`
}

// id is the batch's identity in the store.
func (b batch) id() store.BatchID {
	if b.Seq == 0 {
		return store.BatchID{Writer: b.Name}
	}
	return store.BatchID{Writer: b.Writer, Seq: b.Seq}
}

// newBatch numbers records as this recorder's next batch.
func (r *Recorder) newBatch(recs []store.UsageRecord) batch {
	r.seq++
	return batch{Writer: r.writer, Seq: r.seq, Records: recs}
}

func newWriterID() string {
	b := make([]byte, 12)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Run writes records until ctx ends, then drains the queue, tries once more to write
// everything pending (within flushTimeout), and spools what remains.
func (r *Recorder) Run(ctx context.Context, flushTimeout time.Duration) {
	defer close(r.done)
	// todo holds batches whose records are fixed (written before, or replayed from the
	// spool), in order: the first is written (or set aside) before the next is tried.
	// pending holds records not yet batched.
	todo := r.loadSpool()
	var pending []store.UsageRecord
	failed := 0                // failed writes in a row: the backoff grows with them
	var retry <-chan time.Time // non-nil while backing off
	for {
		if (len(todo) == 0 && len(pending) == 0) || retry != nil {
			select {
			case <-ctx.Done():
				r.shutdown(todo, pending, flushTimeout)
				return
			case rec := <-r.in:
				pending = append(pending, rec)
				continue
			case <-retry:
				retry = nil
			}
		}
		if len(todo) == 0 {
			// Linger briefly so bursts go out together, then take what is queued.
			pending = r.collect(ctx, pending)
			n := min(len(pending), r.batchMax*8)
			todo = append(todo, r.newBatch(append([]store.UsageRecord(nil), pending[:n]...)))
			pending = append(pending[:0], pending[n:]...)
		}
		b := todo[0]
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := r.w.RecordUsageBatch(wctx, b.id(), b.Records...)
		cancel()
		switch {
		case err == nil:
			r.written.Add(float64(len(b.Records)))
			r.touchKeys(ctx, b.Records)
			todo, failed = todo[1:], 0
		case errors.Is(err, store.ErrUsageRefused):
			r.setAside(b, err)
			todo, failed = todo[1:], 0
		case ctx.Err() != nil:
			r.shutdown(todo, pending, flushTimeout)
			return
		default:
			r.failures.Inc()
			failed++
			wait := retryDelay(failed)
			retry = time.After(wait)
			r.log.Warn("cannot write usage; will retry", "records", countRecords(todo)+len(pending), "retry_in", wait, "error", err)
			if over := len(pending) - r.pendMax; over > 0 {
				r.dropped.Add(float64(over))
				r.log.Error("usage backlog over its bound; oldest records dropped", "dropped", over)
				pending = pending[over:]
			}
		}
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
		todo = append(todo, r.newBatch(pending))
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var left []batch
	var lastErr error
	for _, b := range todo {
		if lastErr == nil {
			err := r.w.RecordUsageBatch(ctx, b.id(), b.Records...)
			switch {
			case err == nil:
				r.written.Add(float64(len(b.Records)))
				continue
			case errors.Is(err, store.ErrUsageRefused):
				r.setAside(b, err)
				continue
			}
			lastErr = err // Redis is away: this batch and the ones behind it are spooled
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
	if err := appendLines(r.spool, bs); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	return nil
}

// quarantined is a line of the quarantine file: a batch the store refused, and why.
type quarantined struct {
	batch
	Error         string    `json:"error"`
	QuarantinedAt time.Time `json:"quarantined_at"`
}

// setAside appends a batch the store refused to the quarantine file, where it stays for an
// operator; it is never retried. Without a writable quarantine file its records are
// dropped (counted and logged with the error).
func (r *Recorder) setAside(b batch, cause error) {
	n := len(b.Records)
	var err error
	if r.quarantine == "" {
		err = errors.New("no quarantine file configured")
	} else {
		err = appendLines(r.quarantine, []quarantined{{batch: b, Error: cause.Error(), QuarantinedAt: time.Now().UTC()}})
	}
	if err != nil {
		r.dropped.Add(float64(n))
		r.log.Error("usage batch refused by the store and not kept: records lost", "records", n, "refused", cause, "error", err)
		return
	}
	r.setAsideN.Add(float64(n))
	r.log.Error("usage batch refused by the store; set aside, not retried", "records", n, "quarantine", r.quarantine,
		"writer", b.Writer, "seq", b.Seq, "batch", b.Name, "error", cause)
}

// appendLines appends each value as a JSON line to the file at path (mode 0600, created
// with its directory) and syncs it.
func appendLines[T any](path string, vs []T) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create dir: %w", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	bw := bufio.NewWriter(f)
	enc := json.NewEncoder(bw)
	for _, v := range vs {
		if err := enc.Encode(v); err != nil {
			f.Close()
			return fmt.Errorf("write %s: %w", path, err)
		}
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", path, err)
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
		if (b.Writer != "" && b.Seq != 0 || b.Name != "") && len(b.Records) > 0 {
			bs = append(bs, b)
		}
	}
	// The batches now live in memory; Run writes them or spools them again at shutdown,
	// and their identities keep a batch that did land before from counting twice.
	if err := os.Remove(r.spool); err != nil {
		r.log.Error("cannot remove usage spool", "spool", r.spool, "error", err)
	}
	r.log.Info("replaying spooled usage", "batches", len(bs), "records", countRecords(bs))
	return bs
}
