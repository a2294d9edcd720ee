package logging

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

const (
	filePrefix = "claude-relay-"
	fileSuffix = ".log"
	dayLayout  = "2006-01-02"

	// DefaultRetentionDays is how many days of log files are kept when
	// Options.RetentionDays is 0, as in the deployment guide's logrotate setup.
	DefaultRetentionDays = 30
)

// Files is an io.Writer onto LOG_DIR/claude-relay-YYYY-MM-DD.log. It switches
// to a new file on the first write (or Check) after midnight UTC and then
// deletes files older than the retention period. It is safe for concurrent use.
type Files struct {
	dir       string
	retention int // days; negative keeps every file
	now       func() time.Time

	mu       sync.Mutex
	file     *os.File
	path     string
	day      int   // yyyymmdd of file
	openErr  error // last failure to open today's file; writes go to the old file meanwhile
	writeErr error // last write failure, cleared by a successful write
	closed   bool
	// buf holds lines not yet written: a busy relay logs a line per request, and one write
	// per flush instead of one per line keeps that off the request path's CPU. It is
	// written when it passes fileBufferSize, flushInterval after its first line, before a
	// day switch, and on Flush, Check and Close.
	buf   []byte
	timer *time.Timer // armed while buf holds lines
}

// Buffering of the daily files: lines reach the disk at most flushInterval after they
// were logged (a SIGKILL loses at most that much); stderr is never buffered.
const (
	flushInterval  = 200 * time.Millisecond
	fileBufferSize = 64 << 10
)

// openFiles creates dir if needed, opens today's file, checks that the
// directory is writable (tomorrow's file must be creatable) and sweeps
// expired files. retentionDays 0 means DefaultRetentionDays; negative keeps
// files forever.
func openFiles(dir string, retentionDays int, now func() time.Time) (*Files, []string, error) {
	if retentionDays == 0 {
		retentionDays = DefaultRetentionDays
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, nil, fmt.Errorf("create log dir %q: %w", dir, err)
	}
	f := &Files{dir: dir, retention: retentionDays, now: now}
	t := now().UTC()
	if err := f.openLocked(t); err != nil {
		return nil, nil, err
	}
	if err := probeDir(dir); err != nil {
		_ = f.file.Close()
		return nil, nil, err
	}
	removed, err := f.sweepLocked(t)
	if err != nil {
		_ = f.file.Close()
		return nil, nil, err
	}
	return f, removed, nil
}

// Write appends p to the current day's file, switching files first if the
// UTC date has changed since the last write. The line is buffered (see
// flushInterval); the error is that of the last write to disk.
func (f *Files) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return 0, os.ErrClosed
	}
	f.rotateLocked()
	if f.file == nil {
		return 0, f.openErr
	}
	f.buf = append(f.buf, p...)
	if len(f.buf) >= fileBufferSize {
		f.flushLocked()
	} else if f.timer == nil {
		f.timer = time.AfterFunc(flushInterval, f.flushTimer)
	}
	return len(p), f.writeErr
}

// Flush writes buffered lines to the current file now.
func (f *Files) Flush() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.flushLocked()
	return f.writeErr
}

func (f *Files) flushTimer() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.timer = nil
	f.flushLocked()
}

// flushLocked writes the buffer to the open file and records the outcome for Check.
func (f *Files) flushLocked() {
	if f.timer != nil {
		f.timer.Stop()
		f.timer = nil
	}
	if len(f.buf) == 0 || f.file == nil {
		return
	}
	_, err := f.file.Write(f.buf)
	if err != nil {
		err = fmt.Errorf("write log file: %w", err)
	}
	f.writeErr = err
	if cap(f.buf) > 4*fileBufferSize {
		f.buf = nil // one huge line: do not keep its buffer
	} else {
		f.buf = f.buf[:0]
	}
}

// Check reports whether logging to files works: today's file is open and
// still in place (it is reopened if it was removed), the directory accepts
// new files, and the last write succeeded. It backs the "logger" component of
// /health.
func (f *Files) Check() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return errors.New("log files closed")
	}
	f.flushLocked()
	f.rotateLocked()
	if f.openErr != nil {
		return f.openErr
	}
	if !f.inPlaceLocked() {
		// Removed or replaced behind our back: writes would vanish. Reopen.
		if err := f.openLocked(f.now().UTC()); err != nil {
			return err
		}
		f.writeErr = nil
	}
	if err := probeDir(f.dir); err != nil {
		return err
	}
	return f.writeErr
}

// Path returns the path of the file currently written to ("" after a failed open).
func (f *Files) Path() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.path
}

// Close closes the current file; later writes fail with os.ErrClosed.
func (f *Files) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	f.flushLocked()
	f.closed = true
	if f.file == nil {
		return nil
	}
	if err := f.file.Close(); err != nil {
		return fmt.Errorf("close log file: %w", err)
	}
	return nil
}

// rotateLocked switches to today's file when the date has changed (or the
// last open failed) and then sweeps expired files. On failure it keeps the
// old file, so lines are not lost, and records the error for Check.
func (f *Files) rotateLocked() {
	t := f.now().UTC()
	if f.file != nil && f.openErr == nil && dayKey(t) == f.day {
		return
	}
	f.flushLocked() // lines logged before the switch belong to the old day's file
	if err := f.openLocked(t); err != nil {
		return
	}
	// A failed sweep only delays deletion until the next day switch or start;
	// there is no logger to report it to from inside the logger's writer.
	_, _ = f.sweepLocked(t)
}

// openLocked opens the file for t's date and makes it current.
func (f *Files) openLocked(t time.Time) error {
	path := filepath.Join(f.dir, fileName(t))
	file, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		f.openErr = fmt.Errorf("open log file in %q: %w", f.dir, err)
		return f.openErr
	}
	if f.file != nil {
		_ = f.file.Close() // the buffer was flushed into it by the caller
	}
	f.file, f.path, f.day, f.openErr = file, path, dayKey(t), nil
	return nil
}

// inPlaceLocked reports whether the open file is still the one at f.path.
func (f *Files) inPlaceLocked() bool {
	if f.file == nil {
		return false
	}
	onDisk, err := os.Stat(f.path)
	if err != nil {
		return false
	}
	open, err := f.file.Stat()
	return err == nil && os.SameFile(onDisk, open)
}

// sweepLocked deletes claude-relay-YYYY-MM-DD.log files dated more than
// retention days before t's date. Other files are never touched.
func (f *Files) sweepLocked(t time.Time) ([]string, error) {
	if f.retention < 0 {
		return nil, nil
	}
	entries, err := os.ReadDir(f.dir)
	if err != nil {
		return nil, fmt.Errorf("list log dir %q: %w", f.dir, err)
	}
	today := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	cutoff := today.AddDate(0, 0, -f.retention)
	var removed []string
	var errs []error
	for _, e := range entries {
		day, ok := parseFileName(e.Name())
		if !ok || !e.Type().IsRegular() || !day.Before(cutoff) {
			continue
		}
		p := filepath.Join(f.dir, e.Name())
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove expired log file: %w", err))
			continue
		}
		removed = append(removed, p)
	}
	return removed, errors.Join(errs...)
}

// probeDir checks that a new file can be created in dir.
func probeDir(dir string) error {
	p, err := os.CreateTemp(dir, ".claude-relay-write-check-*")
	if err != nil {
		return fmt.Errorf("log dir %q not writable: %w", dir, err)
	}
	name := p.Name()
	_ = p.Close()
	if err := os.Remove(name); err != nil {
		return fmt.Errorf("log dir %q: remove write check: %w", dir, err)
	}
	return nil
}

func fileName(t time.Time) string {
	return filePrefix + t.UTC().Format(dayLayout) + fileSuffix
}

// parseFileName returns the date of a claude-relay-YYYY-MM-DD.log name.
func parseFileName(name string) (time.Time, bool) {
	if len(name) != len(filePrefix)+len(dayLayout)+len(fileSuffix) ||
		!strings.HasPrefix(name, filePrefix) || !strings.HasSuffix(name, fileSuffix) {
		return time.Time{}, false
	}
	day, err := time.Parse(dayLayout, name[len(filePrefix):len(filePrefix)+len(dayLayout)])
	return day, err == nil
}

func dayKey(t time.Time) int {
	y, m, d := t.Date()
	return y*10000 + int(m)*100 + d
}
