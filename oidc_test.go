package oidcauth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/oidcauth/oidcauth/internal/devidp"
)

func TestLoginRedirectCarriesStateNonceAndPKCE(t *testing.T) {
	h := newHarness(t)
	resp := h.get("/login?next=/private")
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("status %d", resp.StatusCode)
	}
	loc, _ := url.Parse(resp.Header.Get("Location"))
	q := loc.Query()
	if loc.Scheme+"://"+loc.Host+loc.Path != h.idp.Issuer()+"/authorize" {
		t.Errorf("redirect to %s", loc)
	}
	for k, want := range map[string]string{
		"response_type": "code", "client_id": "test-app", "redirect_uri": h.url("/auth/callback"),
		"scope": "openid email profile", "code_challenge_method": "S256",
	} {
		if q.Get(k) != want {
			t.Errorf("%s = %q, want %q", k, q.Get(k), want)
		}
	}
	for _, k := range []string{"state", "nonce", "code_challenge"} {
		raw, err := base64.RawURLEncoding.DecodeString(q.Get(k))
		if err != nil || len(raw) < 16 {
			t.Errorf("%s = %q: want at least 128 random bits", k, q.Get(k))
		}
	}
	if q.Get("state") == q.Get("nonce") {
		t.Error("state and nonce are the same value")
	}
	tx := setCookieFor(resp, h.auth.txCookieName(q.Get("state")))
	if tx == nil {
		t.Fatal("no login transaction cookie")
	}
	if !tx.HttpOnly || tx.SameSite != http.SameSiteLaxMode || tx.Path != "/auth/callback" || tx.MaxAge != 600 {
		t.Errorf("transaction cookie attributes: %+v", tx)
	}
	if resp.Header.Get("Cache-Control") != "no-store" {
		t.Error("login redirect is cacheable")
	}
}

func TestLoginCallbackSessionAndCookieFlags(t *testing.T) {
	h := newHarness(t)
	h.mustBeAnonymous()
	resp := h.login("alice")
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/private" {
		t.Fatalf("callback: %d to %q: %s", resp.StatusCode, resp.Header.Get("Location"), h.logs)
	}
	sc := setCookieFor(resp, "oidcauth")
	if sc == nil {
		t.Fatal("no session cookie")
	}
	if !sc.HttpOnly || sc.SameSite != http.SameSiteLaxMode || sc.Path != "/" || sc.Secure || sc.MaxAge < 86000 {
		t.Errorf("session cookie attributes: %+v", sc)
	}
	status, u := h.me()
	want := User{Subject: "user-alice", Email: "alice@example.com", Name: "Alice Liddell", PreferredUsername: "alice", Issuer: h.idp.Issuer()}
	if status != http.StatusOK || u != want {
		t.Fatalf("/me = %d %+v, want %+v", status, u, want)
	}
	if body, _ := io.ReadAll(h.get("/private").Body); string(body) != "private for Alice Liddell" {
		t.Errorf("/private: %q", body)
	}
	if strings.Contains(h.logs.String(), sc.Value[:20]) {
		t.Error("the session cookie was logged")
	}
}

func TestSecureCookiesWhenRedirectURIIsHTTPS(t *testing.T) {
	h := newHarness(t)
	cfg := h.auth.cfg
	cfg.RedirectURI = "https://app.example/auth/callback"
	a, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	rec := httptestRecorder(a.Handler(nil), "GET", "/login")
	for _, c := range rec.Result().Cookies() {
		if !c.Secure {
			t.Errorf("cookie %s is not Secure", c.Name)
		}
	}
	sess := &Session{User: User{Subject: "s"}, ExpiresAt: time.Now().Add(time.Hour)}
	w := newRecorder()
	if err := a.store.Save(w, httptest.NewRequest("GET", "/", nil), sess); err != nil {
		t.Fatal(err)
	}
	if c := w.Result().Cookies()[0]; !c.Secure || !c.HttpOnly {
		t.Errorf("session cookie over https: %+v", c)
	}
}

// TestIDTokenValidation proves each ID-token rule: with the IdP
// misbehaving in one way, the login fails with a 4xx and no session.
func TestIDTokenValidation(t *testing.T) {
	h := newHarness(t)
	for name, m := range map[string]devidp.Misbehavior{
		"wrong iss":                  {WrongIssuer: true},
		"wrong aud":                  {WrongAudience: true},
		"several aud without azp":    {ExtraAudience: "other-app"},
		"azp of another client":      {WrongAZP: true},
		"no iat":                     {OmitIAT: true},
		"iat in the future":          {FutureIAT: 5 * time.Minute},
		"expired":                    {Expired: true},
		"no sub":                     {OmitSub: true},
		"wrong nonce":                {WrongNonce: true},
		"no nonce":                   {OmitNonce: true},
		"alg none":                   {AlgNone: true},
		"HS256 with the secret":      {HS256: true},
		"bad signature":              {BadSignature: true},
		"key not in the JWKS":        {UnknownKID: true},
		"userinfo of another user":   {OmitProfileClaims: true, UserinfoSubject: "user-bob"},
		"token endpoint error":       {TokenError: "invalid_grant"},
		"authorization error":        {AuthorizeError: "access_denied"},
		"no kid and a forged signer": {OmitKID: true, UnknownKID: true},
	} {
		t.Run(name, func(t *testing.T) {
			h.client = newBrowser()
			h.idp.SetMisbehavior(m)
			defer h.idp.SetMisbehavior(devidp.Misbehavior{})
			resp := h.login("alice")
			if resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("callback status %d, want 400", resp.StatusCode)
			}
			if c := setCookieFor(resp, "oidcauth"); c != nil && c.MaxAge >= 0 {
				t.Fatal("a session cookie was set")
			}
			h.mustBeAnonymous()
		})
	}
}

func TestIDTokenAcceptedVariants(t *testing.T) {
	h := newHarness(t)
	for name, m := range map[string]devidp.Misbehavior{
		"iat within the clock skew": {FutureIAT: 30 * time.Second},
		"no kid, single key":        {OmitKID: true},
		"6 KB ID token":             {BigClaimBytes: 6000},
		"claims only in userinfo":   {OmitProfileClaims: true},
	} {
		t.Run(name, func(t *testing.T) {
			h.client = newBrowser()
			h.idp.SetMisbehavior(m)
			defer h.idp.SetMisbehavior(devidp.Misbehavior{})
			if resp := h.login("bob"); resp.StatusCode != http.StatusFound {
				t.Fatalf("callback status %d: %s", resp.StatusCode, h.logs)
			}
			status, u := h.me()
			if status != http.StatusOK || u.Email != "bob@example.com" || u.Name != "Bob Builder" {
				t.Fatalf("/me = %d %+v", status, u)
			}
		})
	}
}

func TestKeyRotationRefetchesJWKSOnce(t *testing.T) {
	h := newHarness(t)
	if resp := h.login("alice"); resp.StatusCode != http.StatusFound {
		t.Fatalf("first login: %d", resp.StatusCode)
	}
	before := h.idp.Stats().JWKSFetches
	fetches := func() int64 { return h.idp.Stats().JWKSFetches - before }
	if err := h.idp.RotateKey(false); err != nil {
		t.Fatal(err)
	}
	h.later(minKeyRefresh)
	h.client = newBrowser()
	if resp := h.login("alice"); resp.StatusCode != http.StatusFound {
		t.Fatalf("login after rotation: %d: %s", resp.StatusCode, h.logs)
	}
	if got := fetches(); got != 1 {
		t.Errorf("JWKS fetched %d times after rotation, want 1", got)
	}
	// Known keys are not fetched again.
	h.client = newBrowser()
	h.login("alice")
	if got := fetches(); got != 1 {
		t.Errorf("JWKS fetched again for a known key (%d fetches)", got)
	}
	// An unknown key: rejected, and the JWKS is not fetched again so soon
	// (forged tokens must not make us hammer the IdP).
	h.idp.SetMisbehavior(devidp.Misbehavior{UnknownKID: true})
	for range 3 {
		h.client = newBrowser()
		if resp := h.login("alice"); resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("unknown kid: %d", resp.StatusCode)
		}
	}
	if got := fetches(); got != 1 {
		t.Errorf("unknown kids right after a fetch caused %d fetches in all, want 1", got)
	}
	// Later, an unknown key costs one refetch, then rejection.
	h.later(minKeyRefresh)
	h.client = newBrowser()
	if resp := h.login("alice"); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("unknown kid: %d", resp.StatusCode)
	}
	if got := fetches(); got != 2 {
		t.Errorf("an unknown kid caused %d fetches in all, want 2", got)
	}
}

func TestCallbackState(t *testing.T) {
	h := newHarness(t)
	t.Run("missing", func(t *testing.T) {
		cb, _ := url.Parse(h.idpLogin(h.startLogin(""), "alice"))
		q := cb.Query()
		q.Del("state")
		cb.RawQuery = q.Encode()
		if resp := h.get(cb.String()); resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("status %d", resp.StatusCode)
		}
		h.mustBeAnonymous()
	})
	t.Run("altered", func(t *testing.T) {
		cb, _ := url.Parse(h.idpLogin(h.startLogin(""), "alice"))
		q := cb.Query()
		q.Set("state", q.Get("state")+"x")
		cb.RawQuery = q.Encode()
		if resp := h.get(cb.String()); resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("status %d", resp.StatusCode)
		}
		h.mustBeAnonymous()
	})
	t.Run("without its cookie", func(t *testing.T) {
		cb := h.idpLogin(h.startLogin(""), "alice")
		h.client = newBrowser() // another browser: no transaction cookie
		if resp := h.get(cb); resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("status %d", resp.StatusCode)
		}
		h.mustBeAnonymous()
	})
	t.Run("replayed with its cookie", func(t *testing.T) {
		h.client = newBrowser()
		cb := h.idpLogin(h.startLogin(""), "alice")
		appURL, _ := url.Parse(h.app.URL + "/auth/callback")
		saved := h.client.Jar.Cookies(appURL) // the attacker kept the cookie
		if resp := h.get(cb); resp.StatusCode != http.StatusFound {
			t.Fatalf("first callback: %d", resp.StatusCode)
		}
		thief := newBrowser()
		thief.Jar.SetCookies(appURL, saved)
		h.client = thief
		tokens := h.idp.Stats().TokenRequests
		if resp := h.get(cb); resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("replayed callback: %d", resp.StatusCode)
		}
		if h.idp.Stats().TokenRequests != tokens {
			t.Error("a replayed state reached the token endpoint")
		}
		h.mustBeAnonymous()
	})
}

func TestParallelLoginsInTwoTabs(t *testing.T) {
	h := newHarness(t)
	first := h.idpLogin(h.startLogin("/one"), "alice")
	second := h.idpLogin(h.startLogin("/two"), "alice")
	if resp := h.get(second); resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/two" {
		t.Fatalf("second tab: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp := h.get(first); resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/one" {
		t.Fatalf("first tab: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	h.mustBe("user-alice")
}

func TestIdPErrorIsAnEscaped4xx(t *testing.T) {
	h := newHarness(t)
	auth := h.startLogin("")
	state := mustParse(t, auth).Query().Get("state")
	cb := h.url("/auth/callback?error=access_denied&error_description=" + url.QueryEscape("<script>alert(1)</script>") + "&state=" + state)
	resp := h.get(cb, "Accept", "text/html")
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if strings.Contains(string(body), "<script>") || !strings.Contains(string(body), "&lt;script&gt;") {
		t.Fatalf("IdP text not escaped: %s", body)
	}
	h.mustBeAnonymous()
	// The app keeps working: a normal login still succeeds.
	if resp := h.login("alice"); resp.StatusCode != http.StatusFound {
		t.Fatalf("login after an IdP error: %d", resp.StatusCode)
	}
}

func TestIdPFailuresDuringLogin(t *testing.T) {
	h := newHarness(t, harnessOption{opts: []Option{WithHTTPClient(&http.Client{Timeout: 300 * time.Millisecond})}})
	for name, tc := range map[string]struct {
		m      devidp.Misbehavior
		status int
	}{
		"token endpoint 500":  {devidp.Misbehavior{TokenStatus: 500}, http.StatusBadGateway},
		"token endpoint slow": {devidp.Misbehavior{TokenDelay: 2 * time.Second}, http.StatusServiceUnavailable},
	} {
		t.Run(name, func(t *testing.T) {
			h.client = newBrowser()
			h.idp.SetMisbehavior(tc.m)
			defer h.idp.SetMisbehavior(devidp.Misbehavior{})
			start := time.Now()
			resp := h.login("alice")
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if d := time.Since(start); d > 1500*time.Millisecond {
				t.Errorf("took %s despite a 300ms timeout", d)
			}
			h.mustBeAnonymous()
		})
	}
}

func TestOpenRedirectAtLogin(t *testing.T) {
	h := newHarness(t)
	for _, next := range []string{"//evil.example", "https://evil.example/", "/\\evil.example", "/%2F%2Fevil.example", "/\t/evil.example", "javascript:alert(1)"} {
		h.client = newBrowser()
		resp := h.get(h.idpLogin(h.startLogin(next), "alice"))
		if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusFound || loc != "/" {
			t.Errorf("next=%q: %d to %q, want /", next, resp.StatusCode, loc)
		}
	}
	h.client = newBrowser()
	if loc := h.get(h.idpLogin(h.startLogin("/docs?id=1"), "alice")).Header.Get("Location"); loc != "/docs?id=1" {
		t.Errorf("a same-origin next was lost: %q", loc)
	}
}

func TestRequireUser(t *testing.T) {
	h := newHarness(t)
	resp := h.get("/private?x=1", "Accept", "text/html,application/xhtml+xml")
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/login?next=%2Fprivate%3Fx%3D1" {
		t.Fatalf("browser: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp = h.get("/private", "Accept", "application/json")
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusUnauthorized || strings.TrimSpace(string(body)) != `{"error":"unauthenticated"}` {
		t.Fatalf("API: %d %s", resp.StatusCode, body)
	}
	h.login("alice")
	if resp := h.get("/private"); resp.StatusCode != http.StatusOK {
		t.Fatalf("signed in: %d", resp.StatusCode)
	}
}

func TestTamperedTruncatedAndExpiredCookies(t *testing.T) {
	h := newHarness(t)
	h.login("alice")
	good := h.sessionCookies()[0].Value
	for name, value := range map[string]string{
		"flipped byte": good[:40] + string(rune(good[40]^1)) + good[41:],
		"truncated":    good[:len(good)-5],
		"garbage":      "not-a-session",
		"empty":        "",
		"chunk header": "3." + good,
	} {
		req, _ := http.NewRequest("GET", h.url("/me"), nil)
		req.Header.Set("Cookie", "oidcauth="+value)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s cookie: %d, want 401", name, resp.StatusCode)
		}
	}
	// Sealed with another secret: unknown key.
	other := h.auth.cfg
	other.SessionSecret = "another-secret-0123456789-abcdefghijklm"
	a2, _ := New(context.Background(), other)
	req, _ := http.NewRequest("GET", "/me", nil)
	req.Header.Set("Cookie", "oidcauth="+good)
	if s, err := a2.store.Load(req); s != nil || err != nil {
		t.Error("a cookie sealed with another secret was accepted")
	}
	// Expired: the same cookie, read after the session's lifetime.
	h.mustBe("user-alice")
	cs := h.auth.store.(*cookieStore)
	cs.now = func() time.Time { return time.Now().Add(25 * time.Hour) }
	h.mustBeAnonymous()
}

func TestSecretRotationKeepsSessions(t *testing.T) {
	h := newHarness(t)
	h.login("alice")
	cfg := h.auth.cfg
	cfg.SessionSecretPrevious = cfg.SessionSecret
	cfg.SessionSecret = "rotated-secret-0123456789-abcdefghijklm"
	rotated, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.app.Config.Handler = rotated.Handler(testRoutes(rotated))
	h.mustBe("user-alice")
	cfg.SessionSecretPrevious = ""
	dropped, _ := New(context.Background(), cfg)
	h.app.Config.Handler = dropped.Handler(testRoutes(dropped))
	h.mustBeAnonymous()
}

func TestBigSessionIsChunkedAndLogoutClearsAllChunks(t *testing.T) {
	h := newHarness(t)
	h.idp.SetMisbehavior(devidp.Misbehavior{BigClaimBytes: 6000})
	if resp := h.login("alice"); resp.StatusCode != http.StatusFound {
		t.Fatalf("login: %d", resp.StatusCode)
	}
	if n := len(h.sessionCookies()); n < 3 {
		t.Fatalf("a ~8 KB session is in %d cookie(s)", n)
	}
	for _, c := range h.sessionCookies() {
		if len(c.Name)+len(c.Value) > 4000 {
			t.Errorf("cookie %s is %d bytes", c.Name, len(c.Value))
		}
	}
	h.mustBe("user-alice")
	h.get("/logout")
	if n := len(h.sessionCookies()); n != 0 {
		t.Fatalf("%d session cookies left after logout", n)
	}
	h.mustBeAnonymous()
}

func TestLogoutRedirectsToEndSession(t *testing.T) {
	h := newHarness(t)
	h.login("alice")
	idToken := func() string {
		s, _ := h.auth.store.Load(reqWithCookies(h))
		return s.IDToken
	}()
	for _, method := range []string{"GET", "POST"} {
		req, _ := http.NewRequest(method, h.url("/logout"), nil)
		resp, err := h.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc := mustParse(t, resp.Header.Get("Location"))
		q := loc.Query()
		if resp.StatusCode != http.StatusFound || loc.Path != "/end-session" {
			t.Fatalf("%s /logout: %d to %s", method, resp.StatusCode, loc)
		}
		if q.Get("client_id") != "test-app" || q.Get("post_logout_redirect_uri") != h.url("/bye") || q.Get("state") == "" {
			t.Errorf("%s end-session parameters: %v", method, q)
		}
		if method == "GET" && q.Get("id_token_hint") != idToken {
			t.Error("id_token_hint is not the session's ID token")
		}
		if method == "POST" && q.Has("id_token_hint") {
			t.Error("logout without a session sent an id_token_hint")
		}
		h.mustBeAnonymous()
	}
	// The IdP accepts the request and sends the browser back.
	h.login("alice")
	resp := h.get(h.get("/logout").Header.Get("Location"))
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, h.url("/bye")) {
		t.Fatalf("IdP end-session: %d to %q", resp.StatusCode, loc)
	}
}

func TestIdentity(t *testing.T) {
	h := newHarness(t)
	var got Identity
	h.app.Config.Handler = h.auth.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = h.auth.Identity(r)
	}))
	h.get("/anything")
	if got != (Identity{Type: IdentityNone}) || got.Type.String() != "NONE" || !got.Anonymous() {
		t.Fatalf("anonymous identity: %+v", got)
	}
	h.login("carol")
	h.get("/anything")
	if got != (Identity{Type: IdentitySubject, Value: "user-carol"}) || got.Type.String() != "SUB" {
		t.Fatalf("user identity: %+v", got)
	}
}

func TestDiscovery(t *testing.T) {
	t.Run("issuer mismatch", func(t *testing.T) {
		h := newHarness(t)
		h.idp.SetMisbehavior(devidp.Misbehavior{DiscoveryIssuer: h.idp.Issuer() + "/other"})
		_, err := New(context.Background(), h.auth.cfg)
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Variable != "OIDC_ISSUER" {
			t.Fatalf("want a ConfigError naming OIDC_ISSUER, got %v", err)
		}
	})
	t.Run("unreachable retries until the context ends", func(t *testing.T) {
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		addr := ln.Addr().String()
		ln.Close() // nothing listens here now
		cfg := Config{Issuer: "http://" + addr, ClientID: "a", ClientSecret: "b", RedirectURI: "http://localhost/cb", SessionSecret: testSecret}
		logs := new(strings.Builder)
		ctx, cancel := context.WithTimeout(context.Background(), 900*time.Millisecond)
		defer cancel()
		_, err := New(ctx, cfg, WithLogger(newTextLogger(logs)))
		if err == nil || !strings.Contains(err.Error(), cfg.Issuer) || !strings.Contains(err.Error(), "connection refused") {
			t.Fatalf("error should name the issuer and cause: %v", err)
		}
		if n := strings.Count(logs.String(), "retrying"); n < 2 {
			t.Errorf("retried %d times", n)
		}
	})
	t.Run("IdP comes up during the retries", func(t *testing.T) {
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		addr := ln.Addr().String()
		ln.Close()
		go func() {
			time.Sleep(400 * time.Millisecond)
			srv := &http.Server{Addr: addr, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				json.NewEncoder(w).Encode(map[string]string{"issuer": "http://" + addr, "authorization_endpoint": "http://" + addr + "/a",
					"token_endpoint": "http://" + addr + "/t", "jwks_uri": "http://" + addr + "/k"})
			})}
			ln, err := net.Listen("tcp", addr)
			if err == nil {
				t.Cleanup(func() { srv.Close() })
				srv.Serve(ln)
			}
		}()
		cfg := Config{Issuer: "http://" + addr, ClientID: "a", ClientSecret: "b", RedirectURI: "http://localhost/cb", SessionSecret: testSecret}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := New(ctx, cfg, WithLogger(newTextLogger(io.Discard))); err != nil {
			t.Fatal(err)
		}
	})
}

func TestSecretsNeverLogged(t *testing.T) {
	h := newHarness(t)
	h.idp.SetMisbehavior(devidp.Misbehavior{BadSignature: true})
	cb := h.idpLogin(h.startLogin(""), "alice")
	h.get(cb)
	h.idp.SetMisbehavior(devidp.Misbehavior{})
	h.client = newBrowser()
	h.login("alice")
	code := mustParse(t, cb).Query().Get("code")
	logs := h.logs.String()
	for what, secret := range map[string]string{"client secret": "test-client-secret", "session secret": testSecret, "code": code} {
		if secret != "" && strings.Contains(logs, secret) {
			t.Errorf("the %s was logged", what)
		}
	}
	if strings.Contains(logs, "eyJ") {
		t.Error("something JWT-like was logged")
	}
}

func TestIdPErrorTextNeedsALiveLogin(t *testing.T) {
	h := newHarness(t)
	resp := h.get("/auth/callback?error=x&error_description="+url.QueryEscape("Call +1-555-0100 with your password"), "Accept", "text/html")
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusBadRequest || strings.Contains(string(body), "555-0100") {
		t.Fatalf("an error response without a login put its text on our page: %d %s", resp.StatusCode, body)
	}
}

func TestAuthorizationResponseIssuer(t *testing.T) {
	h := newHarness(t)
	cb := h.idpLogin(h.startLogin(""), "alice")
	tokens := h.idp.Stats().TokenRequests
	if resp := h.get(cb + "&iss=" + url.QueryEscape("https://evil.example")); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("iss of another IdP: %d", resp.StatusCode)
	}
	if h.idp.Stats().TokenRequests != tokens {
		t.Fatal("the code was redeemed despite the wrong iss")
	}
	h.mustBeAnonymous()
	h.client = newBrowser()
	cb = h.idpLogin(h.startLogin(""), "alice")
	if resp := h.get(cb + "&iss=" + url.QueryEscape(h.idp.Issuer())); resp.StatusCode != http.StatusFound {
		t.Fatalf("the right iss: %d", resp.StatusCode)
	}
}

func TestOfflineAccessAsksForConsent(t *testing.T) {
	h := newHarness(t, harnessOption{config: offlineAccess})
	if got := mustParse(t, h.startLogin("")).Query().Get("prompt"); got != "consent" {
		t.Fatalf("prompt = %q with offline_access", got)
	}
	h2 := newHarness(t)
	if mustParse(t, h2.startLogin("")).Query().Has("prompt") {
		t.Fatal("prompt sent without offline_access")
	}
}
