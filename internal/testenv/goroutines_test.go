package testenv

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// recordingTB is a testing.TB whose failures are recorded, not reported.
type recordingTB struct {
	testing.TB
	mu     sync.Mutex
	errors []string
}

func (r *recordingTB) Helper() {}
func (r *recordingTB) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}
func (r *recordingTB) Logf(string, ...any) {}

func (r *recordingTB) failures() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.errors, "\n")
}

func shortWait(t *testing.T) {
	old := goroutineWait
	goroutineWait = 300 * time.Millisecond
	t.Cleanup(func() { goroutineWait = old })
}

// leakyWait blocks until release is closed: the leak the check must find.
func leakyWait(release chan struct{}) { <-release }

func TestCheckGoroutinesReportsALeak(t *testing.T) {
	shortWait(t)
	rec := &recordingTB{TB: t}
	check := CheckGoroutines(rec)
	release := make(chan struct{})
	for range GoroutineSlack + 2 {
		go leakyWait(release)
	}
	check()
	close(release)
	got := rec.failures()
	if !strings.Contains(got, "goroutine leak") || !strings.Contains(got, "testenv.leakyWait") ||
		!strings.Contains(got, fmt.Sprintf("+%d like:", GoroutineSlack+2)) {
		t.Fatalf("the leak was not reported with its stack:\n%s", got)
	}
}

// otherWait is another kind of goroutine than leakyWait.
func otherWait(release chan struct{}) { <-release }

// A fault that stops goroutines (an IdP closed) must not hide one leaked
// meanwhile: kinds are compared, not totals.
func TestCheckGoroutinesSeesALeakBehindGoroutinesThatEnded(t *testing.T) {
	shortWait(t)
	stopped := make(chan struct{})
	for range 3 {
		go otherWait(stopped)
	}
	rec := &recordingTB{TB: t}
	check := CheckGoroutines(rec)
	close(stopped) // three fewer...
	release := make(chan struct{})
	go leakyWait(release) // ...and one leaked
	check()
	close(release)
	if got := rec.failures(); !strings.Contains(got, "testenv.leakyWait") || !strings.Contains(got, "+1 like:") {
		t.Fatalf("the leak was not reported:\n%s", got)
	}
}

func TestCheckGoroutinesWaitsForGoroutinesToEnd(t *testing.T) {
	shortWait(t)
	rec := &recordingTB{TB: t}
	check := CheckGoroutines(rec)
	release := make(chan struct{})
	for range 10 {
		go leakyWait(release)
	}
	time.AfterFunc(100*time.Millisecond, func() { close(release) })
	check()
	if got := rec.failures(); got != "" {
		t.Fatalf("goroutines that ended were reported: %s", got)
	}
}

// Keep-alive connections left idle after a fault are not leaks: the check
// closes them, on the clients it is given and on http.DefaultTransport.
func TestCheckGoroutinesClosesIdleConnections(t *testing.T) {
	shortWait(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 10}}
	rec := &recordingTB{TB: t}
	check := CheckGoroutines(rec, client)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, c := range []*http.Client{client, http.DefaultClient} {
				resp, err := c.Get(srv.URL)
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	check()
	if got := rec.failures(); got != "" {
		t.Fatalf("idle connections were counted as a leak: %s", got)
	}
}

func TestStackKeyIgnoresIdsAndArguments(t *testing.T) {
	a := "goroutine 12 [chan receive, 3 minutes]:\nmain.f(0xc000010000, 0x2)\n\t/src/a.go:10 +0x1f\ncreated by main.g in goroutine 1\n\t/src/a.go:20 +0x2a"
	b := "goroutine 99 [chan receive]:\nmain.f(0xc000099999?, {0x5, 0x6}, ...)\n\t/src/a.go:10 +0x1f\ncreated by main.g in goroutine 7\n\t/src/a.go:20 +0x2a"
	if stackKey(a) != stackKey(b) {
		t.Fatalf("same code, different keys:\n%s\n--\n%s", stackKey(a), stackKey(b))
	}
	c := strings.Replace(b, "a.go:10", "a.go:11", 1)
	if stackKey(a) == stackKey(c) {
		t.Fatal("different code, same key")
	}
}
