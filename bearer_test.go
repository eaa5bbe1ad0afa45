package oidcauth

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

func apiAudience(c *Config) { c.APIAudience = "test-api" }

func accessClaims(h *harness) map[string]any {
	now := time.Now()
	return map[string]any{
		"iss": h.idp.Issuer(), "aud": "test-api", "sub": "svc-reporter", "iat": now.Unix(),
		"exp": now.Add(5 * time.Minute).Unix(), "email": "reporter@example.com", "name": "Reporter",
	}
}

func bearerGet(t *testing.T, h *harness, path, token string) (*http.Response, map[string]string) {
	t.Helper()
	resp := h.get(path, "Authorization", "Bearer "+token, "Accept", "application/json")
	var body map[string]string
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp, body
}

func TestBearerTokens(t *testing.T) {
	h := newHarness(t, harnessOption{config: apiAudience})
	h.client = newBrowser() // no cookies
	good := h.idp.SignJWT(nil, accessClaims(h))
	resp, body := bearerGet(t, h, "/me", good)
	if resp.StatusCode != http.StatusOK || body["sub"] != "svc-reporter" || body["email"] != "reporter@example.com" {
		t.Fatalf("valid bearer: %d %v", resp.StatusCode, body)
	}
	if resp, _ := bearerGet(t, h, "/private", good); resp.StatusCode != http.StatusOK {
		t.Fatalf("valid bearer on RequireUser: %d", resp.StatusCode)
	}
	with := func(k string, v any) string {
		c := accessClaims(h)
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return h.idp.SignJWT(nil, c)
	}
	for name, token := range map[string]string{
		"expired":      with("exp", time.Now().Add(-time.Minute).Unix()),
		"wrong aud":    with("aud", "test-app"),
		"wrong iss":    with("iss", "https://evil.example"),
		"not yet":      with("nbf", time.Now().Add(time.Hour).Unix()),
		"alg none":     unsignedJWT("none", accessClaims(h), nil),
		"an ID token":  with("nonce", "n"),
		"no sub":       with("sub", nil),
		"garbage":      "x.y.z",
		"opaque":       "opaque-token-no-introspection",
		"tampered sig": good[:len(good)-3] + "abc",
	} {
		resp, body := bearerGet(t, h, "/private", token)
		if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") != `Bearer error="invalid_token"` {
			t.Errorf("%s: %d %q %v", name, resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body)
		}
		if resp, _ := bearerGet(t, h, "/me", token); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s: /me %d", name, resp.StatusCode)
		}
	}
	// Without any credentials an API client is told to use a bearer token.
	resp = h.get("/private", "Accept", "application/json")
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") != "Bearer" {
		t.Errorf("no credentials: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
}

func TestBearerWinsOverCookieAndIsOffWithoutAudience(t *testing.T) {
	h := newHarness(t, harnessOption{config: apiAudience})
	h.login("alice")
	h.mustBe("user-alice")
	if _, body := bearerGet(t, h, "/me", h.idp.SignJWT(nil, accessClaims(h))); body["sub"] != "svc-reporter" {
		t.Fatalf("cookie + bearer: %v, want the bearer's user", body)
	}
	if resp, _ := bearerGet(t, h, "/me", "garbage"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("cookie + bad bearer: %d, want 401", resp.StatusCode)
	}
	// Without OIDC_API_AUDIENCE bearer tokens are not looked at.
	h2 := newHarness(t)
	h2.client = newBrowser()
	if resp, _ := bearerGet(t, h2, "/me", h2.idp.SignJWT(nil, accessClaims(h2))); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("bearer with bearer mode off: %d", resp.StatusCode)
	}
}

func TestBearerIdentityAndToken(t *testing.T) {
	h := newHarness(t, harnessOption{config: apiAudience})
	tok := h.idp.SignJWT(nil, accessClaims(h))
	req, _ := http.NewRequest("GET", "/", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	if id := h.auth.Identity(req); id != (Identity{Type: IdentitySubject, Value: "svc-reporter"}) {
		t.Fatalf("identity: %+v", id)
	}
	got, err := h.auth.Token(nil, req)
	if err != nil || got.AccessToken != tok {
		t.Fatalf("Token for a bearer request: %v %v", got, err)
	}
	if strings.Contains(h.logs.String(), tok[:30]) {
		t.Fatal("a bearer token was logged")
	}
}
