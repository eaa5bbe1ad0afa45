package devidp_test

import (
	"context"
	"crypto"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/oidcauth/oidcauth/internal/devidp"
)

const (
	clientID     = "test-client"
	clientSecret = "s3cr:et+/% ü" // exercises the form-urlencoding of client_secret_basic
	redirectURI  = "http://rp.example/callback?app=1"
	postLogout   = "http://rp.example/bye"
	state        = `st ate&"<x>`
	nonce        = "n-0S6_WzA2Mj"
)

func start(t *testing.T, clients ...devidp.Client) *devidp.Provider {
	t.Helper()
	t.Parallel()
	clients = append(clients, devidp.Client{ID: clientID, Secret: clientSecret,
		RedirectURIs: []string{redirectURI}, PostLogoutRedirectURIs: []string{postLogout}})
	p, err := devidp.Listen("127.0.0.1:0", devidp.Options{Clients: clients, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	})
	return p
}

// authURL returns an authorization URL with PKCE for verifier; kv pairs
// override parameters (an empty value deletes one).
func authURL(p *devidp.Provider, verifier string, kv ...string) string {
	q := url.Values{
		"client_id": {clientID}, "redirect_uri": {redirectURI}, "response_type": {"code"},
		"scope": {"openid email profile offline_access"}, "state": {state}, "nonce": {nonce},
		"code_challenge": {oauth2.S256ChallengeFromVerifier(verifier)}, "code_challenge_method": {"S256"},
	}
	for i := 0; i+1 < len(kv); i += 2 {
		q.Del(kv[i])
		if kv[i+1] != "" {
			q.Set(kv[i], kv[i+1])
		}
	}
	return p.Issuer() + "/authorize?" + q.Encode()
}

// login logs alice in and returns the query the IdP sends back to the RP.
func login(t *testing.T, p *devidp.Provider, authorizeURL string) url.Values {
	t.Helper()
	cb, err := p.Login(t.Context(), nil, authorizeURL, "alice")
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(cb)
	if err != nil || u.Scheme+"://"+u.Host+u.Path != "http://rp.example/callback" || u.Query().Get("app") != "1" {
		t.Fatalf("callback URL %q does not extend the redirect_uri", cb)
	}
	return u.Query()
}

// postForm posts form to the IdP with client_secret_basic and returns the
// status and the decoded JSON body.
func postForm(t *testing.T, p *devidp.Provider, path string, form url.Values) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, p.Issuer()+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(clientSecret))
	return do(t, req)
}

func do(t *testing.T, req *http.Request) (int, map[string]any) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

// codeFlow logs alice in and redeems the code; it returns the token response.
func codeFlow(t *testing.T, p *devidp.Provider) map[string]any {
	t.Helper()
	v := oauth2.GenerateVerifier()
	code := login(t, p, authURL(p, v)).Get("code")
	status, tok := postForm(t, p, "/token", url.Values{"grant_type": {"authorization_code"}, "code": {code},
		"redirect_uri": {redirectURI}, "code_verifier": {v}})
	if status != http.StatusOK {
		t.Fatalf("token exchange: %d %v", status, tok)
	}
	return tok
}

func decodeJWT(t *testing.T, raw string) (header, claims map[string]any, sig []byte) {
	t.Helper()
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", raw)
	}
	for i, v := range []*map[string]any{&header, &claims} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil || json.Unmarshal(b, v) != nil {
			t.Fatalf("bad JWT segment %d", i)
		}
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		t.Fatal(err)
	}
	return header, claims, sig
}

// jwks fetches the published keys by kid.
func jwks(t *testing.T, p *devidp.Provider) map[string]*rsa.PublicKey {
	t.Helper()
	resp, err := http.Get(p.Issuer() + "/jwks")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set struct {
		Keys []struct{ Kty, Kid, Use, Alg, N, E string }
	}
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatal(err)
	}
	keys := make(map[string]*rsa.PublicKey)
	for _, k := range set.Keys {
		n, _ := base64.RawURLEncoding.DecodeString(k.N)
		e, _ := base64.RawURLEncoding.DecodeString(k.E)
		if k.Kty != "RSA" || k.Use != "sig" || k.Alg != "RS256" {
			t.Fatalf("unexpected JWK %+v", k)
		}
		keys[k.Kid] = &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
	}
	return keys
}

// verifyRS256 reports whether raw is validly signed by a key in keys.
func verifyRS256(t *testing.T, raw string, keys map[string]*rsa.PublicKey) bool {
	t.Helper()
	header, _, sig := decodeJWT(t, raw)
	kid, _ := header["kid"].(string)
	key, ok := keys[kid]
	i := strings.LastIndex(raw, ".")
	sum := sha256.Sum256([]byte(raw[:i]))
	return ok && header["alg"] == "RS256" && rsa.VerifyPKCS1v15(key, crypto.SHA256, sum[:], sig) == nil
}

func TestDiscovery(t *testing.T) {
	p := start(t)
	var doc map[string]any
	get := func() {
		resp, err := http.Get(p.Issuer() + "/.well-known/openid-configuration")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		doc = nil
		if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
			t.Fatal(err)
		}
	}
	get()
	want := map[string]any{
		"issuer":                                p.Issuer(),
		"authorization_endpoint":                p.Issuer() + "/authorize",
		"token_endpoint":                        p.Issuer() + "/token",
		"userinfo_endpoint":                     p.Issuer() + "/userinfo",
		"jwks_uri":                              p.Issuer() + "/jwks",
		"end_session_endpoint":                  p.Issuer() + "/end-session",
		"response_types_supported":              []any{"code"},
		"code_challenge_methods_supported":      []any{"S256"},
		"id_token_signing_alg_values_supported": []any{"RS256"},
		"token_endpoint_auth_methods_supported": []any{"client_secret_basic", "client_secret_post"},
		"grant_types_supported":                 []any{"authorization_code", "refresh_token"},
		"backchannel_logout_supported":          true,
		"backchannel_logout_session_supported":  true,
	}
	for k, v := range want {
		if got, _ := json.Marshal(doc[k]); string(got) != string(must(json.Marshal(v))) {
			t.Errorf("%s = %s, want %v", k, got, v)
		}
	}
	if !strings.HasPrefix(p.Issuer(), "http://127.0.0.1:") {
		t.Errorf("issuer %q", p.Issuer())
	}
	p.SetMisbehavior(devidp.Misbehavior{DiscoveryIssuer: "https://elsewhere.example"})
	get()
	if doc["issuer"] != "https://elsewhere.example" || doc["token_endpoint"] != p.Issuer()+"/token" {
		t.Errorf("DiscoveryIssuer: issuer %v, token_endpoint %v", doc["issuer"], doc["token_endpoint"])
	}
	if n := p.Stats().DiscoveryFetches; n != 2 {
		t.Errorf("DiscoveryFetches = %d", n)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestGoOIDC runs the code flow with golang.org/x/oauth2 and go-oidc.
func TestGoOIDC(t *testing.T) {
	p := start(t)
	ctx := t.Context()
	provider, err := oidc.NewProvider(ctx, p.Issuer())
	if err != nil {
		t.Fatal(err)
	}
	cfg := oauth2.Config{ClientID: clientID, ClientSecret: clientSecret, Endpoint: provider.Endpoint(),
		RedirectURL: redirectURI, Scopes: []string{oidc.ScopeOpenID, "email", "profile"}}
	v := oauth2.GenerateVerifier()
	cb := login(t, p, cfg.AuthCodeURL(state, oidc.Nonce(nonce), oauth2.S256ChallengeOption(v)))
	if cb.Get("state") != state {
		t.Errorf("state = %q, want %q", cb.Get("state"), state)
	}
	token, err := cfg.Exchange(ctx, cb.Get("code"), oauth2.VerifierOption(v))
	if err != nil {
		t.Fatal(err)
	}
	if token.RefreshToken != "" {
		t.Error("refresh token issued without offline_access")
	}
	idToken, err := provider.Verifier(&oidc.Config{ClientID: clientID}).Verify(ctx, token.Extra("id_token").(string))
	if err != nil {
		t.Fatal(err)
	}
	if err := idToken.VerifyAccessToken(token.AccessToken); err != nil {
		t.Error(err)
	}
	var claims struct {
		Email, Name, Sid, Azp string
		PreferredUsername     string `json:"preferred_username"`
		AuthTime              int64  `json:"auth_time"`
	}
	if err := idToken.Claims(&claims); err != nil {
		t.Fatal(err)
	}
	if idToken.Subject != "user-alice" || idToken.Nonce != nonce || claims.Sid == "" || claims.Azp != clientID ||
		claims.AuthTime == 0 || claims.PreferredUsername != "alice" {
		t.Errorf("ID token sub %q nonce %q claims %+v", idToken.Subject, idToken.Nonce, claims)
	}
	info, err := provider.UserInfo(ctx, oauth2.StaticTokenSource(token))
	if err != nil {
		t.Fatal(err)
	}
	if info.Subject != "user-alice" || info.Email != "alice@example.com" || !info.EmailVerified {
		t.Errorf("userinfo %+v", info)
	}
	if s := p.Stats(); s.AuthorizeRequests != 1 || s.TokenRequests != 1 || s.UserinfoRequests != 1 || s.JWKSFetches != 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestCodeFlow(t *testing.T) {
	p := start(t)
	tok := codeFlow(t, p)
	if tok["token_type"] != "Bearer" || tok["access_token"] == "" || tok["refresh_token"] == nil ||
		tok["scope"] != "email offline_access openid profile" || tok["expires_in"] != 300.0 {
		t.Errorf("token response %v", tok)
	}
	raw := tok["id_token"].(string)
	if !verifyRS256(t, raw, jwks(t, p)) {
		t.Fatal("ID token signature does not verify with the JWKS")
	}
	header, c, _ := decodeJWT(t, raw)
	now := float64(time.Now().Unix())
	if header["typ"] != "JWT" || c["iss"] != p.Issuer() || c["aud"] != clientID || c["azp"] != clientID ||
		c["sub"] != "user-alice" || c["nonce"] != nonce || c["email"] != "alice@example.com" ||
		c["name"] != "Alice Liddell" || c["exp"].(float64) < now+250 || c["iat"].(float64) > now+1 {
		t.Errorf("header %v claims %v", header, c)
	}

	// Userinfo wants a valid bearer token.
	for at, want := range map[string]int{tok["access_token"].(string): 200, "bogus": 401} {
		req, _ := http.NewRequest(http.MethodGet, p.Issuer()+"/userinfo", nil)
		req.Header.Set("Authorization", "Bearer "+at)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		switch {
		case resp.StatusCode != want:
			t.Errorf("userinfo with %q: %s", at, resp.Status)
		case want == 200 && (body["sub"] != "user-alice" || body["preferred_username"] != "alice"):
			t.Errorf("userinfo: %v", body)
		case want == 401 && !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`):
			t.Errorf("userinfo 401 without invalid_token challenge: %q", resp.Header.Get("WWW-Authenticate"))
		}
	}
}

func TestTokenRejections(t *testing.T) {
	p := start(t)
	v := oauth2.GenerateVerifier()
	redeem := func(code string, kv ...string) (int, map[string]any) {
		form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirectURI}, "code_verifier": {v}}
		for i := 0; i+1 < len(kv); i += 2 {
			form.Set(kv[i], kv[i+1])
		}
		return postForm(t, p, "/token", form)
	}
	newCode := func() string { return login(t, p, authURL(p, v)).Get("code") }
	for name, kv := range map[string][]string{
		"wrong verifier":     {"code_verifier", oauth2.GenerateVerifier()},
		"short verifier":     {"code_verifier", "abc"},
		"wrong redirect_uri": {"redirect_uri", "http://rp.example/callback"},
		"unknown code":       {"code", "nope"},
	} {
		if status, body := redeem(newCode(), kv...); status != 400 || body["error"] != "invalid_grant" {
			t.Errorf("%s: %d %v", name, status, body)
		}
	}

	// A code is single-use, and reusing it revokes what it gave.
	code := newCode()
	status, tok := redeem(code)
	if status != 200 {
		t.Fatalf("first use: %d %v", status, tok)
	}
	if status, body := redeem(code); status != 400 || body["error"] != "invalid_grant" {
		t.Errorf("second use: %d %v", status, body)
	}
	if status, body := postForm(t, p, "/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok["refresh_token"].(string)}}); status != 400 {
		t.Errorf("refresh token survived code reuse: %d %v", status, body)
	}

	// Client authentication: client_secret_post works, a bad secret is 401.
	form := url.Values{"grant_type": {"authorization_code"}, "code": {newCode()}, "redirect_uri": {redirectURI},
		"code_verifier": {v}, "client_id": {clientID}, "client_secret": {clientSecret}}
	req, _ := http.NewRequest(http.MethodPost, p.Issuer()+"/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if status, body := do(t, req); status != 200 {
		t.Errorf("client_secret_post: %d %v", status, body)
	}
	form.Set("code", newCode())
	form.Set("client_secret", "wrong")
	req, _ = http.NewRequest(http.MethodPost, p.Issuer()+"/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if status, body := do(t, req); status != 401 || body["error"] != "invalid_client" {
		t.Errorf("bad secret: %d %v", status, body)
	}
}

func TestAuthorizeRejections(t *testing.T) {
	p := start(t)
	v := oauth2.GenerateVerifier()
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	// Bad client or redirect_uri: an error page, never a redirect.
	for _, kv := range [][]string{{"client_id", "unknown"}, {"redirect_uri", "http://evil.example/cb"}, {"redirect_uri", ""}} {
		resp, err := noRedirect.Get(authURL(p, v, kv...))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 || resp.Header.Get("Location") != "" {
			t.Errorf("%v: %s, Location %q", kv, resp.Status, resp.Header.Get("Location"))
		}
	}
	// Other errors go back to the client, with the state.
	for _, tc := range []struct{ want, key, value string }{
		{"invalid_request", "code_challenge", ""},
		{"invalid_request", "code_challenge_method", "plain"},
		{"invalid_scope", "scope", "email"},
		{"unsupported_response_type", "response_type", "token"},
		{"login_required", "prompt", "none"},
	} {
		q := login(t, p, authURL(p, v, tc.key, tc.value))
		if q.Get("error") != tc.want || q.Get("error_description") == "" || q.Get("state") != state || q.Has("code") {
			t.Errorf("%s=%q: callback %v", tc.key, tc.value, q)
		}
	}
	if q := login(t, p, authURL(p, v, "state", "")); q.Has("state") || !q.Has("code") {
		t.Errorf("without state: callback %v", q)
	}
	p.SetMisbehavior(devidp.Misbehavior{AuthorizeError: "access_denied"})
	if q := login(t, p, authURL(p, v)); q.Get("error") != "access_denied" || q.Get("state") != state {
		t.Errorf("AuthorizeError: callback %v", q)
	}
	p.SetMisbehavior(devidp.Misbehavior{})
	if _, err := p.Login(t.Context(), nil, authURL(p, v), "mallory"); err == nil || !strings.Contains(err.Error(), "400") {
		t.Errorf("unknown user: %v", err)
	}
}

func TestLoginPage(t *testing.T) {
	p := start(t)
	resp, err := http.Get(authURL(p, oauth2.GenerateVerifier()))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body := string(must(io.ReadAll(resp.Body)))
	for _, want := range []string{"DEVELOPMENT IDENTITY PROVIDER", "Alice Liddell", "bob@example.com",
		`name="user" value="carol"`, `value="st ate&amp;&#34;&lt;x&gt;"`} {
		if !strings.Contains(body, want) {
			t.Errorf("login page lacks %q", want)
		}
	}
	if resp.StatusCode != 200 || strings.Contains(body, `"<x>`) {
		t.Errorf("%s, unescaped state in page", resp.Status)
	}
	if resp, err := http.Get(p.Issuer() + "/nope"); err != nil || resp.StatusCode != 404 {
		t.Errorf("unknown path: %v %v", resp, err)
	}
}

func TestRefreshRotation(t *testing.T) {
	p := start(t)
	tok := codeFlow(t, p)
	_, first, _ := decodeJWT(t, tok["id_token"].(string))
	refresh := func(rt string) (int, map[string]any) {
		return postForm(t, p, "/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
	}
	status, next := refresh(tok["refresh_token"].(string))
	if status != 200 || next["refresh_token"] == tok["refresh_token"] || next["id_token"] == nil {
		t.Fatalf("refresh: %d %v", status, next)
	}
	_, c, _ := decodeJWT(t, next["id_token"].(string))
	if c["sub"] != first["sub"] || c["sid"] != first["sid"] || c["nonce"] != nil {
		t.Errorf("refreshed ID token claims %v", c)
	}
	if status, body := refresh(tok["refresh_token"].(string)); status != 400 || body["error"] != "invalid_grant" {
		t.Errorf("old refresh token: %d %v", status, body)
	}
	if status, body := refresh(next["refresh_token"].(string)); status != 200 {
		t.Errorf("rotated refresh token: %d %v", status, body)
	}
}

func TestMisbehaviorIDToken(t *testing.T) {
	p := start(t)
	provider, err := oidc.NewProvider(t.Context(), p.Issuer())
	if err != nil {
		t.Fatal(err)
	}
	verifier := provider.Verifier(&oidc.Config{ClientID: clientID})
	for _, tc := range []struct {
		name     string
		m        devidp.Misbehavior
		rejected bool // by go-oidc
		check    func(h, c map[string]any, sig []byte, raw string) bool
	}{
		{"AlgNone", devidp.Misbehavior{AlgNone: true}, true,
			func(h, c map[string]any, sig []byte, raw string) bool {
				return h["alg"] == "none" && strings.HasSuffix(raw, ".")
			}},
		{"HS256", devidp.Misbehavior{HS256: true}, true, func(h, c map[string]any, sig []byte, raw string) bool {
			mac := hmac.New(sha256.New, []byte(clientSecret))
			mac.Write([]byte(raw[:strings.LastIndex(raw, ".")]))
			return h["alg"] == "HS256" && hmac.Equal(sig, mac.Sum(nil))
		}},
		{"BadSignature", devidp.Misbehavior{BadSignature: true}, true,
			func(h, c map[string]any, sig []byte, raw string) bool { return !verifyRS256(t, raw, jwks(t, p)) }},
		{"UnknownKID", devidp.Misbehavior{UnknownKID: true}, true,
			func(h, c map[string]any, sig []byte, raw string) bool { return jwks(t, p)[h["kid"].(string)] == nil }},
		{"OmitKID", devidp.Misbehavior{OmitKID: true}, false,
			func(h, c map[string]any, sig []byte, raw string) bool { return h["kid"] == nil && h["alg"] == "RS256" }},
		{"WrongIssuer", devidp.Misbehavior{WrongIssuer: true}, true,
			func(h, c map[string]any, sig []byte, raw string) bool { return c["iss"] != p.Issuer() }},
		{"WrongAudience", devidp.Misbehavior{WrongAudience: true}, true,
			func(h, c map[string]any, sig []byte, raw string) bool { return c["aud"] != clientID }},
		{"ExtraAudience", devidp.Misbehavior{ExtraAudience: "other"}, false, func(h, c map[string]any, sig []byte, raw string) bool {
			aud, _ := c["aud"].([]any)
			return slices.Equal(aud, []any{clientID, "other"}) && c["azp"] == nil
		}},
		{"WrongAZP", devidp.Misbehavior{WrongAZP: true}, false,
			func(h, c map[string]any, sig []byte, raw string) bool {
				return c["azp"] != clientID && c["aud"] == clientID
			}},
		{"Expired", devidp.Misbehavior{Expired: true}, true,
			func(h, c map[string]any, sig []byte, raw string) bool {
				return c["exp"].(float64) < float64(time.Now().Unix())
			}},
		{"FutureIAT", devidp.Misbehavior{FutureIAT: time.Hour}, false,
			func(h, c map[string]any, sig []byte, raw string) bool {
				return c["iat"].(float64) > float64(time.Now().Unix()+3000)
			}},
		{"OmitIAT+OmitSub", devidp.Misbehavior{OmitIAT: true, OmitSub: true}, false,
			func(h, c map[string]any, sig []byte, raw string) bool { return c["iat"] == nil && c["sub"] == nil }},
		{"WrongNonce", devidp.Misbehavior{WrongNonce: true}, false,
			func(h, c map[string]any, sig []byte, raw string) bool {
				return c["nonce"] != nil && c["nonce"] != nonce
			}},
		{"OmitNonce", devidp.Misbehavior{OmitNonce: true}, false,
			func(h, c map[string]any, sig []byte, raw string) bool { return c["nonce"] == nil }},
		{"OmitProfileClaims", devidp.Misbehavior{OmitProfileClaims: true}, false,
			func(h, c map[string]any, sig []byte, raw string) bool { return c["email"] == nil && c["name"] == nil }},
		{"BigClaimBytes", devidp.Misbehavior{BigClaimBytes: 6000}, false, func(h, c map[string]any, sig []byte, raw string) bool {
			return len(c["big"].(string)) == 6000 && len(raw) > 8000
		}},
	} {
		p.SetMisbehavior(tc.m)
		raw := codeFlow(t, p)["id_token"].(string)
		h, c, sig := decodeJWT(t, raw)
		if !tc.check(h, c, sig, raw) {
			t.Errorf("%s: header %v claims %v", tc.name, h, c)
		}
		if _, err := verifier.Verify(t.Context(), raw); (err != nil) != tc.rejected {
			t.Errorf("%s: go-oidc Verify error = %v, want rejected %v", tc.name, err, tc.rejected)
		}
	}
}

func TestMisbehaviorEndpoints(t *testing.T) {
	p := start(t)
	p.SetMisbehavior(devidp.Misbehavior{OmitProfileClaims: true, UserinfoSubject: "someone-else"})
	tok := codeFlow(t, p)
	req, _ := http.NewRequest(http.MethodPost, p.Issuer()+"/userinfo", nil)
	req.Header.Set("Authorization", "Bearer "+tok["access_token"].(string))
	if status, body := do(t, req); status != 200 || body["sub"] != "someone-else" || body["email"] != "alice@example.com" {
		t.Errorf("userinfo: %d %v", status, body)
	}

	v := oauth2.GenerateVerifier()
	code := login(t, p, authURL(p, v)).Get("code")
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirectURI}, "code_verifier": {v}}
	p.SetMisbehavior(devidp.Misbehavior{TokenError: "temporarily_unavailable"})
	if status, body := postForm(t, p, "/token", form); status != 400 || body["error"] != "temporarily_unavailable" {
		t.Errorf("TokenError: %d %v", status, body)
	}
	p.SetMisbehavior(devidp.Misbehavior{TokenStatus: 503})
	if status, body := postForm(t, p, "/token", form); status != 503 || body != nil {
		t.Errorf("TokenStatus: %d %v", status, body)
	}
	p.SetMisbehavior(devidp.Misbehavior{JWKSStatus: 500})
	if resp, err := http.Get(p.Issuer() + "/jwks"); err != nil || resp.StatusCode != 500 {
		t.Errorf("JWKSStatus: %v %v", resp, err)
	}
	p.SetMisbehavior(devidp.Misbehavior{TokenDelay: time.Minute})
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	req, _ = http.NewRequestWithContext(ctx, http.MethodPost, p.Issuer()+"/token", strings.NewReader(form.Encode()))
	begin := time.Now()
	if _, err := http.DefaultClient.Do(req); err == nil || time.Since(begin) > 5*time.Second {
		t.Errorf("TokenDelay: err %v after %v", err, time.Since(begin))
	}
	// A delayed request does not hold up Close.
	go func() {
		req, _ := http.NewRequest(http.MethodPost, p.Issuer()+"/token", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	time.Sleep(100 * time.Millisecond)
	begin = time.Now()
	if err := p.Close(); err != nil || time.Since(begin) > 2*time.Second {
		t.Errorf("Close: %v after %v", err, time.Since(begin))
	}
}

func TestRotateKey(t *testing.T) {
	p := start(t)
	old := jwks(t, p)
	if err := p.RotateKey(true); err != nil {
		t.Fatal(err)
	}
	keys := jwks(t, p)
	h, _, _ := decodeJWT(t, codeFlow(t, p)["id_token"].(string))
	if len(keys) != 2 || old[h["kid"].(string)] != nil || keys[h["kid"].(string)] == nil {
		t.Errorf("after RotateKey(true): %d keys, kid %v", len(keys), h["kid"])
	}
	if err := p.RotateKey(false); err != nil {
		t.Fatal(err)
	}
	if keys := jwks(t, p); len(keys) != 1 {
		t.Errorf("after RotateKey(false): %d keys", len(keys))
	}
	// SignJWT uses the current key and lets tests shape the header.
	raw := p.SignJWT(map[string]any{"typ": "logout+jwt"}, map[string]any{"iss": p.Issuer()})
	if h, c, _ := decodeJWT(t, raw); h["typ"] != "logout+jwt" || c["iss"] != p.Issuer() || !verifyRS256(t, raw, jwks(t, p)) {
		t.Errorf("SignJWT: header %v claims %v", h, c)
	}
}

func TestEndSession(t *testing.T) {
	logoutTokens := make(chan string, 1)
	rp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		logoutTokens <- r.PostFormValue("logout_token")
	}))
	defer rp.Close()
	p := start(t, devidp.Client{ID: "other", Secret: "x", PostLogoutRedirectURIs: []string{"http://other.example/bye"}})
	p.AddClient(devidp.Client{ID: clientID, Secret: clientSecret, RedirectURIs: []string{redirectURI},
		PostLogoutRedirectURIs: []string{postLogout}, BackchannelLogoutURI: rp.URL})
	tok := codeFlow(t, p)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	endSession := func(q url.Values) *http.Response {
		resp, err := noRedirect.Get(p.Issuer() + "/end-session?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	hint := tok["id_token"].(string)
	for _, q := range []url.Values{
		{"id_token_hint": {hint}, "post_logout_redirect_uri": {"http://other.example/bye"}}, // another client's URI
		{"id_token_hint": {hint}, "client_id": {"other"}},                                   // client mismatch
		{"id_token_hint": {hint + "x"}},                                                     // bad signature
	} {
		if resp := endSession(q); resp.StatusCode != 400 || resp.Header.Get("Location") != "" {
			t.Errorf("%v: %s %q", q, resp.Status, resp.Header.Get("Location"))
		}
	}
	resp := endSession(url.Values{"id_token_hint": {hint}, "post_logout_redirect_uri": {postLogout}, "state": {state}})
	if loc := resp.Header.Get("Location"); resp.StatusCode != 302 || loc != postLogout+"?state="+url.QueryEscape(state) {
		t.Errorf("logout: %s %q", resp.Status, loc)
	}
	select {
	case raw := <-logoutTokens:
		provider, err := oidc.NewProvider(t.Context(), p.Issuer())
		if err != nil {
			t.Fatal(err)
		}
		lt, err := provider.Verifier(&oidc.Config{ClientID: clientID}).VerifyLogout(t.Context(), raw)
		if _, c, _ := decodeJWT(t, hint); err != nil || lt.SessionID != c["sid"] || lt.Subject != "user-alice" {
			t.Errorf("logout token %+v: %v", lt, err)
		}
	case <-time.After(5 * time.Second):
		t.Error("no back-channel logout token")
	}
	if status, _ := postForm(t, p, "/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok["refresh_token"].(string)}}); status != 400 {
		t.Errorf("refresh after logout: %d", status)
	}
	if resp := endSession(nil); resp.StatusCode != 200 {
		t.Errorf("bare logout: %s", resp.Status)
	}
}
