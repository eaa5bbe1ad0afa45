package oidcauth

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/oidcauth/oidcauth/internal/testenv"
)

// redisHarness is a harness whose sessions live in r.
func redisHarness(t testing.TB, r *testenv.Redis, config ...func(*Config)) *harness {
	t.Helper()
	h := newHarness(t, harnessOption{config: func(c *Config) {
		c.RedisURL = r.URL()
		for _, f := range config {
			f(c)
		}
	}})
	rs, ok := h.auth.store.(*redisSessionStore)
	if !ok {
		t.Fatalf("REDIS_URL set, but the store is %T", h.auth.store)
	}
	t.Cleanup(func() { rs.client.Close() })
	return h
}

// redisTrips counts the round trips an Auth makes to Redis.
type redisTrips struct{ n atomic.Int64 }

func (c *redisTrips) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *redisTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !rHandshake(cmd) {
			c.n.Add(1)
		}
		return next(ctx, cmd)
	}
}
func (c *redisTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if len(cmds) > 0 && !rHandshake(cmds[len(cmds)-1]) {
			c.n.Add(1)
		}
		return next(ctx, cmds)
	}
}

// handshake reports whether cmd is part of opening a connection.
func rHandshake(cmd redis.Cmder) bool {
	switch cmd.Name() {
	case "hello", "auth", "select", "client", "ping":
		return true
	}
	return false
}

func rCountTrips(h *harness) *redisTrips {
	c := new(redisTrips)
	h.auth.store.(*redisSessionStore).client.AddHook(c)
	return c
}

// getWith requests path at h with exactly the given Cookie header (an old
// cookie replayed, say), as an API client or, with html, a browser.
func rGet(t testing.TB, h *harness, path, cookie string, html bool) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("GET", h.url(path), nil)
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	if html {
		req.Header.Set("Accept", "text/html")
	}
	client := &http.Client{Timeout: 20 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func rCookieHeader(h *harness) string {
	var parts []string
	for _, c := range h.sessionCookies() {
		parts = append(parts, c.Name+"="+c.Value)
	}
	return strings.Join(parts, "; ")
}

func rMe(t testing.TB, h *harness, cookie string) (int, User) {
	t.Helper()
	req, _ := http.NewRequest("GET", h.url("/me"), nil)
	req.Header.Set("Cookie", cookie)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var u User
	_ = json.NewDecoder(resp.Body).Decode(&u)
	return resp.StatusCode, u
}

func TestRedisSessionsSharedAcrossInstances(t *testing.T) {
	r := testenv.StartRedis(t)
	a := redisHarness(t, r)
	b := redisHarness(t, r)

	resp := a.login("alice")
	ck := setCookieFor(resp, a.auth.cfg.SessionCookieName)
	if resp.StatusCode != http.StatusFound || ck == nil {
		t.Fatalf("login: %d", resp.StatusCode)
	}
	// The cookie is the signed id, nothing more.
	if id, tag, ok := strings.Cut(ck.Value, "."); !ok || len(id) != 43 || len(tag) != 43 || !ck.HttpOnly || ck.MaxAge <= 0 {
		t.Fatalf("session cookie %+v", ck)
	}
	a.mustBe("user-alice")
	cookie := rCookieHeader(a)

	// Instance B, sharing only Redis (and the secret), sees the user.
	if status, u := rMe(t, b, cookie); status != http.StatusOK || u.Subject != "user-alice" || u.Email != "alice@example.com" {
		t.Fatalf("B: /me = %d %+v", status, u)
	}
	if resp := rGet(t, b, "/private", cookie, true); resp.StatusCode != http.StatusOK {
		t.Fatalf("B: /private = %d", resp.StatusCode)
	}

	// Nothing readable in Redis: not the ID token, not the e-mail.
	ctx := context.Background()
	raw := redis.NewClient(&redis.Options{Addr: r.Addr()})
	defer raw.Close()
	sess := sessionOf(t, a)
	keys := raw.Keys(ctx, "*").Val()
	if len(keys) == 0 {
		t.Fatal("no keys in Redis")
	}
	for _, k := range keys {
		dump := k + raw.Dump(ctx, k).Val()
		for _, secret := range []string{sess.IDToken[:40], sess.Email, sess.Subject, sess.SID, ck.Value[:43]} {
			if strings.Contains(dump, secret) {
				t.Errorf("Redis key %s shows %q", k, secret)
			}
		}
	}

	// Log out on B: A refuses the same cookie at once.
	logout := rGet(t, b, "/logout", cookie, true)
	if logout.StatusCode != http.StatusFound {
		t.Fatalf("B: /logout = %d", logout.StatusCode)
	}
	if status, _ := rMe(t, a, cookie); status != http.StatusUnauthorized {
		t.Fatalf("A after logout on B: /me = %d, want 401", status)
	}
	if resp := rGet(t, a, "/private", cookie, true); resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), "/login") {
		t.Fatalf("A after logout on B: /private = %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	if n := raw.DBSize(ctx).Val(); n != 0 {
		t.Errorf("%d keys left in Redis after logout: %v", n, raw.Keys(ctx, "*").Val())
	}
}

func TestRedisLoginReplacesTheOldSession(t *testing.T) {
	r := testenv.StartRedis(t)
	h := redisHarness(t, r)
	h.login("alice")
	old := rCookieHeader(h)
	h.login("bob") // same browser: a new id, the old one deleted
	h.mustBe("user-bob")
	if now := rCookieHeader(h); now == old {
		t.Fatal("the second login kept the session id")
	}
	if status, u := rMe(t, h, old); status != http.StatusUnauthorized {
		t.Fatalf("the replaced session still works: %d %+v", status, u)
	}
	h.get("/logout")
	h.mustBeAnonymous()
}

func TestRedisForgedCookieCostsNoLookup(t *testing.T) {
	r := testenv.StartRedis(t)
	h := redisHarness(t, r)
	h.login("alice")
	real := h.sessionCookies()[0].Value
	id, tag, _ := strings.Cut(real, ".")
	trips := rCountTrips(h)
	name := h.auth.cfg.SessionCookieName
	for _, forged := range []string{
		id,                                    // unsigned
		randomString(32) + "." + tag,          // another id with this tag
		id + "." + randomString(32),           // a made-up tag
		h.auth.sealer.Seal([]byte("x"), name), // a cookie-store value
		"",
	} {
		if status, _ := rMe(t, h, name+"="+forged); status != http.StatusUnauthorized {
			t.Fatalf("forged %q: /me = %d", forged, status)
		}
	}
	if n := trips.n.Load(); n != 0 {
		t.Fatalf("forged cookies cost %d Redis round trips", n)
	}
	// A real one costs exactly one.
	if status, _ := rMe(t, h, name+"="+real); status != http.StatusOK {
		t.Fatalf("real cookie: %d", status)
	}
	if n := trips.n.Load(); n != 1 {
		t.Fatalf("an authenticated request cost %d round trips, want 1", n)
	}
}

func TestRedisDownFailsClosedAndRecovers(t *testing.T) {
	r := testenv.StartRedis(t)
	h := redisHarness(t, r)
	h.login("alice")
	cookie := rCookieHeader(h)
	r.Kill()

	start := time.Now()
	for _, html := range []bool{true, false} {
		resp := rGet(t, h, "/private", cookie, html)
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("Redis down (html %v): /private = %d, want 503", html, resp.StatusCode)
		}
	}
	if status, _ := rMe(t, h, cookie); status != http.StatusUnauthorized {
		t.Fatalf("Redis down: /me = %d, want no user", status)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("failing took %v", d)
	}
	if resp := h.get("/private", "Accept", "application/json"); resp.StatusCode != http.StatusServiceUnavailable ||
		!strings.Contains(rBody(resp), "session_store_unavailable") {
		t.Fatalf("Redis down: %d", resp.StatusCode)
	}
	if !strings.Contains(h.logs.String(), "session_store_unavailable") {
		t.Error("the failure was not logged")
	}
	if n := strings.Count(h.logs.String(), "session store unavailable"); n != 1 {
		t.Errorf("a burst of store failures was logged %d times, want once", n)
	}
	// A login while Redis is down gets no session either.
	if resp := h.get(h.idpLogin(h.startLogin("/private"), "alice")); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("login with Redis down: %d", resp.StatusCode)
	}

	// Redis is back, empty (this one persists nothing): the old session is
	// gone, and logging in works again with the same Auth.
	r.Restart()
	waitForRecovery(t, func() bool { return rGet(t, h, "/private", cookie, true).StatusCode == http.StatusFound })
	h.login("alice")
	h.mustBe("user-alice")
}

func TestRedisRestartWithPersistenceKeepsSessions(t *testing.T) {
	r := testenv.StartRedis(t, testenv.WithPersistence())
	h := redisHarness(t, r)
	h.login("alice")
	cookie := rCookieHeader(h)
	r.Stop()
	if resp := rGet(t, h, "/private", cookie, true); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("Redis stopped: %d", resp.StatusCode)
	}
	r.Restart()
	waitForRecovery(t, func() bool { return rGet(t, h, "/private", cookie, true).StatusCode == http.StatusOK })
}

func TestRedisConcurrentRequestsOnOneSession(t *testing.T) {
	r := testenv.StartRedis(t)
	h := redisHarness(t, r)
	h.login("alice")
	cookie := rCookieHeader(h)
	trips := rCountTrips(h)
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 200}}
	defer client.CloseIdleConnections()
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("GET", h.url("/private"), nil)
			req.Header.Set("Cookie", cookie)
			resp, err := client.Do(req)
			if err != nil {
				errs <- err
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || string(body) != "private for Alice Liddell" {
				errs <- errors.New(resp.Status + " " + string(body))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := trips.n.Load(); got != n {
		t.Fatalf("%d requests made %d Redis round trips, want one each", n, got)
	}
}

func TestRedisExpiry(t *testing.T) {
	r := testenv.StartRedis(t)
	t.Run("idle", func(t *testing.T) {
		h := redisHarness(t, r, func(c *Config) { c.SessionIdleTimeout = 1500 * time.Millisecond })
		h.login("alice")
		for range 4 { // used every 600ms, it outlives the idle timeout
			time.Sleep(600 * time.Millisecond)
			h.mustBe("user-alice")
		}
		time.Sleep(1700 * time.Millisecond)
		h.mustBeAnonymous() // the browser still has its cookie: Redis let it go
		if len(h.sessionCookies()) == 0 {
			t.Fatal("the cookie expired, not the session")
		}
	})
	t.Run("absolute", func(t *testing.T) {
		h := redisHarness(t, r, func(c *Config) { c.SessionMaxAge = 2 * time.Second })
		h.login("alice")
		cookie := rCookieHeader(h)
		h.mustBe("user-alice")
		time.Sleep(2100 * time.Millisecond)
		if status, _ := rMe(t, h, cookie); status != http.StatusUnauthorized {
			t.Fatalf("after the absolute lifetime: %d", status)
		}
	})
}

func TestRedisRevokerEndsSessionsEverywhere(t *testing.T) {
	r := testenv.StartRedis(t)
	a := redisHarness(t, r)
	b := redisHarness(t, r)
	a.login("alice")
	alice1 := rCookieHeader(a)
	a.client = newBrowser()
	a.login("alice")
	alice2 := rCookieHeader(a)
	a.client = newBrowser()
	a.login("bob")
	bob := rCookieHeader(a)

	rv, ok := a.auth.store.(SessionRevoker)
	if !ok {
		t.Fatal("the Redis store is not a SessionRevoker")
	}
	ctx := context.Background()
	if n, err := rv.DeleteBySubject(ctx, "user-alice"); n != 2 || err != nil {
		t.Fatalf("DeleteBySubject = %d, %v; want 2", n, err)
	}
	for _, c := range []string{alice1, alice2} {
		if status, _ := rMe(t, b, c); status != http.StatusUnauthorized {
			t.Fatal("a revoked session still works on the other instance")
		}
	}
	if status, _ := rMe(t, b, bob); status != http.StatusOK {
		t.Fatal("Bob's session went too")
	}

	// Back-channel logout from the IdP (by sid) ends it on every instance.
	a.client = newBrowser()
	a.login("carol")
	carol := rCookieHeader(a)
	sess := sessionOf(t, a)
	resp, err := newBrowser().Get(a.idp.Issuer() + "/end-session?id_token_hint=" + url.QueryEscape(sess.IDToken))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if status, _ := rMe(t, b, carol); status != http.StatusUnauthorized {
		t.Fatalf("after back-channel logout on A, B: /me = %d", status)
	}
	if status, _ := rMe(t, b, bob); status != http.StatusOK {
		t.Fatal("Bob's session ended with Carol's")
	}
}

func TestRedisTokenRefreshUpdatesInPlace(t *testing.T) {
	r := testenv.StartRedis(t)
	a := redisHarness(t, r, offlineAccess)
	b := redisHarness(t, r, offlineAccess)
	a.login("alice")
	cookie := rCookieHeader(a)
	sess := sessionOf(t, a)
	if sess.RefreshToken == "" {
		t.Fatal("no refresh token")
	}
	a.auth.now = func() time.Time { return sess.AccessTokenExpiry.Add(-10 * time.Second) }
	rec := httptest.NewRecorder()
	tok, err := a.auth.Token(rec, reqWithCookies(a))
	if err != nil || tok.AccessToken == sess.AccessToken {
		t.Fatalf("Token = %v, %v", tok, err)
	}
	if sc := rec.Header().Values("Set-Cookie"); len(sc) != 0 {
		t.Fatalf("a refresh changed the cookie: %v", sc)
	}
	// Same cookie, new tokens, on the other instance too.
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("Cookie", cookie)
	renewed, err := b.auth.store.Load(req)
	if err != nil || renewed == nil || renewed.AccessToken != tok.AccessToken || renewed.RefreshToken == sess.RefreshToken {
		t.Fatalf("B does not see the refreshed tokens: %+v %v", renewed, err)
	}
}

func TestRedisURLIsValidated(t *testing.T) {
	const pw = "hunter2-but-longer"
	env := map[string]string{
		"OIDC_ISSUER": "https://idp.example.com", "OIDC_CLIENT_ID": "app", "OIDC_CLIENT_SECRET": "s",
		"OIDC_REDIRECT_URI": "https://app.example.com/auth/callback", "SESSION_SECRET": testSecret,
	}
	for raw, want := range map[string]string{
		"http://:" + pw + "@cache:6379":         "not supported",
		"redis://:" + pw + "@cache:port":        "not a valid URL",
		"redis+sentinel://:" + pw + "@sentinel": "master_name",
		"redis://:" + pw + "@cache?bogus=1":     "unexpected option",
	} {
		env["REDIS_URL"] = raw
		_, err := configFromLookup(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Variable != "REDIS_URL" || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v; want a REDIS_URL error saying %q", raw, err, want)
		}
		if err != nil && strings.Contains(err.Error(), pw) {
			t.Errorf("the error shows the password: %v", err)
		}
	}
	env["REDIS_URL"] = "rediss://:" + pw + "@cache.example.com:6380/1"
	if _, err := configFromLookup(func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
}

func waitForRecovery(t testing.TB, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting for recovery")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func rBody(resp *http.Response) string {
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// One authenticated request through Handler and RequireUser, with the
// session in a cookie and in Redis.
