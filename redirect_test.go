package oidcauth

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/oidcauth/oidcauth/internal/testenv"
)

// openRedirects is the hostile next values of the redirect corpus.
func openRedirects(t *testing.T) []string {
	return testenv.QuotedLines(t, "internal/redirect/testdata/open-redirects.txt")
}

// sameOrigin asserts that target, as a Location header, keeps a browser on
// the app's origin.
func sameOrigin(t *testing.T, next, target string) {
	t.Helper()
	base, _ := url.Parse("http://app.example/x/y")
	u, err := base.Parse(target)
	if err != nil || u.Host != "app.example" || u.Scheme != "http" || strings.HasPrefix(target, "//") || strings.ContainsAny(target, "\\\t\r\n") {
		t.Fatalf("next=%q ends on %q", next, target)
	}
}

// TestOpenRedirectCorpus sends every hostile next value of the corpus to
// /login (checking what the login transaction keeps) and a fifth of them
// through a whole login (checking where the callback sends the browser).
func TestOpenRedirectCorpus(t *testing.T) {
	h := newHarness(t)
	handler := h.auth.Handler(http.NotFoundHandler())
	for i, next := range openRedirects(t) {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/login", nil)
		req.URL.RawQuery = "next=" + url.QueryEscape(next)
		handler.ServeHTTP(rec, req)
		state := mustParse(t, rec.Header().Get("Location")).Query().Get("state")
		var ck *http.Cookie
		for _, c := range rec.Result().Cookies() {
			if c.Name == h.auth.txCookieName(state) {
				ck = c
			}
		}
		if ck == nil {
			t.Fatalf("next=%q: no transaction", next)
		}
		b, err := h.auth.sealer.Open(ck.Value, ck.Name)
		var tx loginTx
		if err != nil || json.Unmarshal(b, &tx) != nil {
			t.Fatalf("next=%q: transaction unreadable", next)
		}
		sameOrigin(t, next, tx.Next)
		if i%5 == 0 {
			h.client = newBrowser()
			resp := h.get(h.idpLogin(h.startLogin(next), "alice"))
			if resp.StatusCode != http.StatusFound {
				t.Fatalf("next=%q: callback %d", next, resp.StatusCode)
			}
			sameOrigin(t, next, resp.Header.Get("Location"))
		}
	}
}
