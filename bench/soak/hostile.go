package main

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// hostileKinds are the hostile steps; each must get a 4xx and no session.
var hostileKinds = []string{
	"tampered cookie",
	"replayed callback",
	"bad state",
	"forged logout token",
	"garbage Authorization",
	"cross-site logout",
}

// hostile sends one request of hostile kind k (the variant chosen at
// random) and checks the answer. The browser's own session must survive
// it. It reports whether the cycle can go on.
func (w *worker) hostile(ctx context.Context, k int) bool {
	kind := hostileKinds[k]
	step := "hostile: " + kind
	base := w.s.base
	session := ""
	for _, c := range w.jar.Cookies(mustURL(base)) {
		if c.Name == cookieName {
			session = c.Value
		}
	}
	var (
		method, target = "GET", base + "me"
		form           url.Values
		header         = []string{"Accept", "application/json"}
		client         = w.s.raw // no jar: only what is set below is sent
		want           = http.StatusUnauthorized
	)
	switch kind {
	case "tampered cookie":
		header = append(header, "Cookie", cookieName+"="+tamper(session, w.rnd.IntN(4)))
	case "replayed callback":
		target, want = w.callback.url, http.StatusBadRequest
		header = append(header, "Cookie", w.callback.cookie)
	case "bad state":
		want = http.StatusBadRequest
		code := url.QueryEscape(randomText(16))
		switch w.rnd.IntN(3) {
		case 0:
			target = base + "auth/callback?code=" + code + "&state=" + randomText(32)
		case 1:
			target = base + "auth/callback?code=" + code
		default: // a state and a login cookie for it, neither from the app
			state := randomText(32)
			sum := sha256.Sum256([]byte(state))
			target = base + "auth/callback?code=" + code + "&state=" + state
			header = append(header, "Cookie", cookieName+"_tx_"+hex.EncodeToString(sum[:8])+"="+randomText(120))
		}
	case "forged logout token":
		method, target, want = "POST", base+"backchannel-logout", http.StatusBadRequest
		form = url.Values{"logout_token": {w.s.forgedLogoutToken(w.user.Subject, w.rnd.IntN(4))}}
	case "garbage Authorization":
		header = append(header, "Authorization", []string{
			"Bearer " + randomText(40),
			"Bearer " + w.s.forgedLogoutToken(w.user.Subject, 2),
			"Basic " + base64.StdEncoding.EncodeToString([]byte(w.user.PreferredUsername+":password")),
			"Bearer " + strings.Repeat("A", 8<<10),
			"bEaReR",
		}[w.rnd.IntN(5)])
	case "cross-site logout":
		method, target, want, client = "POST", base+"logout", http.StatusForbidden, w.client
		form = url.Values{}
		header = []string{"Accept", "text/html", "Origin", "https://evil.example"}
	}
	r, ok := w.send(ctx, client, step, method, target, form, header...)
	if !ok {
		return false
	}
	switch {
	case r.status < 400 || r.status > 499:
		w.s.rec.fail("hostile let through", "%s: %s %s: %d, want a 4xx: %.200q", step, method, redact(target), r.status, r.body)
		return false
	case sessionSet(r.header) != "":
		w.s.rec.fail("hostile got a session", "%s: %s %s set a session cookie", step, method, redact(target))
		return false
	case r.status != want:
		w.s.rec.fail("unexpected status", "%s: %s %s: %d, want %d: %.200q", step, method, redact(target), r.status, want, r.body)
		return false
	}
	// Whatever it was, it did not end or change this browser's session.
	return w.browse(ctx, 1)
}

// tamper alters a session cookie value: a flipped character in the id,
// a truncation, junk appended, or its two halves swapped.
func tamper(v string, how int) string {
	if len(v) < 4 {
		return "x" + v
	}
	switch how {
	case 0:
		i := len(v) / 3
		c := byte('A')
		if v[i] == 'A' {
			c = 'B'
		}
		return v[:i] + string(c) + v[i+1:]
	case 1:
		return v[:len(v)-3]
	case 2:
		return v + "AAAA"
	default:
		if id, tag, ok := strings.Cut(v, "."); ok {
			return tag + "." + id
		}
		return v[len(v)/2:] + v[:len(v)/2]
	}
}

// forgedLogoutToken is a logout token for sub (no sid: it would end all of
// the user's sessions) that the provider did not issue: signed with the
// soak's own key under a kid of its own (how 0) or no kid (1), an RS256
// token with a random signature (2), or unsigned, alg none (3).
func (s *soak) forgedLogoutToken(sub string, how int) string {
	issuer, clientID := s.provider()
	now := time.Now()
	claims := map[string]any{
		"iss": issuer, "aud": clientID, "iat": now.Unix(), "exp": now.Add(2 * time.Minute).Unix(),
		"jti": randomText(16), "sub": sub,
		"events": map[string]any{"http://schemas.openid.net/event/backchannel-logout": map[string]any{}},
	}
	header := map[string]any{"alg": "RS256", "typ": "logout+jwt", "kid": "soak-forged"}
	switch how {
	case 1:
		delete(header, "kid")
	case 3:
		header = map[string]any{"alg": "none", "typ": "logout+jwt"}
	}
	enc := func(v any) string {
		b, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	signed := enc(header) + "." + enc(claims)
	switch how {
	case 3:
		return signed + "."
	case 2:
		return signed + "." + base64.RawURLEncoding.EncodeToString([]byte(randomText(256)))
	}
	digest := sha256.Sum256([]byte(signed))
	sig, err := rsa.SignPKCS1v15(rand.Reader, s.forgeKey, crypto.SHA256, digest[:])
	if err != nil {
		return signed + ".x"
	}
	return signed + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func randomText(n int) string {
	t := rand.Text()
	for len(t) < n {
		t += rand.Text()
	}
	return t[:n]
}
