package topaz

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/oidcauth/oidcauth"
	"github.com/oidcauth/oidcauth/internal/testenv"
)

// azRequest is one request of the load on the authorizer and its outcome.
type azRequest struct {
	user       string // "" for anonymous
	want       int    // the policy's answer: 200, 403 (bob) or 401 (anonymous)
	start, end time.Time
	status     int
	panicked   any
	since      time.Time // when the fault began, for String
}

// startAzLoad starts workers goroutines asking for a document as alice
// (allowed), bob (denied) and anonymous in turn, until Stop.
func startAzLoad(app http.Handler, workers int) *testenv.Load[azRequest] {
	callers := []struct {
		user string
		want int
	}{{"user-alice", 200}, {"user-bob", 403}, {"", 401}}
	return testenv.StartLoad(workers, func(_, i int) azRequest {
		c := callers[i%len(callers)]
		s := azRequest{user: c.user, want: c.want, start: time.Now()}
		r := httptest.NewRequest("GET", "/documents/1", nil)
		r.Header.Set("Accept", "application/json")
		if c.user != "" {
			r.Header.Set("X-Test-User", c.user)
		}
		rec := httptest.NewRecorder()
		func() {
			defer func() { s.panicked = recover() }()
			app.ServeHTTP(rec, r)
		}()
		s.status, s.end = rec.Code, time.Now()
		return s
	})
}

func (s azRequest) String() string {
	who := s.user
	if who == "" {
		who = "anonymous"
	}
	if s.panicked != nil {
		return fmt.Sprintf("%s: panic: %v", who, s.panicked)
	}
	return fmt.Sprintf("%s: %d (the policy says %d; sent %v after the kill, answered in %v)",
		who, s.status, s.want, s.start.Sub(s.since).Round(time.Millisecond), s.end.Sub(s.start).Round(time.Millisecond))
}

// The authorizer is killed while requests pour in, then started again on
// the same address. With the decision cache off, every request asks: none
// may be let through while it is down, and decisions resume once it is
// back, through the same client.
func TestFaultAuthorizerKilledUnderLoad(t *testing.T) {
	e := newEnv(t, func(c *oidcauth.AuthorizerConfig) {
		c.CacheTTL = oidcauth.NoDecisionCache
		c.Timeout = time.Second
	})
	e.expect(e.do("GET", "/documents/1", "user-alice"), 200) // connected
	addr := e.topaz.Addr()

	check := testenv.CheckGoroutines(t)
	l := startAzLoad(e.app, 8)
	defer l.Stop()
	time.Sleep(time.Second)
	killing := time.Now()
	e.topaz.Stop()
	killed := time.Now()
	time.Sleep(1500 * time.Millisecond)

	restarting := time.Now()
	opts := standInOptions
	opts.Addr = addr
	var back *Server
	var err error
	for range 50 { // the port was just freed
		if back, err = Start(opts); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("restarting the authorizer on %s: %v", addr, err)
	}
	t.Cleanup(back.Stop)
	var recovered time.Time
	for deadline := time.Now().Add(20 * time.Second); recovered.IsZero(); time.Sleep(50 * time.Millisecond) {
		if back.Calls() > 0 && e.do("GET", "/documents/1", "user-alice").Code == 200 {
			recovered = time.Now()
		} else if time.Now().After(deadline) {
			t.Fatalf("no decision within 20s of the restart; logs:\n%s", e.logs)
		}
	}
	time.Sleep(time.Second)
	all := l.Stop()

	var before, during, after int
	var bad []string
	for _, s := range all {
		s.since = killing
		switch {
		case s.panicked != nil:
			bad = append(bad, s.String())
			continue
		case s.status != s.want && s.status != http.StatusServiceUnavailable:
			bad = append(bad, s.String()+": neither the policy's answer nor 503")
		}
		switch {
		case s.end.Before(killing):
			before++
			if s.status != s.want {
				bad = append(bad, s.String()+": before the kill")
			}
		case s.start.After(killed) && s.end.Before(restarting):
			during++
			if s.status != http.StatusServiceUnavailable {
				bad = append(bad, s.String()+": the authorizer is down, want 503")
			}
		case s.start.After(recovered):
			after++
			if s.status != s.want {
				bad = append(bad, s.String()+": the authorizer is back")
			}
		}
	}
	t.Logf("%d requests: %d before the kill, %d during the outage, %d after recovery (%v after the restart)",
		len(all), before, during, after, recovered.Sub(restarting).Round(time.Millisecond))
	if len(bad) > 0 {
		t.Errorf("%d wrong answers, e.g.:\n%s", len(bad), strings.Join(bad[:min(len(bad), 15)], "\n"))
	}
	if before < 20 || during < 20 || after < 20 {
		t.Errorf("too little load in a phase: %d before, %d during, %d after", before, during, after)
	}
	if !strings.Contains(e.logs.String(), "code=authorizer_unavailable") {
		t.Errorf("the outage was not logged:\n%.2000s", e.logs)
	}
	check()
}
