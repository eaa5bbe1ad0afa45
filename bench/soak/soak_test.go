package main

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/oidcauth/oidcauth/internal/devidp"
)

// The checks that fail a run must tell the right user's pages from
// anybody else's: otherwise a session served to the wrong user passes.
func TestWrongUser(t *testing.T) {
	users := devidp.DemoUsers()
	alice, bob := users[0], users[1]
	private := func(u devidp.User) string {
		return `<p>Hello, <strong id="user-name">` + u.Name + `</strong>.</p><p>Subject: <code>` + u.Subject + `</code>, username: <code>` + u.PreferredUsername + `</code></p>`
	}
	me := func(u devidp.User) string {
		b, _ := json.Marshal(map[string]string{"sub": u.Subject, "email": u.Email, "name": u.Name})
		return string(b)
	}
	home := func(u devidp.User) string {
		return `<p>Signed in as <strong id="user-name">` + u.Name + `</strong> (x).</p>`
	}
	for _, c := range []struct {
		page, body string
		ok         bool
		why        string
	}{
		{"private", private(alice), true, ""},
		{"private", private(bob), false, "bob's"},
		{"private", "<p>You are not signed in.</p>", false, "lacks"},
		{"me", me(alice), true, ""},
		{"me", me(bob), false, "user-bob"},
		{"me", `{"sub":"user-alice","email":"bob@example.com","name":"Alice Liddell"}`, false, "bob@example.com"},
		{"me", `{"error":"unauthenticated"}`, false, "got"},
		{"me", `<html>`, false, "not JSON"},
		{"", home(alice), true, ""},
		{"", home(bob), false, "bob's"},
	} {
		why := wrongUser(c.page, c.body, alice, users)
		if (why == "") != c.ok || !strings.Contains(why, c.why) {
			t.Errorf("/%s %.60q: %q, want ok=%v (%q)", c.page, c.body, why, c.ok, c.why)
		}
	}
}

func TestTamperAlwaysChanges(t *testing.T) {
	v := strings.Repeat("A", 43) + "." + strings.Repeat("b", 43)
	for how := range 4 {
		if got := tamper(v, how); got == v || got == "" {
			t.Errorf("tamper(%d) = %q", how, got)
		}
	}
	if tamper("ab", 0) == "ab" {
		t.Error("a short value went through unchanged")
	}
}

// A hostile request that gets a session must be seen; clearing the
// cookie is not getting one.
func TestSessionSet(t *testing.T) {
	for _, c := range []struct {
		setCookie []string
		want      string
	}{
		{nil, ""},
		{[]string{"oidcauth=abc; Path=/; HttpOnly"}, "abc"},
		{[]string{"oidcauth=; Path=/; Max-Age=0"}, ""},
		{[]string{"oidcauth=abc; Path=/; Max-Age=0"}, ""},
		{[]string{"oidcauth_tx_0011=abc; Path=/auth/callback"}, ""},
		{[]string{"other=1", "oidcauth=xyz; Max-Age=86400"}, "xyz"},
	} {
		if got := sessionSet(http.Header{"Set-Cookie": c.setCookie}); got != c.want {
			t.Errorf("%q: %q, want %q", c.setCookie, got, c.want)
		}
	}
}

func TestForgedLogoutTokens(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	s := &soak{forgeKey: key, issuer: "http://127.0.0.1:1", clientID: "oidcauth-demo"}
	for how := range 4 {
		tok := s.forgedLogoutToken("user-alice", how)
		parts := strings.Split(tok, ".")
		if len(parts) != 3 {
			t.Fatalf("how %d: %d parts", how, len(parts))
		}
		var header, claims map[string]any
		for i, v := range []*map[string]any{&header, &claims} {
			b, err := base64.RawURLEncoding.DecodeString(parts[i])
			if err != nil || json.Unmarshal(b, v) != nil {
				t.Fatalf("how %d: part %d does not decode", how, i)
			}
		}
		if claims["iss"] != s.issuer || claims["aud"] != s.clientID || claims["sub"] != "user-alice" || claims["sid"] != nil || claims["events"] == nil {
			t.Errorf("how %d: claims %v", how, claims)
		}
		if (how == 3) != (header["alg"] == "none") || (how == 3) != (parts[2] == "") {
			t.Errorf("how %d: header %v, signature %q", how, header, parts[2])
		}
	}
}

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 100; i >= 1; i-- {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	if p := percentile(d, 50); p != 50*time.Millisecond {
		t.Errorf("p50 = %v", p)
	}
	if p := percentile(d, 99); p != 99*time.Millisecond {
		t.Errorf("p99 = %v", p)
	}
	if p := percentile(nil, 99); p != 0 {
		t.Errorf("empty: %v", p)
	}
	if p := percentile(d[:1], 99); p != 100*time.Millisecond {
		t.Errorf("one sample: %v", p)
	}
}

func TestFlags(t *testing.T) {
	t.Setenv("SOAK_DURATION", "")
	cfg, err := parseFlags(nil)
	if err != nil || cfg.duration != 60*time.Second || cfg.workers != 20 {
		t.Fatalf("defaults: %+v, %v", cfg, err)
	}
	for _, args := range [][]string{{"-duration", "0s"}, {"-workers", "0"}, {"-hostile", "2"}, {"extra"}} {
		if _, err := parseFlags(args); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
}
