package oidcauth

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oidcauth/oidcauth/internal/devidp"
	"github.com/oidcauth/oidcauth/internal/testenv"
)

// Fault injection: the IdP, its token and JWKS endpoints and Redis fail
// while the app runs (the authorizer's faults are in integration/topaz).
// Each test checks what the user gets during the fault, that service
// resumes once it clears, and that no goroutine is left behind.

// deadAddr is a loopback address where nothing listens (for now).
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestFaultIdPDownAtStart(t *testing.T) {
	t.Run("never comes up: a clear error", func(t *testing.T) {
		check := testenv.CheckGoroutines(t)
		cfg := Config{Issuer: "http://" + deadAddr(t), ClientID: "a", ClientSecret: "b", RedirectURI: "http://localhost/cb", SessionSecret: testSecret}
		ctx, cancel := context.WithTimeout(context.Background(), 1200*time.Millisecond)
		defer cancel()
		start := time.Now()
		auth, err := New(ctx, cfg, WithLogger(newTextLogger(io.Discard)))
		if auth != nil || err == nil {
			t.Fatal("New succeeded without an IdP")
		}
		for _, want := range []string{cfg.Issuer, "connection refused", "attempts"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("the error does not say %q: %v", want, err)
			}
		}
		if d := time.Since(start); d > 2500*time.Millisecond {
			t.Errorf("New took %v to give up on a 1.2s context", d)
		}
		check()
	})

	t.Run("comes up during the retries: the app starts and logs in", func(t *testing.T) {
		check := testenv.CheckGoroutines(t)
		addr := deadAddr(t)
		app := httptest.NewUnstartedServer(nil)
		reg := devidp.Client{ID: "test-app", Secret: "test-client-secret", RedirectURIs: []string{"http://" + app.Listener.Addr().String() + "/auth/callback"}}
		up := make(chan *devidp.Provider, 1)
		go func() {
			time.Sleep(700 * time.Millisecond) // New has failed and retried by now
			idp, err := devidp.Listen(addr, devidp.Options{Clients: []devidp.Client{reg}, Logger: newTextLogger(io.Discard)})
			if err != nil {
				t.Errorf("starting the IdP late: %v", err)
			}
			up <- idp
		}()
		logs := new(strings.Builder)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		auth, err := New(ctx, Config{Issuer: "http://" + addr, ClientID: reg.ID, ClientSecret: reg.Secret, RedirectURI: reg.RedirectURIs[0], SessionSecret: testSecret},
			WithLogger(newTextLogger(logs)))
		idp := <-up
		if idp == nil {
			app.Close()
			t.FailNow()
		}
		defer idp.Close()
		if err != nil {
			app.Close()
			t.Fatalf("New did not wait for the IdP: %v", err)
		}
		if !strings.Contains(logs.String(), "retrying") {
			t.Errorf("New did not retry:\n%s", logs)
		}
		app.Config.Handler = auth.Handler(testRoutes(auth))
		app.Start()
		h := &harness{t: t, idp: idp, auth: auth, app: app, client: newBrowser(), logs: logs, reg: reg}
		if resp := h.login("alice"); resp.StatusCode != http.StatusFound {
			t.Fatalf("login after a late IdP: %d\n%s", resp.StatusCode, logs)
		}
		h.mustBe("user-alice")
		app.Close()
		idp.Close()
		check()
	})
}

// blackhole accepts TCP connections on addr and never reads or answers:
// a host that is up but whose service hangs.
type blackhole struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
	done  chan struct{}
}

func newBlackhole(t *testing.T, addr string) *blackhole {
	t.Helper()
	var ln net.Listener
	var err error
	for range 50 { // the port was just freed
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	b := &blackhole{ln: ln, done: make(chan struct{})}
	go func() {
		defer close(b.done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.mu.Lock()
			b.conns = append(b.conns, c)
			b.mu.Unlock()
		}
	}()
	t.Cleanup(b.Close)
	return b
}

func (b *blackhole) Close() {
	b.ln.Close()
	<-b.done
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range b.conns {
		c.Close()
	}
	b.conns = nil
}

// mustFailLogin checks the callback's answer to an IdP that is down: a
// 502/503 page of the right type, no session cookie, and still no user.
func mustFailLogin(t *testing.T, h *harness, resp *http.Response, html bool, code string) {
	t.Helper()
	body := rBody(resp)
	if resp.StatusCode != http.StatusBadGateway && resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("callback: %d %q, want 502 or 503\n%s", resp.StatusCode, body, h.logs)
	}
	ct := resp.Header.Get("Content-Type")
	if html && (!strings.HasPrefix(ct, "text/html") || !strings.Contains(body, "identity provider")) {
		t.Errorf("a browser got %q: %q", ct, body)
	}
	if !html && !strings.Contains(body, `"error":"`+code+`"`) {
		t.Errorf("body %q, want the error %s", body, code)
	}
	if ck := setCookieFor(resp, h.auth.cfg.SessionCookieName); ck != nil && ck.Value != "" {
		t.Errorf("a failed login set a session cookie")
	}
	h.mustBeAnonymous()
}

func TestFaultIdPDownDuringLogin(t *testing.T) {
	t.Run("closed between the login and the callback", func(t *testing.T) {
		h := newHarness(t) // the default 10-s IdP timeout: a refused connection must not wait for it
		check := testenv.CheckGoroutines(t, h.client)
		cb := h.idpLogin(h.startLogin("/private"), "alice")
		h.idp.Close()
		start := time.Now()
		resp := h.get(cb, "Accept", "text/html")
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("the callback took %v with the IdP down", d)
		}
		mustFailLogin(t, h, resp, true, "")
		check()
	})

	t.Run("unreachable: accepts connections, never answers", func(t *testing.T) {
		const timeout = 500 * time.Millisecond
		h := newHarness(t, harnessOption{opts: []Option{WithHTTPClient(&http.Client{Timeout: timeout})}})
		check := testenv.CheckGoroutines(t, h.client)
		cb := h.idpLogin(h.startLogin("/private"), "alice")
		h.idp.Close()
		// No kept-alive connection to the old server may answer for the
		// black hole: every request to the IdP must dial it.
		http.DefaultTransport.(*http.Transport).CloseIdleConnections()
		hole := newBlackhole(t, strings.TrimPrefix(h.idp.Issuer(), "http://"))
		start := time.Now()
		resp := h.get(cb)
		if d := time.Since(start); d < timeout-50*time.Millisecond || d > timeout+1500*time.Millisecond {
			t.Errorf("the callback took %v with a %v timeout", d, timeout)
		}
		mustFailLogin(t, h, resp, false, "idp_timeout")
		hole.Close()
		check()
	})

	t.Run("goes down during the code exchange", func(t *testing.T) {
		h := newHarness(t)
		check := testenv.CheckGoroutines(t, h.client)
		h.idp.SetMisbehavior(devidp.Misbehavior{TokenDelay: time.Minute})
		cb := h.idpLogin(h.startLogin("/private"), "alice")
		type result struct {
			resp *http.Response
			err  error
		}
		done := make(chan result, 1)
		go func() {
			req, _ := http.NewRequest("GET", cb, nil)
			req.Header.Set("Accept", "application/json")
			resp, err := h.client.Do(req)
			if err == nil {
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				resp.Body = io.NopCloser(bytes.NewReader(body))
			}
			done <- result{resp, err}
		}()
		for deadline := time.Now().Add(5 * time.Second); h.idp.Stats().TokenRequests == 0; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the callback never reached the token endpoint")
			}
		}
		start := time.Now()
		h.idp.Close()
		select {
		case r := <-done:
			if r.err != nil {
				t.Fatalf("callback: %v", r.err)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("the callback answered %v after the IdP went down", d)
			}
			mustFailLogin(t, h, r.resp, false, "idp_unavailable")
		case <-time.After(15 * time.Second):
			t.Fatal("the callback hangs with the IdP gone")
		}
		check()
	})
}

func TestFaultTokenEndpointSlowerThanTimeout(t *testing.T) {
	if DefaultHTTPTimeout != 10*time.Second {
		t.Errorf("DefaultHTTPTimeout = %v, want the documented 10s", DefaultHTTPTimeout)
	}
	const timeout = 400 * time.Millisecond
	h := newHarness(t, harnessOption{opts: []Option{WithHTTPClient(&http.Client{Timeout: timeout})}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	def, err := New(ctx, h.auth.cfg, WithLogger(newTextLogger(io.Discard)))
	if err != nil {
		t.Fatal(err)
	}
	if def.client.Timeout != DefaultHTTPTimeout {
		t.Errorf("without WithHTTPClient, calls to the IdP time out after %v, want DefaultHTTPTimeout", def.client.Timeout)
	}

	check := testenv.CheckGoroutines(t, h.client)
	h.idp.SetMisbehavior(devidp.Misbehavior{TokenDelay: 5 * time.Second})
	cb := h.idpLogin(h.startLogin("/private"), "alice")
	before := h.idp.Stats().TokenRequests
	start := time.Now()
	resp := h.get(cb)
	d := time.Since(start)
	if h.idp.Stats().TokenRequests != before+1 {
		t.Fatal("the callback did not call the token endpoint")
	}
	mustFailLogin(t, h, resp, false, "idp_timeout")
	if d < timeout-50*time.Millisecond || d > timeout+time.Second {
		t.Errorf("the callback failed after %v with a %v timeout", d, timeout)
	}

	// The endpoint is fast again: logins work, with the same Auth.
	h.idp.SetMisbehavior(devidp.Misbehavior{})
	h.client = newBrowser()
	if resp := h.login("alice"); resp.StatusCode != http.StatusFound {
		t.Fatalf("login once the IdP is fast again: %d", resp.StatusCode)
	}
	h.mustBe("user-alice")
	check()
}

func TestFaultJWKSFailing(t *testing.T) {
	h := newHarness(t)
	if resp := h.login("alice"); resp.StatusCode != http.StatusFound { // the keys are cached now
		t.Fatalf("login: %d", resp.StatusCode)
	}
	alice := h.client
	check := testenv.CheckGoroutines(t, alice)

	// New ID tokens are signed with a key the app has not seen, and the
	// JWKS endpoint fails: the key cannot be fetched.
	h.idp.SetMisbehavior(devidp.Misbehavior{JWKSStatus: http.StatusInternalServerError})
	if err := h.idp.RotateKey(false); err != nil {
		t.Fatal(err)
	}
	for _, html := range []bool{true, false} {
		h.later(minKeyRefresh) // each attempt may fetch the keys again
		h.client = newBrowser()
		fetches := h.idp.Stats().JWKSFetches
		accept := "application/json"
		if html {
			accept = "text/html"
		}
		resp := h.get(h.idpLogin(h.startLogin("/private"), "bob"), "Accept", accept)
		body := rBody(resp)
		if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "idp_keys_unavailable") && !html {
			t.Fatalf("login with the JWKS failing: %d %q, want 502 idp_keys_unavailable (the IdP failed, not the token)", resp.StatusCode, body)
		}
		if ct := resp.Header.Get("Content-Type"); html != strings.HasPrefix(ct, "text/html") {
			t.Errorf("html %v: Content-Type %q", html, ct)
		}
		if h.idp.Stats().JWKSFetches == fetches {
			t.Error("the app did not try to fetch the new key")
		}
		if ck := setCookieFor(resp, h.auth.cfg.SessionCookieName); ck != nil && ck.Value != "" {
			t.Error("a login whose ID token could not be verified set a session cookie")
		}
		h.mustBeAnonymous()
		t.Logf("login refused with %d (html %v): %.120s", resp.StatusCode, html, body)
	}

	// Existing sessions need no keys: they keep working.
	h.client = alice
	h.mustBe("user-alice")
	if resp := h.get("/private"); resp.StatusCode != http.StatusOK {
		t.Fatalf("alice's /private with the JWKS failing: %d", resp.StatusCode)
	}

	// The endpoint recovers: the new key is fetched and logins work.
	h.idp.SetMisbehavior(devidp.Misbehavior{})
	h.later(minKeyRefresh)
	h.client = newBrowser()
	if resp := h.login("bob"); resp.StatusCode != http.StatusFound {
		t.Fatalf("login once the JWKS is back: %d\n%s", resp.StatusCode, h.logs)
	}
	h.mustBe("user-bob")
	check()
}

// faultApp serves a's routes as the examples do: GET /private behind
// RequireUser ("private for <sub>"), and GET /me answering 200 with the
// user, 401 without one, and 503 when the session store cannot answer.
// Its http.Server log (where a handler's panic would be reported) is
// returned.
func faultApp(t *testing.T, a *Auth) (*httptest.Server, *testenv.SyncBuffer) {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("GET /private", a.RequireUser(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, _ := UserFrom(r.Context())
		io.WriteString(w, "private for "+u.Subject)
	})))
	mux.HandleFunc("GET /me", func(w http.ResponseWriter, r *http.Request) {
		u, err := a.User(r)
		switch {
		case err != nil:
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "session_store_unavailable"})
		case u == nil:
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "unauthenticated"})
		default:
			writeJSON(w, http.StatusOK, u)
		}
	})
	srv := httptest.NewUnstartedServer(a.Handler(mux))
	logs := new(testenv.SyncBuffer)
	srv.Config.ErrorLog = log.New(logs, "", 0)
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, logs
}

// caller is one kind of client of the load: a user's session cookie (sub
// is whose), or none or a forged one (sub empty: a stranger).
type caller struct {
	name, cookie, sub string
}

// sent is one request of the load and its outcome.
type sent struct {
	caller     *caller
	path       string
	start, end time.Time
	status     int
	body       string
	err        error
	since      time.Time // when the fault began, for String
}

// startLoad starts workers goroutines sending GET /private and GET /me as
// each of callers in turn, until Stop; every request is kept.
func startLoad(client *http.Client, base string, workers int, callers []*caller) *testenv.Load[sent] {
	paths := []string{"/private", "/me"}
	return testenv.StartLoad(workers, func(_, i int) sent {
		s := sent{caller: callers[i%len(callers)], path: paths[(i/len(callers))%len(paths)], start: time.Now()}
		req, _ := http.NewRequest("GET", base+s.path, nil)
		req.Header.Set("Accept", "application/json")
		if s.caller.cookie != "" {
			req.Header.Set("Cookie", s.caller.cookie)
		}
		resp, err := client.Do(req)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			s.status, s.body = resp.StatusCode, string(b)
		}
		s.err, s.end = err, time.Now()
		return s
	})
}

// rightUser reports whether a 200's body is for s's caller: a stranger
// gets none, a user only their own.
func (s sent) rightUser() bool {
	if s.caller.sub == "" {
		return false
	}
	if s.path == "/me" {
		var u User
		return json.Unmarshal([]byte(s.body), &u) == nil && u.Subject == s.caller.sub
	}
	return s.body == "private for "+s.caller.sub
}

func (s sent) String() string {
	when := fmt.Sprintf(" (sent %v after the kill, answered in %v)", s.start.Sub(s.since).Round(time.Millisecond), s.end.Sub(s.start).Round(time.Millisecond))
	if s.err != nil {
		return fmt.Sprintf("%s GET %s: %v%s", s.caller.name, s.path, s.err, when)
	}
	return fmt.Sprintf("%s GET %s: %d %.100q%s", s.caller.name, s.path, s.status, s.body, when)
}

func TestFaultRedisKilledUnderLoad(t *testing.T) {
	r := testenv.StartRedis(t, testenv.WithPersistence())
	h := redisHarness(t, r)
	h.login("alice")
	alice := &caller{"alice", rCookieHeader(h), "user-alice"}
	h.client = newBrowser()
	h.login("bob")
	bob := &caller{"bob", rCookieHeader(h), "user-bob"}
	// The id's first character changed: the tag no longer matches.
	id := strings.TrimPrefix(alice.cookie, h.auth.cfg.SessionCookieName+"=")
	forged := &caller{"forged cookie", h.auth.cfg.SessionCookieName + "=" + map[bool]string{true: "B", false: "A"}[id[0] == 'A'] + id[1:], ""}
	stranger := &caller{"no cookie", "", ""}
	app, serverLog := faultApp(t, h.auth)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	defer client.CloseIdleConnections()

	check := testenv.CheckGoroutines(t, client, h.client)
	l := startLoad(client, app.URL, 8, []*caller{alice, bob, stranger, forged})
	defer l.Stop()
	time.Sleep(time.Second)
	killing := time.Now()
	r.Kill()
	killed := time.Now()
	time.Sleep(2 * time.Second)
	restarting := time.Now()
	r.Restart() // the same port and data; the app is not touched
	waitForRecovery(t, func() bool {
		status, u := rMe(t, h, alice.cookie)
		return status == http.StatusOK && u.Subject == alice.sub
	})
	recovered := time.Now()
	time.Sleep(time.Second)
	all := l.Stop()

	var before, during, after, outage503 int
	var bad []string
	for _, s := range all {
		s.since = killing
		user := s.caller.sub != ""
		switch {
		case s.err != nil:
			bad = append(bad, s.String()+" (a panic or a hang?)")
			continue
		case s.status == http.StatusOK && !s.rightUser():
			bad = append(bad, s.String()+": a 200 for someone else")
		case !user && s.status != http.StatusUnauthorized:
			bad = append(bad, s.String()+": want 401 for a stranger, whatever Redis does")
		case user && s.status != http.StatusOK && s.status != http.StatusServiceUnavailable:
			bad = append(bad, s.String()+": want 200 or 503")
		}
		if !user {
			continue
		}
		switch {
		case s.end.Before(killing):
			before++
			if s.status != http.StatusOK {
				bad = append(bad, s.String()+": before the kill")
			}
		case s.start.After(killed) && s.end.Before(restarting):
			during++
			if s.status != http.StatusServiceUnavailable {
				bad = append(bad, s.String()+": Redis is down, want 503")
			}
		case s.start.After(recovered):
			after++
			if s.status != http.StatusOK {
				bad = append(bad, s.String()+": Redis is back with the session, want 200")
			}
		}
		if s.status == http.StatusServiceUnavailable {
			outage503++
		}
	}
	t.Logf("%d requests; of the users': %d before the kill, %d during the outage, %d after recovery (%v after the restart); %d 503s in all",
		len(all), before, during, after, recovered.Sub(restarting).Round(time.Millisecond), outage503)
	if len(bad) > 0 {
		t.Errorf("%d wrong answers, e.g.:\n%s", len(bad), strings.Join(bad[:min(len(bad), 15)], "\n"))
	}
	if before < 20 || during < 20 || after < 20 {
		t.Errorf("too little load in a phase: %d before, %d during, %d after", before, during, after)
	}
	if strings.Contains(serverLog.String(), "panic") {
		t.Errorf("the server logged a panic:\n%s", serverLog)
	}
	// Both sessions came back from Redis's persistence, not from a new login.
	for _, c := range []*caller{alice, bob} {
		if status, u := rMe(t, h, c.cookie); status != http.StatusOK || u.Subject != c.sub {
			t.Errorf("%s after the restart: %d %+v", c.name, status, u)
		}
	}
	client.CloseIdleConnections()
	check()
}
