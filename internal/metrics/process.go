package metrics

import (
	"os"
	"runtime"
	rtmetrics "runtime/metrics"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// RegisterProcess adds the standard process and Go runtime metrics, under the names
// Prometheus's own client uses so existing dashboards and alerts apply: CPU seconds,
// resident memory, open and maximum file descriptors, start time, goroutines and heap.
// The /proc-based ones are registered only where /proc/self exists (Linux).
func RegisterProcess(r *Registry, start time.Time) {
	r.GaugeFunc("process_start_time_seconds", "Start time of the process since the Unix epoch, in seconds.", func() float64 {
		return float64(start.UnixNano()) / 1e9
	})
	r.GaugeFunc("go_goroutines", "Number of goroutines that currently exist.", func() float64 {
		return float64(runtime.NumGoroutine())
	})
	r.GaugeFunc("go_memstats_heap_alloc_bytes", "Bytes of allocated heap objects.", func() float64 {
		sample := []rtmetrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		rtmetrics.Read(sample)
		if sample[0].Value.Kind() != rtmetrics.KindUint64 {
			return 0
		}
		return float64(sample[0].Value.Uint64())
	})
	r.GaugeFunc("process_max_fds", "Maximum number of open file descriptors (RLIMIT_NOFILE).", func() float64 {
		var lim syscall.Rlimit
		if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return 0
		}
		return float64(lim.Cur)
	})
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		return
	}
	r.CounterFunc("process_cpu_seconds_total", "Total user and system CPU time spent, in seconds.", func() float64 {
		utime, stime, _ := procStat()
		return float64(utime+stime) / clockTicks
	})
	r.GaugeFunc("process_resident_memory_bytes", "Resident memory size, in bytes.", func() float64 {
		_, _, rss := procStat()
		return float64(rss * int64(os.Getpagesize()))
	})
	r.GaugeFunc("process_open_fds", "Number of open file descriptors; alert well before process_max_fds.", func() float64 {
		d, err := os.Open("/proc/self/fd")
		if err != nil {
			return 0
		}
		defer d.Close()
		names, _ := d.Readdirnames(-1)
		return float64(len(names) - 1) // without the descriptor reading the directory
	})
}

// clockTicks is USER_HZ, 100 on every Linux platform Go supports.
const clockTicks = 100

// procStat returns utime and stime (in clock ticks) and rss (in pages) from /proc/self/stat.
func procStat() (utime, stime, rss int64) {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0, 0, 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 > len(s) {
		return 0, 0, 0
	}
	// After "pid (comm) ": state is field 3, utime 14, stime 15, rss 24.
	f := strings.Fields(s[i+2:])
	if len(f) < 22 {
		return 0, 0, 0
	}
	utime, _ = strconv.ParseInt(f[11], 10, 64)
	stime, _ = strconv.ParseInt(f[12], 10, 64)
	rss, _ = strconv.ParseInt(f[21], 10, 64)
	return utime, stime, rss
}
