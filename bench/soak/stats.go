package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"
)

// maxSamples bounds the latencies kept per step (a long run keeps every
// step's first ones; the counts stay exact).
const maxSamples = 1 << 20

// maxFailureTexts bounds the failure messages kept; all are counted.
const maxFailureTexts = 30

// recorder counts what the workers saw: each request by its step (login,
// browse, logout or a hostile kind) and status, its latency, and every
// failed check.
type recorder struct {
	logins, logouts atomic.Int64

	mu        sync.Mutex
	outcomes  map[string]map[string]int64 // step → status (or "error") → count
	latencies map[string][]time.Duration  // step → samples
	failures  int64
	texts     []string
	kinds     map[string]int64 // failure kind → count
}

func newRecorder() *recorder {
	r := &recorder{}
	r.reset()
	return r
}

func (r *recorder) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.outcomes = map[string]map[string]int64{}
	r.latencies = map[string][]time.Duration{}
	r.failures, r.texts, r.kinds = 0, nil, map[string]int64{}
	r.logins.Store(0)
	r.logouts.Store(0)
}

// request records one request of step: its status (0 for a transport
// error) and how long it took.
func (r *recorder) request(step string, status int, d time.Duration) {
	outcome := strconv.Itoa(status)
	if status == 0 {
		outcome = "error"
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.outcomes[step] == nil {
		r.outcomes[step] = map[string]int64{}
	}
	r.outcomes[step][outcome]++
	if len(r.latencies[step]) < maxSamples {
		r.latencies[step] = append(r.latencies[step], d)
	}
}

// fail records a failed check of the given kind.
func (r *recorder) fail(kind, format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failures++
	r.kinds[kind]++
	if len(r.texts) < maxFailureTexts {
		r.texts = append(r.texts, kind+": "+fmt.Sprintf(format, args...))
	}
}

func (r *recorder) failureCount() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failures
}

func (r *recorder) failureText() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var kinds []string
	for _, k := range slices.Sorted(maps.Keys(r.kinds)) {
		kinds = append(kinds, fmt.Sprintf("%s ×%d", k, r.kinds[k]))
	}
	text := "  by kind: " + strings.Join(kinds, ", ") + "\n  " + strings.Join(r.texts, "\n  ")
	if r.failures > int64(len(r.texts)) {
		text += fmt.Sprintf("\n  ... and %d more", r.failures-int64(len(r.texts)))
	}
	return text
}

func (r *recorder) total() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var n int64
	for _, byStatus := range r.outcomes {
		for _, c := range byStatus {
			n += c
		}
	}
	return n
}

// percentile is the p-th percentile (0..100) of d, nearest rank.
func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(p/100*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// report prints the requests by step and status, with latencies.
func (r *recorder) report(w io.Writer, elapsed time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	statuses := map[string]bool{}
	var all []time.Duration
	var total int64
	for _, byStatus := range r.outcomes {
		for s, n := range byStatus {
			statuses[s] = true
			total += n
		}
	}
	cols := slices.Sorted(maps.Keys(statuses))
	fmt.Fprintf(w, "\n%d requests in %v (%.0f/s), %d logins, %d logouts\n",
		total, elapsed.Round(time.Second), float64(total)/elapsed.Seconds(), r.logins.Load(), r.logouts.Load())
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "step\trequests\t%s\tp50\tp99\t\n", strings.Join(cols, "\t"))
	totals := map[string]int64{}
	for _, step := range slices.Sorted(maps.Keys(r.outcomes)) {
		var n int64
		var cells []string
		for _, c := range cols {
			v := r.outcomes[step][c]
			n += v
			totals[c] += v
			cells = append(cells, count(v))
		}
		lat := r.latencies[step]
		all = append(all, lat...)
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t\n", step, n, strings.Join(cells, "\t"), ms(percentile(lat, 50)), ms(percentile(lat, 99)))
	}
	var cells []string
	for _, c := range cols {
		cells = append(cells, count(totals[c]))
	}
	fmt.Fprintf(tw, "all\t%d\t%s\t%s\t%s\t\n", total, strings.Join(cells, "\t"), ms(percentile(all, 50)), ms(percentile(all, 99)))
	tw.Flush()
	fmt.Fprintf(w, "columns: HTTP status (error: no response); p50/p99: latency of one request. %d failed checks.\n", r.failures)
}

func count(n int64) string {
	if n == 0 {
		return "·"
	}
	return strconv.FormatInt(n, 10)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond)) }
