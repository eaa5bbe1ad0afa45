package oidcauth

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oidcauth/oidcauth/internal/devidp"
)

func offlineAccess(c *Config) { c.Scopes = []string{"openid", "email", "profile", "offline_access"} }

// tokenRequest is a request carrying the harness browser's session.
func tokenRequest(h *harness) *http.Request { return reqWithCookies(h) }

// applyCookies stores what a response set into the harness browser.
func applyCookies(h *harness, rec *httptest.ResponseRecorder) {
	h.client.Jar.SetCookies(mustParse(h.t, h.app.URL), rec.Result().Cookies())
}

func TestTokenRefreshesOnceForConcurrentRequestsAndStoresRotation(t *testing.T) {
	h := newHarness(t, harnessOption{config: offlineAccess})
	h.login("alice")
	sess, _ := h.auth.store.Load(tokenRequest(h))
	if sess.RefreshToken == "" || sess.AccessToken == "" || sess.AccessTokenExpiry.IsZero() {
		t.Fatalf("tokens not kept at login: %+v", sess)
	}
	// Fresh: returned as is, no token call.
	before := h.idp.Stats().TokenRequests
	tok, err := h.auth.Token(httptest.NewRecorder(), tokenRequest(h))
	if err != nil || tok.AccessToken != sess.AccessToken || h.idp.Stats().TokenRequests != before {
		t.Fatalf("fresh token: %v %v", tok, err)
	}
	// Near expiry: 20 concurrent requests make exactly one token call.
	h.auth.now = func() time.Time { return sess.AccessTokenExpiry.Add(-10 * time.Second) }
	var wg sync.WaitGroup
	recs := make([]*httptest.ResponseRecorder, 20)
	toks := make([]string, 20)
	for i := range recs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			recs[i] = httptest.NewRecorder()
			tok, err := h.auth.Token(recs[i], tokenRequest(h))
			if err != nil {
				t.Error(err)
				return
			}
			toks[i] = tok.AccessToken
		}()
	}
	wg.Wait()
	if n := h.idp.Stats().TokenRequests - before; n != 1 {
		t.Fatalf("%d token calls for 20 concurrent refreshes, want 1", n)
	}
	for _, tk := range toks {
		if tk == sess.AccessToken || tk != toks[0] {
			t.Fatalf("requests got different or stale tokens: %q vs %q", tk, toks[0])
		}
	}
	// The rotated refresh token is in the new cookie at once.
	applyCookies(h, recs[0])
	renewed, _ := h.auth.store.Load(tokenRequest(h))
	if renewed.RefreshToken == sess.RefreshToken || renewed.AccessToken != toks[0] {
		t.Fatal("the rotated refresh token was not stored")
	}
	// And it works for the next refresh (the old one is spent at the IdP).
	h.auth.now = func() time.Time { return renewed.AccessTokenExpiry.Add(-10 * time.Second) }
	h.auth.refreshes = refreshGroup{}
	if _, err := h.auth.Token(httptest.NewRecorder(), tokenRequest(h)); err != nil {
		t.Fatalf("second refresh: %v", err)
	}
}

func TestTokenRefreshRefusedEndsSession(t *testing.T) {
	h := newHarness(t, harnessOption{config: offlineAccess})
	h.login("alice")
	sess, _ := h.auth.store.Load(tokenRequest(h))
	h.auth.now = func() time.Time { return sess.AccessTokenExpiry.Add(time.Second) }

	// A network failure keeps the session: retried later.
	h.idp.SetMisbehavior(devidp.Misbehavior{TokenStatus: 503})
	rec := httptest.NewRecorder()
	if _, err := h.auth.Token(rec, tokenRequest(h)); err == nil || errors.Is(err, ErrSessionEnded) {
		t.Fatalf("IdP 503: %v", err)
	}
	if len(rec.Result().Cookies()) != 0 {
		t.Fatal("a failed refresh touched the session")
	}
	// invalid_grant ends it.
	h.idp.SetMisbehavior(devidp.Misbehavior{TokenError: "invalid_grant"})
	rec = httptest.NewRecorder()
	if _, err := h.auth.Token(rec, tokenRequest(h)); !errors.Is(err, ErrSessionEnded) {
		t.Fatalf("invalid_grant: %v, want ErrSessionEnded", err)
	}
	applyCookies(h, rec)
	h.idp.SetMisbehavior(devidp.Misbehavior{})
	h.auth.now = time.Now
	h.mustBeAnonymous()
}

func TestTokenWithoutRefreshToken(t *testing.T) {
	h := newHarness(t)
	h.login("alice")
	sess, _ := h.auth.store.Load(tokenRequest(h))
	if sess.RefreshToken != "" {
		t.Fatal("a refresh token without offline_access")
	}
	h.auth.now = func() time.Time { return sess.AccessTokenExpiry.Add(time.Second) }
	if _, err := h.auth.Token(httptest.NewRecorder(), tokenRequest(h)); !errors.Is(err, ErrLoginRequired) {
		t.Fatalf("got %v, want ErrLoginRequired", err)
	}
	if _, err := h.auth.Token(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil)); !errors.Is(err, ErrNoSession) {
		t.Fatalf("anonymous: %v", err)
	}
}

func TestRefreshedIDTokenIsValidated(t *testing.T) {
	h := newHarness(t, harnessOption{config: offlineAccess})
	h.login("alice")
	sess, _ := h.auth.store.Load(tokenRequest(h))
	h.auth.now = func() time.Time { return sess.AccessTokenExpiry.Add(-time.Second) }
	h.idp.SetMisbehavior(devidp.Misbehavior{WrongAudience: true})
	if _, err := h.auth.Token(httptest.NewRecorder(), tokenRequest(h)); !errors.Is(err, ErrSessionEnded) ||
		!strings.Contains(err.Error(), "ID token") {
		t.Fatalf("refreshed ID token with a wrong aud: %v", err)
	}
}

// TestRefreshGroupWithoutRotation: an IdP that keeps the refresh token
// sends the same one for the next refresh; the remembered result of the
// last one is stale by then and must not be served again.
func TestRefreshGroupWithoutRotation(t *testing.T) {
	var g refreshGroup
	now := time.Now()
	calls := 0
	refresh := func() (*Session, error) {
		calls++
		return &Session{AccessToken: fmt.Sprint("at", calls), AccessTokenExpiry: now.Add(time.Duration(calls) * 70 * time.Second)}, nil
	}
	fresh := func(at time.Time) func(*Session) bool {
		return func(s *Session) bool { return at.Add(refreshMargin).Before(s.AccessTokenExpiry) }
	}
	s1, _ := g.do("same-rt", now, fresh(now), refresh)
	// Just after: the remembered result is still fresh and is shared.
	if s, _ := g.do("same-rt", now.Add(time.Second), fresh(now.Add(time.Second)), refresh); s != s1 || calls != 1 {
		t.Fatalf("a fresh remembered result was not reused (%d calls)", calls)
	}
	// Later, within refreshMemory but with that token near expiry: refresh again.
	later := now.Add(45 * time.Second)
	if s, _ := g.do("same-rt", later, fresh(later), refresh); s == s1 || calls != 2 {
		t.Fatalf("a stale remembered result was served again (%d calls)", calls)
	}
}
