package oidcauth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

const logoutEvent = "http://schemas.openid.net/event/backchannel-logout"

// logoutClaims are a valid logout token's claims for sess.
func logoutClaims(h *harness, sub, sid string) map[string]any {
	now := time.Now()
	c := map[string]any{
		"iss": h.idp.Issuer(), "aud": "test-app", "iat": now.Unix(), "exp": now.Add(2 * time.Minute).Unix(),
		"jti": randomString(12), "events": map[string]any{logoutEvent: map[string]any{}},
	}
	if sub != "" {
		c["sub"] = sub
	}
	if sid != "" {
		c["sid"] = sid
	}
	return c
}

// unsignedJWT builds a JWT with the given alg, signing with sign (nil: none).
func unsignedJWT(alg string, claims map[string]any, sign func([]byte) []byte) string {
	h, _ := json.Marshal(map[string]any{"alg": alg, "typ": "JWT"})
	p, _ := json.Marshal(claims)
	in := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(p)
	var sig []byte
	if sign != nil {
		sig = sign([]byte(in))
	}
	return in + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func postLogoutToken(t *testing.T, h *harness, token string) (*http.Response, map[string]string) {
	t.Helper()
	resp, err := http.PostForm(h.url("/backchannel-logout"), url.Values{"logout_token": {token}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]string
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp, body
}

func sessionOf(t *testing.T, h *harness) *Session {
	t.Helper()
	s, err := h.auth.store.Load(reqWithCookies(h))
	if err != nil || s == nil {
		t.Fatalf("no session: %v", err)
	}
	return s
}

// TestBackchannelLogoutRefusesBadTokens: every malformed or forged logout
// token gets 400 JSON and leaves the session alone.
func TestBackchannelLogoutRefusesBadTokens(t *testing.T) {
	h := newHarness(t)
	h.login("alice")
	sess := sessionOf(t, h)
	valid := func() map[string]any { return logoutClaims(h, sess.Subject, sess.SID) }
	with := func(k string, v any) map[string]any {
		c := valid()
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	hs256 := func(in []byte) []byte {
		m := hmac.New(sha256.New, []byte(h.reg.Secret))
		m.Write(in)
		return m.Sum(nil)
	}
	replayed := h.idp.SignJWT(nil, logoutClaims(h, "user-nobody", ""))
	if resp, _ := postLogoutToken(t, h, replayed); resp.StatusCode != http.StatusOK {
		t.Fatalf("first use of a valid token: %d", resp.StatusCode)
	}
	for name, token := range map[string]string{
		"alg none":              unsignedJWT("none", valid(), nil),
		"HS256":                 unsignedJWT("HS256", valid(), hs256),
		"no events":             h.idp.SignJWT(nil, with("events", nil)),
		"wrong event":           h.idp.SignJWT(nil, with("events", map[string]any{"http://schemas.openid.net/event/other": map[string]any{}})),
		"event not JSON object": h.idp.SignJWT(nil, with("events", map[string]any{logoutEvent: "yes"})),
		"with nonce":            h.idp.SignJWT(nil, with("nonce", "n")),
		"wrong aud":             h.idp.SignJWT(nil, with("aud", "other-app")),
		"wrong iss":             h.idp.SignJWT(nil, with("iss", "https://evil.example")),
		"no jti":                h.idp.SignJWT(nil, with("jti", nil)),
		"no iat":                h.idp.SignJWT(nil, with("iat", nil)),
		"expired":               h.idp.SignJWT(nil, with("exp", time.Now().Add(-time.Minute).Unix())),
		"no sub nor sid":        h.idp.SignJWT(nil, with("sub", nil)),
		"bad signature":         h.idp.SignJWT(nil, valid())[:len(h.idp.SignJWT(nil, valid()))-4] + "AAAA",
		"replayed jti":          replayed,
		"garbage":               "not.a.jwt",
		"empty":                 "",
	} {
		if name == "no sub nor sid" {
			c := valid()
			delete(c, "sub")
			delete(c, "sid")
			token = h.idp.SignJWT(nil, c)
		}
		resp, body := postLogoutToken(t, h, token)
		if resp.StatusCode != http.StatusBadRequest || body["error"] != "invalid_request" || resp.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: %d %v", name, resp.StatusCode, body)
		}
		h.mustBe("user-alice")
	}
	if resp, _ := http.Get(h.url("/backchannel-logout")); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d", resp.StatusCode)
	}
}

// TestBackchannelLogoutEndsSessions covers sid and sub tokens, an unknown
// sid and another user's session, and the IdP's own back-channel call.
func TestBackchannelLogoutEndsSessions(t *testing.T) {
	h := newHarness(t)
	h.login("alice")
	alice := h.client
	sess := sessionOf(t, h)
	if sess.SID == "" {
		t.Fatal("the session did not record the IdP's sid")
	}
	h.client = newBrowser()
	h.login("bob")
	bob := h.client

	// Unknown sid: 200, nobody touched.
	if resp, _ := postLogoutToken(t, h, h.idp.SignJWT(nil, logoutClaims(h, "", "unknown-sid"))); resp.StatusCode != http.StatusOK {
		t.Fatalf("unknown sid: %d", resp.StatusCode)
	}
	h.client = alice
	h.mustBe("user-alice")

	// Alice's sid: her session ends, Bob's stays.
	resp, _ := postLogoutToken(t, h, h.idp.SignJWT(map[string]any{"typ": "logout+jwt"}, logoutClaims(h, "", sess.SID)))
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("valid token: %d", resp.StatusCode)
	}
	h.mustBeAnonymous()
	h.client = bob
	h.mustBe("user-bob")

	// A new login after the logout is not affected by it.
	h.client = alice
	h.login("alice")
	h.mustBe("user-alice")

	// sub only: all of Bob's sessions end.
	h.client = newBrowser()
	h.login("bob")
	bob2 := h.client
	if resp, _ := postLogoutToken(t, h, h.idp.SignJWT(nil, logoutClaims(h, "user-bob", ""))); resp.StatusCode != http.StatusOK {
		t.Fatalf("sub token: %d", resp.StatusCode)
	}
	for _, c := range []*http.Client{bob, bob2} {
		h.client = c
		h.mustBeAnonymous()
	}
	h.client = alice
	h.mustBe("user-alice")
	// Bob logging in again afterwards is not caught by the old logout.
	h.client = bob
	h.login("bob")
	h.mustBe("user-bob")
}

func TestBackchannelLogoutFromTheIdP(t *testing.T) {
	h := newHarness(t)
	h.login("carol")
	sess := sessionOf(t, h)
	// The user logs out at the IdP from elsewhere (another app, or the
	// IdP's own page): the IdP posts a logout token to us.
	other := newBrowser()
	resp, err := other.Get(h.idp.Issuer() + "/end-session?id_token_hint=" + url.QueryEscape(sess.IDToken))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	h.mustBeAnonymous()
	if !strings.Contains(h.logs.String(), "back-channel logout") {
		t.Error("no back-channel logout was logged")
	}
}
