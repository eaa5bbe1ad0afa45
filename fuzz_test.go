package oidcauth

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/oidcauth/oidcauth/internal/seal"
)

// Fuzz targets for every parser of untrusted input in this package. Each
// asserts what must hold, not just "no panic": nothing tampered is ever
// accepted, and what is accepted round-trips exactly. make test runs each
// for a while; make fuzz runs them longer. Findings are kept under
// testdata/fuzz/.

func fuzzSealer(t testing.TB) *seal.Sealer {
	s, err := seal.New(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func FuzzSessionCookie(f *testing.F) {
	sealer := fuzzSealer(f)
	// Fixed times: fuzz workers rebuild this setup and must get the same
	// sealed values as the coordinator.
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	store := newCookieStore(sealer, "oidcauth", false, func() time.Time { return now })
	want := &Session{
		User:      User{Subject: "user-1", Email: "u@example.com", Name: "Ü Ser", Issuer: "https://idp"},
		SID:       "sid-1",
		IDToken:   strings.Repeat("x", 300),
		CreatedAt: time.Unix(now.Unix(), 0),
		ExpiresAt: time.Unix(now.Add(time.Hour).Unix(), 0),
	}
	b, _ := want.MarshalBinary()
	valid := sealer.Seal(b, "oidcauth")
	big := *want
	big.IDToken = strings.Repeat("t", 5000)
	bb, _ := big.MarshalBinary()
	chunked := sealer.Seal(bb, "oidcauth")
	f.Add(valid, "")
	f.Add("2."+chunked[:3800], chunked[3800:])
	f.Add(valid[:len(valid)-1], "")
	f.Add("3.x", "y")
	f.Fuzz(func(t *testing.T, first, second string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Cookie", "oidcauth="+first+"; oidcauth.1="+second)
		s, err := store.Load(r)
		if err != nil {
			t.Fatalf("a cookie store failed: %v", err)
		}
		if s != nil && !reflect.DeepEqual(s, want) && !reflect.DeepEqual(s, &big) {
			t.Fatalf("accepted a session that was never sealed: %+v", s)
		}
	})
}

func FuzzLoginTransaction(f *testing.F) {
	a := &Auth{
		cfg:    Config{SessionCookieName: "oidcauth"},
		sealer: fuzzSealer(f),
		txBase: http.Cookie{Path: "/auth/callback"},
		now:    func() time.Time { return time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC) },
		log:    newTextLogger(&strings.Builder{}),
	}
	tx := loginTx{State: "state-0123456789", Nonce: "nonce", Verifier: "verifier", Next: "/next", Created: a.now().Unix()}
	b, _ := json.Marshal(tx)
	name := a.txCookieName(tx.State)
	valid := a.sealer.Seal(b, name)
	f.Add(tx.State, valid)
	f.Add(tx.State+"x", valid)
	f.Add(tx.State, valid[:20])
	f.Add("", "")
	f.Fuzz(func(t *testing.T, state, value string) {
		a.used = usedStates{} // each input on its own
		r := httptest.NewRequest("GET", "/auth/callback", nil)
		r.Header.Set("Cookie", a.txCookieName(state)+"="+value)
		got, err := a.takeTransaction(httptest.NewRecorder(), r, state)
		if err == nil && (*got != tx || state != tx.State) {
			t.Fatalf("accepted a transaction that was never sealed: state %q, %+v", state, got)
		}
		if err != nil && errorAs(err).Status != http.StatusBadRequest {
			t.Fatalf("status %d", errorAs(err).Status)
		}
	})
}

func FuzzCallbackQuery(f *testing.F) {
	h := newHarness(f)
	auth := h.startLogin("/x")
	state := mustParse(f, auth).Query().Get("state")
	cb := mustParse(f, h.idpLogin(auth, "alice"))
	txCookie := reqWithCookiesFor(h, "/auth/callback")
	f.Add(cb.RawQuery)
	f.Add("state=" + state + "&code=forged")
	f.Add("error=access_denied&error_description=%3Cb%3E&state=" + state)
	f.Add("state=%ZZ&code=")
	handler := h.auth.Handler(http.NotFoundHandler())
	f.Fuzz(func(t *testing.T, rawQuery string) {
		r := httptest.NewRequest("GET", "/auth/callback", nil)
		r.URL.RawQuery = rawQuery // as is, even what net/http would refuse
		r.Header.Set("Cookie", txCookie)
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, r)
		switch rec.Code {
		case http.StatusFound:
			// Only the genuine callback, once, may log in.
			if rawQuery != cb.RawQuery {
				t.Fatalf("logged in with %q", rawQuery)
			}
		case http.StatusBadRequest, http.StatusBadGateway, http.StatusServiceUnavailable:
			for _, c := range rec.Result().Cookies() {
				if c.Name == "oidcauth" && c.MaxAge >= 0 {
					t.Fatalf("a failed callback set a session: %q", rawQuery)
				}
			}
		default:
			t.Fatalf("callback %q: status %d", rawQuery, rec.Code)
		}
	})
}

func FuzzLogoutToken(f *testing.F) {
	h := newHarness(f)
	claims := logoutClaims(h, "user-alice", "sid-1")
	valid := h.idp.SignJWT(nil, claims)
	f.Add(valid)
	f.Add(valid + "x")
	f.Add(strings.Replace(valid, ".", "..", 1))
	f.Add(unsignedJWT("none", claims, nil))
	f.Fuzz(func(t *testing.T, token string) {
		lt, err := h.auth.verifyLogoutToken(t.Context(), token)
		if err == nil && (lt.JTI != claims["jti"] || lt.Subject != "user-alice" || lt.SID != "sid-1") {
			t.Fatalf("accepted a logout token that was never signed: %+v", lt)
		}
	})
}

func FuzzBearerHeader(f *testing.F) {
	h := newHarness(f, harnessOption{config: apiAudience})
	valid := h.idp.SignJWT(nil, accessClaims(h))
	f.Add("Bearer " + valid)
	f.Add("bearer " + valid + " ")
	f.Add("Bearer " + valid[:len(valid)-2])
	f.Add("Basic dXNlcjpwYXNz")
	f.Add("Bearer ")
	f.Fuzz(func(t *testing.T, header string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Authorization", header)
		s, r := h.auth.state(r)
		sess, err := s.session()
		if err != nil {
			t.Fatalf("store error for a bearer request: %v", err)
		}
		if sess != nil && (sess.Subject != "svc-reporter" || !sess.Bearer) {
			t.Fatalf("accepted a bearer token that was never signed: %q", header)
		}
		_ = r
	})
}

func FuzzConfigFromEnv(f *testing.F) {
	f.Add("https://idp.example", "app", "s", "https://app.example/cb", "openid email", "24h", "oidcauth", "auto", strings.Repeat("0123456789", 4))
	f.Add("http://localhost:1", "", "", "http://127.0.0.1/x", "email", "-1s", "a b", "maybe", "short")
	f.Fuzz(func(t *testing.T, issuer, id, secret, redirect, scopes, maxAge, cookie, userinfo, sessionSecret string) {
		env := map[string]string{
			"OIDC_ISSUER": issuer, "OIDC_CLIENT_ID": id, "OIDC_CLIENT_SECRET": secret, "OIDC_REDIRECT_URI": redirect,
			"OIDC_SCOPES": scopes, "SESSION_MAX_AGE": maxAge, "SESSION_COOKIE_NAME": cookie, "OIDC_USERINFO": userinfo,
			"SESSION_SECRET": sessionSecret,
		}
		// Secrets are never echoed: mark the secret and look for the mark.
		const mark = "Zq9#"
		if !strings.Contains(issuer+id+secret+redirect+scopes+maxAge+cookie+userinfo, mark) {
			env["SESSION_SECRET"] = mark + sessionSecret
			if _, err := configFromLookup(lookupIn(env)); err != nil && strings.Contains(err.Error(), mark) {
				t.Fatalf("the error echoes SESSION_SECRET: %v", err)
			}
			env["SESSION_SECRET"] = sessionSecret
		}
		cfg, err := configFromLookup(lookupIn(env))
		if err != nil {
			return
		}
		if checkURL(cfg.Issuer) != nil || checkURL(cfg.RedirectURI) != nil || len(cfg.SessionSecret) < MinSecretLength ||
			cfg.ClientID == "" || cfg.ClientSecret == "" || cfg.SessionMaxAge < 0 {
			t.Fatalf("an invalid config passed: %+v", cfg)
		}
		if d := cfg.withDefaults(); !strings.Contains(" "+strings.Join(d.Scopes, " ")+" ", " openid ") || !validCookieName(d.SessionCookieName) {
			t.Fatalf("defaults broke the config: %+v", d)
		}
	})
}

func FuzzSessionCodec(f *testing.F) {
	b, _ := sampleSession().MarshalBinary()
	f.Add(b)
	f.Add([]byte{1})
	f.Add([]byte{1, 1, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, in []byte) {
		var s Session
		if s.UnmarshalBinary(in) != nil {
			return
		}
		out, _ := s.MarshalBinary()
		var again Session
		if err := again.UnmarshalBinary(out); err != nil || !reflect.DeepEqual(s, again) {
			t.Fatalf("round trip changed the session: %v\n%+v\n%+v", err, s, again)
		}
	})
}
