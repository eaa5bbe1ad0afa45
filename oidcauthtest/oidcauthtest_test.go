package oidcauthtest_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oidcauth/oidcauth"
	"github.com/oidcauth/oidcauth/oidcauthtest"
)

// fakeT stands in for a *testing.T where a test must watch a helper fail,
// and in the examples. Only the methods the kit (and the examples) call
// are implemented; the embedded nil TB makes it a testing.TB.
type fakeT struct {
	testing.TB
	mu       sync.Mutex
	cleanups []func()
	fatal    string
}

func (f *fakeT) Helper() {}

func (f *fakeT) Cleanup(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cleanups = append(f.cleanups, fn)
}

func (f *fakeT) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.fatal = fmt.Sprintf(format, args...)
	f.mu.Unlock()
	runtime.Goexit()
}

// runFake runs test in a goroutine of its own with a fakeT, then its
// cleanups, and returns the message of the Fatalf that stopped it, if any.
func runFake(test func(t testing.TB)) string {
	f := new(fakeT)
	done := make(chan struct{})
	go func() {
		defer close(done)
		test(f)
	}()
	<-done
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
	return f.fatal
}

// mustFail runs test with a fakeT and checks that it fails with a message
// containing every one of want.
func mustFail(t *testing.T, test func(t testing.TB), want ...string) {
	t.Helper()
	msg := runFake(test)
	if msg == "" {
		t.Fatalf("the helper did not fail the test")
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("failure message %q does not contain %q", msg, w)
		}
	}
}

// app is a user's application: /private needs a user, /me shows the user
// as JSON (or 401), / is public.
func app(auth *oidcauth.Auth) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "home") })
	mux.Handle("GET /private", auth.RequireUser(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, _ := oidcauth.UserFrom(r.Context())
		io.WriteString(w, "private for "+u.Name)
	})))
	mux.HandleFunc("GET /me", func(w http.ResponseWriter, r *http.Request) {
		u, ok := oidcauth.UserFrom(r.Context())
		if !ok {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		_ = json.NewEncoder(w).Encode(u)
	})
	return auth.Handler(mux)
}

func serve(h http.Handler, req *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func me(t *testing.T, h http.Handler, req *http.Request) (int, oidcauth.User) {
	t.Helper()
	rec := serve(h, req)
	var u oidcauth.User
	if rec.Code == http.StatusOK {
		if err := json.Unmarshal(rec.Body.Bytes(), &u); err != nil {
			t.Fatal(err)
		}
	}
	return rec.Code, u
}

func withCookies(req *http.Request, cookies []*http.Cookie) *http.Request {
	for _, c := range cookies {
		req.AddCookie(c)
	}
	return req
}

// jwtClaims decodes a JWT's payload without checking it.
func jwtClaims(t *testing.T, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", tok)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestHandlerTestAsAliceInOneLine(t *testing.T) {
	t.Parallel()
	auth := oidcauthtest.NewAuth(t)
	h := app(auth)

	rec := serve(h, oidcauthtest.NewRequest(t, auth, "alice", "GET", "/private", nil))
	if rec.Code != http.StatusOK || rec.Body.String() != "private for Alice Liddell" {
		t.Fatalf("/private as alice: %d %q", rec.Code, rec.Body)
	}
	status, u := me(t, h, oidcauthtest.NewRequest(t, auth, "bob", "GET", "/me", nil))
	want := oidcauth.User{Subject: "user-bob", Email: "bob@example.com", Name: "Bob Builder", PreferredUsername: "bob", Issuer: u.Issuer}
	if status != http.StatusOK || u != want || u.Issuer == "" {
		t.Fatalf("/me as bob: %d %+v", status, u)
	}
	// Login's cookies are a session that lasts: several requests, same user.
	cookies := oidcauthtest.Login(t, auth, "carol")
	for range 3 {
		if status, u := me(t, h, withCookies(httptest.NewRequest("GET", "/me", nil), cookies)); status != http.StatusOK || u.Subject != "user-carol" {
			t.Fatalf("/me with carol's cookies: %d %+v", status, u)
		}
	}
	for _, c := range cookies {
		if !c.HttpOnly || c.MaxAge <= 0 || c.Value == "" {
			t.Errorf("session cookie %+v", c)
		}
	}
}

func TestAnonymous(t *testing.T) {
	t.Parallel()
	auth := oidcauthtest.NewAuth(t)
	h := app(auth)

	rec := serve(h, oidcauthtest.NewRequest(t, auth, "", "GET", "/private", nil))
	if rec.Code != http.StatusUnauthorized || strings.TrimSpace(rec.Body.String()) != `{"error":"unauthenticated"}` {
		t.Fatalf("anonymous API request: %d %q", rec.Code, rec.Body)
	}
	browser := oidcauthtest.NewRequest(t, auth, "", "GET", "/private", nil)
	browser.Header.Set("Accept", "text/html")
	rec = serve(h, browser)
	if rec.Code != http.StatusFound || rec.Header().Get("Location") != "/login?next=%2Fprivate" {
		t.Fatalf("anonymous browser: %d %q", rec.Code, rec.Header().Get("Location"))
	}
	if status, _ := me(t, h, httptest.NewRequest("GET", "/me", nil)); status != http.StatusUnauthorized {
		t.Fatalf("/me anonymous: %d", status)
	}
	// A session from another Auth (another secret) is not a session here.
	other := oidcauthtest.NewAuth(t)
	if status, _ := me(t, h, oidcauthtest.NewRequest(t, other, "alice", "GET", "/me", nil)); status != http.StatusUnauthorized {
		t.Fatalf("another app's session: %d", status)
	}
}

func TestClient(t *testing.T) {
	t.Parallel()
	auth := oidcauthtest.NewAuth(t)
	srv := httptest.NewServer(app(auth))
	t.Cleanup(srv.Close)
	get := func(c *http.Client, path string) (int, string) {
		t.Helper()
		resp, err := c.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	alice := oidcauthtest.Client(t, auth, srv, "alice")
	if status, body := get(alice, "/private"); status != http.StatusOK || body != "private for Alice Liddell" {
		t.Fatalf("alice's client: %d %q", status, body)
	}
	// Redirects are not followed, and the jar keeps what the app sets.
	if status, _ := get(alice, "/logout"); status != http.StatusFound {
		t.Fatalf("/logout: %d", status)
	}
	if status, _ := get(alice, "/private"); status != http.StatusUnauthorized {
		t.Fatalf("after logout: %d", status)
	}
	if status, _ := get(oidcauthtest.Client(t, auth, srv, ""), "/private"); status != http.StatusUnauthorized {
		t.Fatalf("anonymous client: %d", status)
	}
}

func TestClientRefusesSecureCookiesOverHTTP(t *testing.T) {
	t.Parallel()
	auth := oidcauthtest.NewAuth(t, oidcauthtest.WithConfig(func(c *oidcauth.Config) {
		c.RedirectURI = "https://app.example.com/auth/callback"
	}))
	srv := httptest.NewServer(app(auth))
	t.Cleanup(srv.Close)
	mustFail(t, func(ft testing.TB) { oidcauthtest.Client(ft, auth, srv, "alice") }, "Secure", "NewTLSServer")

	tls := httptest.NewTLSServer(app(auth))
	t.Cleanup(tls.Close)
	resp, err := oidcauthtest.Client(t, auth, tls, "alice").Get(tls.URL + "/private")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("TLS server: %d", resp.StatusCode)
	}
}

func TestBearerToken(t *testing.T) {
	t.Parallel()
	p := oidcauthtest.NewProvider(t, oidcauthtest.WithUsers(
		oidcauthtest.User{Subject: "svc-1", Username: "reporter", Name: "Reporter", Email: "r@example.com", Claims: map[string]any{"scope": "reports:read"}},
	))
	auth := oidcauthtest.NewAuth(t, oidcauthtest.WithProvider(p), oidcauthtest.WithConfig(func(c *oidcauth.Config) { c.APIAudience = "test-api" }))
	h := app(auth)
	bearer := func(tok string) *http.Request {
		req := httptest.NewRequest("GET", "/me", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		return req
	}
	tok := oidcauthtest.BearerToken(t, auth, "reporter")
	if status, u := me(t, h, bearer(tok)); status != http.StatusOK || u.Subject != "svc-1" || u.Email != "r@example.com" || u.Name != "Reporter" || u.PreferredUsername != "reporter" {
		t.Fatalf("bearer token: %d %+v", status, u)
	}
	c := jwtClaims(t, tok)
	if c["aud"] != "test-api" || c["iss"] != p.Issuer() || c["scope"] != "reports:read" {
		t.Errorf("claims %v", c)
	}
	if exp, iat := c["exp"].(float64), c["iat"].(float64); exp-iat != 300 {
		t.Errorf("lifetime %v s, want the default 300", exp-iat)
	}
	// Another audience is refused, and so is a token signed by SignToken
	// with an expiry in the past.
	if status, _ := me(t, h, bearer(p.AccessToken(t, "reporter", "another-api"))); status != http.StatusUnauthorized {
		t.Fatalf("another audience: %d", status)
	}
	expired := p.SignToken(map[string]any{"iss": p.Issuer(), "sub": "svc-1", "aud": "test-api",
		"iat": time.Now().Add(-time.Hour).Unix(), "exp": time.Now().Add(-time.Minute).Unix()})
	if status, _ := me(t, h, bearer(expired)); status != http.StatusUnauthorized {
		t.Fatalf("expired: %d", status)
	}
	custom := p.SignToken(map[string]any{"iss": p.Issuer(), "sub": "svc-2", "aud": "test-api",
		"iat": time.Now().Unix(), "exp": time.Now().Add(time.Minute).Unix()})
	if status, u := me(t, h, bearer(custom)); status != http.StatusOK || u.Subject != "svc-2" {
		t.Fatalf("SignToken: %d %+v", status, u)
	}

	plain := oidcauthtest.NewAuth(t, oidcauthtest.WithProvider(p))
	mustFail(t, func(ft testing.TB) { oidcauthtest.BearerToken(ft, plain, "reporter") }, "APIAudience")
	mustFail(t, func(ft testing.TB) { p.AccessToken(ft, "nobody", "test-api") }, `"nobody"`, "reporter")
}

func TestUsersAndTokenLifetimes(t *testing.T) {
	t.Parallel()
	dana := oidcauthtest.User{Subject: "u-dana", Username: "dana", Name: "Dana Scully", Email: "dana@example.com",
		EmailVerified: true, Claims: map[string]any{"groups": []any{"x-files"}}}
	p := oidcauthtest.NewProvider(t, oidcauthtest.WithUsers(dana), oidcauthtest.WithTokenLifetimes(10*time.Second, 90*time.Second))
	if users := p.Users(); len(users) != 1 || users[0].Subject != "u-dana" {
		t.Fatalf("Users() = %+v", users)
	}
	auth := oidcauthtest.NewAuth(t, oidcauthtest.WithProvider(p))
	cookies := oidcauthtest.Login(t, auth, "dana")
	req := withCookies(httptest.NewRequest("GET", "/", nil), cookies)
	sess, err := auth.Session(req)
	if err != nil || sess == nil {
		t.Fatalf("no session: %v", err)
	}
	if sess.Subject != "u-dana" || sess.Name != "Dana Scully" || sess.Email != "dana@example.com" {
		t.Fatalf("session user %+v", sess.User)
	}
	c := jwtClaims(t, sess.IDToken)
	if g, _ := c["groups"].([]any); !slices.Equal(g, []any{"x-files"}) || c["email_verified"] != true {
		t.Errorf("ID token claims %v", c)
	}
	if exp, iat := c["exp"].(float64), c["iat"].(float64); exp-iat != 90 {
		t.Errorf("ID token lifetime %v s, want 90", exp-iat)
	}
	// The 10-s access token is too close to expiry to use, and without a
	// refresh token the user must log in again.
	if got := time.Until(sess.AccessTokenExpiry); got > 10*time.Second || got <= 0 {
		t.Errorf("access token expires in %v, want about 10s", got)
	}
	if _, err := auth.Token(httptest.NewRecorder(), withCookies(httptest.NewRequest("GET", "/", nil), cookies)); !errors.Is(err, oidcauth.ErrLoginRequired) {
		t.Errorf("Token with a 10-s access token: %v, want ErrLoginRequired", err)
	}
	if c := jwtClaims(t, p.AccessToken(t, "dana", "api")); c["exp"].(float64)-c["iat"].(float64) != 10 {
		t.Errorf("AccessToken lifetime: %v", c)
	}
	mustFail(t, func(ft testing.TB) { oidcauthtest.Login(ft, auth, "alice") }, `"alice"`, "dana")

	// Default lifetimes: the access token is usable.
	def := oidcauthtest.NewAuth(t)
	tok, err := def.Token(httptest.NewRecorder(), oidcauthtest.NewRequest(t, def, "alice", "GET", "/", nil))
	if err != nil || tok.AccessToken == "" || time.Until(tok.Expiry) < 4*time.Minute {
		t.Fatalf("Token with default lifetimes: %v %v", tok, err)
	}
}

func TestNewProviderChecksUsers(t *testing.T) {
	t.Parallel()
	mustFail(t, func(ft testing.TB) {
		oidcauthtest.NewProvider(ft, oidcauthtest.WithUsers(oidcauthtest.User{Username: "x"}))
	}, "Subject")
	mustFail(t, func(ft testing.TB) {
		oidcauthtest.NewProvider(ft, oidcauthtest.WithUsers(oidcauthtest.User{Subject: "1", Username: "x"}, oidcauthtest.User{Subject: "2", Username: "x"}))
	}, `"x"`)
	mustFail(t, func(ft testing.TB) { oidcauthtest.NewProvider(ft, oidcauthtest.WithUsers()) }, "at least one")
}

func TestMisbehavior(t *testing.T) {
	t.Parallel()
	p := oidcauthtest.NewProvider(t)
	for _, tc := range []struct {
		name   string
		m      oidcauthtest.Misbehavior
		status int
		code   string
		log    string // in oidcauth's log: the cause
		opts   []oidcauth.Option
	}{
		{"LoginError", oidcauthtest.Misbehavior{LoginError: "access_denied"}, 400, "idp_error", `idp error \"access_denied\"`, nil},
		{"TokenError", oidcauthtest.Misbehavior{TokenError: "invalid_grant"}, 400, "token_error", "400 invalid_grant", nil},
		{"TokenStatus", oidcauthtest.Misbehavior{TokenStatus: 503}, 502, "idp_unavailable", "answered 503", nil},
		{"TokenDelay", oidcauthtest.Misbehavior{TokenDelay: 10 * time.Second}, 503, "idp_timeout", "timed out",
			[]oidcauth.Option{oidcauth.WithHTTPClient(&http.Client{Timeout: time.Second})}},
		{"ExpiredIDToken", oidcauthtest.Misbehavior{ExpiredIDToken: true}, 400, "invalid_id_token", "expired", nil},
		{"InvalidIDToken", oidcauthtest.Misbehavior{InvalidIDToken: true}, 400, "invalid_id_token", "signature", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Not parallel: the subtests share p and its misbehavior.
			var logs bytes.Buffer
			var mu sync.Mutex
			logger := slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil))
			auth := oidcauthtest.NewAuth(t, oidcauthtest.WithProvider(p),
				oidcauthtest.WithOptions(oidcauth.WithLogger(logger)), oidcauthtest.WithOptions(tc.opts...))

			p.Misbehave(tc.m)
			start := time.Now()
			resp := oidcauthtest.TryLogin(t, auth, "alice")
			var body struct{ Error string }
			_ = json.NewDecoder(resp.Body).Decode(&body)
			if resp.StatusCode != tc.status || body.Error != tc.code {
				t.Errorf("callback: %d %q, want %d %q", resp.StatusCode, body.Error, tc.status, tc.code)
			}
			if tc.m.TokenDelay > 0 && time.Since(start) >= tc.m.TokenDelay {
				t.Errorf("the login took %v: the client's timeout did not cut the delay short", time.Since(start))
			}
			mu.Lock()
			if !strings.Contains(logs.String(), tc.log) {
				t.Errorf("oidcauth's log does not contain %q:\n%s", tc.log, logs.String())
			}
			mu.Unlock()
			for _, c := range resp.Cookies() {
				if c.MaxAge >= 0 && c.Value != "" {
					t.Errorf("a failed login set cookie %s", c.Name)
				}
			}
			// Login fails the test and says why.
			mustFail(t, func(ft testing.TB) { oidcauthtest.Login(ft, auth, "alice") }, `"alice"`, fmt.Sprint(tc.status), tc.code)

			p.Misbehave(oidcauthtest.Misbehavior{})
			if resp := oidcauthtest.TryLogin(t, oidcauthtest.NewAuth(t, oidcauthtest.WithProvider(p)), "alice"); resp.StatusCode != http.StatusFound {
				t.Fatalf("after Misbehave(Misbehavior{}): %d", resp.StatusCode)
			}
		})
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestLoginFailureShowsTheLog(t *testing.T) {
	t.Parallel()
	p := oidcauthtest.NewProvider(t)
	auth := oidcauthtest.NewAuth(t, oidcauthtest.WithProvider(p))
	p.Misbehave(oidcauthtest.Misbehavior{ExpiredIDToken: true})
	// The kit's default logger keeps oidcauth's log, cause included.
	mustFail(t, func(ft testing.TB) { oidcauthtest.Login(ft, auth, "alice") }, "invalid_id_token", "oidcauth's log", "expired")
}

func TestLogoutToken(t *testing.T) {
	t.Parallel()
	auth := oidcauthtest.NewAuth(t)
	h := app(auth)
	alice := oidcauthtest.Login(t, auth, "alice")
	bob := oidcauthtest.Login(t, auth, "bob")
	tok := oidcauthtest.LogoutToken(t, auth, "alice")
	req := httptest.NewRequest("POST", "/backchannel-logout", strings.NewReader(url.Values{"logout_token": {tok}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if rec := serve(h, req); rec.Code != http.StatusOK {
		t.Fatalf("back-channel logout: %d %s", rec.Code, rec.Body)
	}
	if status, _ := me(t, h, withCookies(httptest.NewRequest("GET", "/me", nil), alice)); status != http.StatusUnauthorized {
		t.Fatalf("alice after her logout: %d", status)
	}
	if status, u := me(t, h, withCookies(httptest.NewRequest("GET", "/me", nil), bob)); status != http.StatusOK || u.Subject != "user-bob" {
		t.Fatalf("bob after alice's logout: %d", status)
	}
}

func TestCustomPathsAndRedirectURI(t *testing.T) {
	t.Parallel()
	auth := oidcauthtest.NewAuth(t,
		oidcauthtest.WithConfig(func(c *oidcauth.Config) {
			c.RedirectURI = "http://127.0.0.1:8080/oidc/cb"
			c.SessionCookieName = "myapp"
		}),
		oidcauthtest.WithOptions(oidcauth.WithPaths("/auth/login", "/auth/logout")))
	cookies := oidcauthtest.Login(t, auth, "alice")
	if len(cookies) == 0 || cookies[0].Name != "myapp" {
		t.Fatalf("cookies %v", cookies)
	}
	if status, u := me(t, app(auth), withCookies(httptest.NewRequest("GET", "/me", nil), cookies)); status != http.StatusOK || u.Subject != "user-alice" {
		t.Fatalf("/me: %d %+v", status, u)
	}
}

func TestSharedProvider(t *testing.T) {
	t.Parallel()
	p := oidcauthtest.NewProvider(t)
	a1 := oidcauthtest.NewAuth(t, oidcauthtest.WithProvider(p))
	a2 := oidcauthtest.NewAuth(t, oidcauthtest.WithProvider(p))
	for _, a := range []*oidcauth.Auth{a1, a2, a1} {
		if status, u := me(t, app(a), oidcauthtest.NewRequest(t, a, "carol", "GET", "/me", nil)); status != http.StatusOK || u.Subject != "user-carol" {
			t.Fatalf("/me: %d %+v", status, u)
		}
	}
}

func TestEverythingIsCleanedUp(t *testing.T) {
	t.Parallel()
	var (
		issuer string
		auth   *oidcauth.Auth
	)
	t.Run("inner", func(t *testing.T) {
		p := oidcauthtest.NewProvider(t)
		auth = oidcauthtest.NewAuth(t, oidcauthtest.WithProvider(p))
		issuer = p.Issuer()
		resp, err := http.Get(issuer + "/.well-known/openid-configuration")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	})
	if resp, err := http.Get(issuer + "/.well-known/openid-configuration"); err == nil {
		resp.Body.Close()
		t.Fatalf("the provider still answers after its test ended: %s", resp.Status)
	}
	mustFail(t, func(ft testing.TB) { oidcauthtest.Login(ft, auth, "alice") }, "not made by oidcauthtest.NewAuth")
	// A working Auth, but not one of the kit's.
	p := oidcauthtest.NewProvider(t)
	plain, err := oidcauth.New(t.Context(), oidcauth.Config{Issuer: p.Issuer(), ClientID: "app", ClientSecret: "secret",
		RedirectURI: oidcauthtest.DefaultRedirectURI, SessionSecret: "0123456789abcdefghijklmnopqrstuvwxyz"})
	if err != nil {
		t.Fatal(err)
	}
	mustFail(t, func(ft testing.TB) { oidcauthtest.Login(ft, plain, "alice") }, "not made by oidcauthtest.NewAuth")
}
