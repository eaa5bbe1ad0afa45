package oidcauth

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestPostLogoutLandingChecksState(t *testing.T) {
	h := newHarness(t)
	h.login("alice")
	resp := h.get("/logout")
	end := mustParse(t, resp.Header.Get("Location"))
	state := end.Query().Get("state")
	if c := setCookieFor(resp, h.auth.logoutStateCookie(state).Name); c == nil || c.Path != "/bye" || !c.HttpOnly {
		t.Fatalf("logout state cookie: %+v", c)
	}
	// The IdP sends the browser back with the state: checked, then dropped.
	back := h.get(h.get(end.String()).Header.Get("Location"))
	if back.StatusCode != http.StatusFound || back.Header.Get("Location") != "/bye" {
		t.Fatalf("landing with the right state: %d to %q", back.StatusCode, back.Header.Get("Location"))
	}
	// The same landing again (state used up), or another state: not ours,
	// so the app's page is served as is (here: 404).
	if resp := h.get("/bye?state=" + state); resp.StatusCode != http.StatusNotFound {
		t.Errorf("replayed landing: %d", resp.StatusCode)
	}
	h.login("alice")
	h.get("/logout")
	if resp := h.get("/bye?state=forged"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("forged state: %d", resp.StatusCode)
	}
	// A sealed value of the wrong state under the right name: 400.
	c := h.auth.logoutStateCookie("s1")
	req, _ := http.NewRequest("GET", h.url("/bye?state=s1"), nil)
	req.Header.Set("Cookie", c.Name+"="+h.auth.sealer.Seal([]byte("s2"), c.Name))
	if resp, _ := http.DefaultClient.Do(req); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("mismatched state: %d", resp.StatusCode)
	}
}

func TestCrossSiteLogoutIsRefused(t *testing.T) {
	h := newHarness(t)
	h.login("alice")
	// Another site's form posting to /logout.
	req, _ := http.NewRequest("POST", h.url("/logout"), nil)
	req.Header.Set("Origin", "https://evil.example")
	resp, err := h.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site POST: %d", resp.StatusCode)
	}
	h.mustBe("user-alice")
	// Another site's link or image: a confirmation page, no logout.
	resp = h.get("/logout", "Sec-Fetch-Site", "cross-site")
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `method="post"`) {
		t.Fatalf("cross-site GET: %d %s", resp.StatusCode, body)
	}
	h.mustBe("user-alice")
	// The app's own form.
	req, _ = http.NewRequest("POST", h.url("/logout"), nil)
	req.Header.Set("Origin", h.app.URL)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	if resp, err = h.client.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("same-origin POST: %d", resp.StatusCode)
	}
	h.mustBeAnonymous()
}
