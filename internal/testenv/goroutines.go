package testenv

import (
	"fmt"
	"net/http"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// IdleCloser is anything holding idle keep-alive connections, such as an
// *http.Client or *http.Transport.
type IdleCloser interface{ CloseIdleConnections() }

// GoroutineSlack is how many goroutines more than at the start
// CheckGoroutines tolerates once its wait is over. None: goroutines that
// come and go on their own (a connection's, a pool's dialer) have the
// whole wait to go, and a single leaked goroutine per failed request is
// exactly what the check is for.
const GoroutineSlack = 0

// goroutineWait bounds how long CheckGoroutines waits for the goroutines
// to go; a variable so that this package's tests can shorten it.
var goroutineWait = 5 * time.Second

// CheckGoroutines records the goroutines running now (once their number
// has settled, idle connections closed) and returns the check to call
// once the fault has cleared. The check closes idle connections of
// http.DefaultTransport and of idle, and waits up to five seconds until,
// for every kind of goroutine (the same stack, whatever its ids and
// arguments), no more run than at the start. Otherwise t fails with the
// stacks of the goroutines in excess, then every goroutine's stack.
//
// Comparing kinds rather than totals, a leak is found even when the fault
// also stopped goroutines (an IdP that was closed, say). Call it once the
// test's long-lived parts (servers, clients) are up.
func CheckGoroutines(t testing.TB, idle ...IdleCloser) (check func()) {
	t.Helper()
	closeIdle := func() {
		if tr, ok := http.DefaultTransport.(*http.Transport); ok {
			tr.CloseIdleConnections()
		}
		for _, c := range idle {
			c.CloseIdleConnections()
		}
	}
	closeIdle()
	settleGoroutines()
	before := countKinds(goroutineStacks())
	return func() {
		t.Helper()
		deadline := time.Now().Add(goroutineWait)
		for {
			after := goroutineStacks()
			excess, report := newGoroutines(before, after)
			if excess <= GoroutineSlack {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("goroutine leak: %d goroutines more than before the fault, %v after it cleared (slack %d):\n%s",
					excess, goroutineWait, GoroutineSlack, report)
				t.Logf("all goroutines:\n%s", after)
				return
			}
			closeIdle()
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// settleGoroutines waits until the number of goroutines stops falling
// (those of just-closed connections take a moment to exit), or a second.
func settleGoroutines() {
	n := runtime.NumGoroutine()
	for range 50 {
		time.Sleep(20 * time.Millisecond)
		m := runtime.NumGoroutine()
		if m >= n {
			return
		}
		n = m
	}
}

// goroutineStacks is runtime.Stack of every goroutine.
func goroutineStacks() string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return string(buf[:n])
		}
		if len(buf) >= 64<<20 {
			return string(buf[:n])
		}
		buf = make([]byte, 2*len(buf))
	}
}

var (
	stackOffset = regexp.MustCompile(` \+0x[0-9a-f]+$`)
	stackArgs   = regexp.MustCompile(`\([^()]*\)$`) // arguments: 0x1?, {0x2, 0x3}, ...
	createdBy   = regexp.MustCompile(` in goroutine \d+$`)
)

// stackKey is a goroutine's stack without what differs between two
// goroutines doing the same thing: ids, state, arguments, offsets.
func stackKey(g string) string {
	lines := strings.Split(strings.TrimSpace(g), "\n")
	if len(lines) == 0 {
		return ""
	}
	var key []string // the header (id, state, wait time) is left out
	for _, l := range lines[1:] {
		l = strings.TrimSpace(l)
		l = stackOffset.ReplaceAllString(l, "")
		l = stackArgs.ReplaceAllString(l, "(...)")
		l = createdBy.ReplaceAllString(l, "")
		key = append(key, l)
	}
	return strings.Join(key, "\n")
}

// goroutine is one kind of goroutine: how many run, and one of them.
type goroutine struct {
	n       int
	example string
}

// countKinds groups a runtime.Stack dump by stackKey, leaving out the
// goroutine taking it.
func countKinds(dump string) map[string]*goroutine {
	kinds := map[string]*goroutine{}
	for _, g := range strings.Split(strings.TrimSpace(dump), "\n\n") {
		if strings.Contains(g, "testenv.goroutineStacks(") {
			continue
		}
		k := stackKey(g)
		if kinds[k] == nil {
			kinds[k] = &goroutine{example: g}
		}
		kinds[k].n++
	}
	return kinds
}

// newGoroutines counts the goroutines of after in excess of before, kind
// by kind, and lists those kinds, most numerous first, each with an
// example.
func newGoroutines(before map[string]*goroutine, afterDump string) (int, string) {
	type kind struct {
		extra   int
		example string
	}
	var kinds []kind
	excess := 0
	for k, g := range countKinds(afterDump) {
		n := 0
		if b := before[k]; b != nil {
			n = b.n
		}
		if g.n > n {
			kinds = append(kinds, kind{g.n - n, g.example})
			excess += g.n - n
		}
	}
	slices.SortFunc(kinds, func(a, b kind) int { return b.extra - a.extra })
	var sb strings.Builder
	for _, k := range kinds {
		fmt.Fprintf(&sb, "+%d like:\n%s\n\n", k.extra, k.example)
	}
	return excess, sb.String()
}
