package interop

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The browser flows against the certified OP (oidc-provider), through the
// real examples/basic app.

// me is the demo's /me.
type me struct {
	Sub   string `json:"sub"`
	Email string `json:"email"`
	Name  string `json:"name"`
}

// The pages of oidc-provider's devInteractions and of our server.js.
const (
	opLoginForm = `input[name="login"]`
	// The consent form's button; its form has a hidden prompt=consent.
	opConsentButton = `form:has(input[name="prompt"][value="consent"]) button[type="submit"]`
	opLogoutYes     = `#logout-yes`
)

// opLogin fills the OP's login form as u, and the consent form when the OP
// asks, and waits until the browser is back at the app under appBase.
func opLogin(tab *Tab, u User, appBase string) error {
	if err := tab.waitPage("", opLoginForm); err != nil {
		return fmt.Errorf("no login form at the OP: %w", err)
	}
	if err := tab.do(
		sendKeys(opLoginForm, u.Login),
		sendKeys(`input[name="password"]`, "any password"),
		click(`button[type="submit"]`),
	); err != nil {
		return fmt.Errorf("filling the OP's login form: %w", err)
	}
	// Either the consent form or, when this OP session already granted
	// the client, straight back at the app.
	deadline := time.Now().Add(stepTimeout)
	for consented := false; ; {
		where, err := evaluate[string](tab, fmt.Sprintf(`location.href.startsWith(%q) ? "app" :
			(document.readyState === "complete" && document.querySelector(%q)) ? "consent" : ""`, appBase, opConsentButton))
		switch {
		case err == nil && where == "app":
			return nil
		case err == nil && where == "consent" && !consented:
			if err := tab.do(click(opConsentButton)); err != nil {
				return fmt.Errorf("consenting: %w", err)
			}
			consented = true
		}
		if time.Now().After(deadline) {
			loc, _ := tab.location()
			return fmt.Errorf("not back at the app after logging in at the OP (at %s)", loc)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// meOf returns the app's /me as the tab's page sees it.
func meOf(t *testing.T, tab *Tab) (int, me) {
	t.Helper()
	r := tab.Fetch("/me")
	var m me
	if r.Status == http.StatusOK {
		if err := r.JSON(&m); err != nil {
			t.Fatalf("/me: %v: %s", err, r.Body)
		}
	}
	return r.Status, m
}

// loginAt logs u in through app's /private and checks where it lands.
func loginAt(t *testing.T, tab *Tab, app *App, u User) {
	t.Helper()
	tab.Go(app.URL("/private"))
	if err := opLogin(tab, u, app.Base); err != nil {
		tab.fatal("%v", err)
	}
	tab.WaitPage(app.URL("/private"), "#user-name")
	if got := tab.Text("#user-name"); got != u.Name {
		tab.fatal("/private greets %q, want %q", got, u.Name)
	}
}

// Flow 1: /private → the OP's login form → consent → /private with the
// user's name; /me has the OP's claims.
func TestCertifiedLogin(t *testing.T) {
	t.Parallel()
	c := sharedCertified(t)
	tab := sharedBrowser(t).NewWindow(t, "login")

	tab.Go(c.App.URL("/private"))
	tab.WaitPage(c.OP.Issuer+"/interaction/", opLoginForm)
	tab.Screenshot("1-op-login")
	tab.Type(opLoginForm, alice.Login)
	tab.Type(`input[name="password"]`, "wonderland")
	tab.Click(`button[type="submit"]`)
	tab.WaitPage(c.OP.Issuer+"/interaction/", opConsentButton)
	tab.Screenshot("2-op-consent")
	tab.Click(opConsentButton)

	tab.WaitPage(c.App.URL("/private"), "#user-name")
	tab.Screenshot("3-app-private")
	if got := tab.Text("#user-name"); got != alice.Name {
		t.Errorf("/private greets %q, want %q", got, alice.Name)
	}
	status, m := meOf(t, tab)
	want := me{Sub: alice.Login, Email: alice.Email, Name: alice.Name}
	if status != http.StatusOK || m != want {
		t.Errorf("/me = %d %+v, want 200 %+v", status, m, want)
	}
}

// Flow 2: log out with the demo's button → the OP's end-session
// confirmation → confirm → the post-logout page; /me is 401; /private asks
// the OP for a login again, since the OP's session ended too.
func TestCertifiedLogout(t *testing.T) {
	t.Parallel()
	c := sharedCertified(t)
	tab := sharedBrowser(t).NewWindow(t, "logout")
	loginAt(t, tab, c.App, bob)
	if status, m := meOf(t, tab); status != http.StatusOK || m.Sub != bob.Login {
		t.Fatalf("/me after login = %d %+v", status, m)
	}

	tab.Click(`form[action="/logout"] button[type="submit"]`)
	tab.WaitPage(c.OP.Issuer+"/session/end", opLogoutYes)
	tab.Screenshot("1-op-end-session")
	tab.Click(opLogoutYes)

	// The OP sends the browser to the post-logout URI with the logout's
	// state; oidcauth checks it and moves on to the same page without it
	// (a wrong or missing state would be a 400 page here).
	tab.WaitPage(c.App.URL("/"), `a[href="/login"]`)
	if loc := tab.URL(); loc != c.App.URL("/") {
		t.Errorf("after logout the browser is at %s, want the post-logout page %s", loc, c.App.URL("/"))
	}
	tab.Screenshot("2-app-logged-out")
	if status, m := meOf(t, tab); status != http.StatusUnauthorized {
		t.Errorf("/me after logout = %d %+v, want 401", status, m)
	}

	// The OP's session is gone: /private shows the OP's login form again,
	// not a silent login.
	tab.Go(c.App.URL("/private"))
	tab.WaitPage(c.OP.Issuer+"/interaction/", opLoginForm)
	tab.Screenshot("3-op-login-again")
}

// Flow 4: two tabs of one browser start a login at the same time; each
// login has its own transaction, so both finish, each back where it
// started, and both tabs are logged in.
func TestCertifiedTwoTabs(t *testing.T) {
	t.Parallel()
	c := sharedCertified(t)
	first := sharedBrowser(t).NewWindow(t, "tab-a")
	second := first.NewTab(t, "tab-b")

	// Both tabs reach the OP's login form before either finishes: two
	// login transactions (state, nonce, PKCE) in flight in one cookie jar.
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, tab := range []*Tab{first, second} {
		wg.Go(func() {
			if err := tab.do(navigate(c.App.URL(fmt.Sprintf("/private?tab=%d", i)))); err != nil {
				errs[i] = err
				return
			}
			errs[i] = tab.waitPage(c.OP.Issuer+"/interaction/", opLoginForm)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("tab %d did not reach the OP's login form: %v", i, err)
		}
	}

	// Finish them in the reverse order: the later login must not have
	// replaced the earlier one's transaction.
	for _, i := range []int{1, 0} {
		tab := []*Tab{first, second}[i]
		if err := opLogin(tab, alice, c.App.Base); err != nil {
			tab.fatal("%v", err)
		}
		tab.WaitPage(c.App.URL(fmt.Sprintf("/private?tab=%d", i)), "#user-name")
		if got := tab.Text("#user-name"); got != alice.Name {
			tab.fatal("/private greets %q, want %q", got, alice.Name)
		}
	}
	for _, tab := range []*Tab{first, second} {
		if status, m := meOf(t, tab); status != http.StatusOK || m.Sub != alice.Login {
			t.Errorf("%s: /me = %d %+v, want alice", tab.name, status, m)
		}
	}
	second.Screenshot("both-logged-in")

	// Log out in one tab, then again from the other tab's stale page: that
	// logout has no session to end, here or at the OP, and must still land
	// on the post-logout page, not on an error.
	first.Click(`form[action="/logout"] button[type="submit"]`)
	first.WaitPage(c.OP.Issuer+"/session/end", opLogoutYes)
	first.Click(opLogoutYes)
	first.WaitPage(c.App.URL("/"), `a[href="/login"]`)
	second.Click(`form[action="/logout"] button[type="submit"]`)
	second.WaitPage(c.App.URL("/"), `a[href="/login"]`)
	if loc := second.URL(); loc != c.App.URL("/") {
		t.Errorf("the second logout ended at %s, want %s", loc, c.App.URL("/"))
	}
	for _, tab := range []*Tab{first, second} {
		if status, _ := meOf(t, tab); status != http.StatusUnauthorized {
			t.Errorf("%s: /me after logout = %d, want 401", tab.name, status)
		}
	}
}

// Single sign-on across two apps at one OP: the second app's client is
// added by dynamic registration (as tests with more app instances do).
// After logging in at the first app, the second one logs the same user in
// with the OP's session: no login form, only the OP's consent for the new
// client; logging out of one app leaves the other signed in.
func TestCertifiedSingleSignOn(t *testing.T) {
	t.Parallel()
	c := sharedCertified(t)
	port, err := reservePort()
	if err != nil {
		t.Fatal(err)
	}
	defer port.release()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client, err := c.OP.Register(ctx, appClient(port.Base()))
	if err != nil {
		t.Fatal(err)
	}
	// Its own cookie name: cookies on 127.0.0.1 reach every port, so with
	// the default name the second app would overwrite the first one's.
	second := newApp(t, "basic-second-client", AppOptions{Port: port, Issuer: c.OP.Issuer, ClientID: client.ID, ClientSecret: client.Secret,
		Env: []string{"SESSION_COOKIE_NAME=second"}})
	tab := sharedBrowser(t).NewWindow(t, "sso")
	loginAt(t, tab, c.App, alice)

	tab.Go(second.URL("/private"))
	tab.WaitPage(c.OP.Issuer+"/interaction/", opConsentButton)
	if n, err := evaluate[int](tab, `document.querySelectorAll(`+strconv.Quote(opLoginForm)+`).length`); err != nil || n != 0 {
		t.Errorf("the OP asked for a login again (%d login fields, %v): its session should sign in the second app", n, err)
	}
	tab.Click(opConsentButton)
	tab.WaitPage(second.URL("/private"), "#user-name")
	if status, m := meOf(t, tab); status != http.StatusOK || m.Sub != alice.Login {
		t.Errorf("second app: /me = %d %+v, want alice", status, m)
	}
}

// Cancelling at the OP's consent page sends the browser back with
// error=access_denied: oidcauth shows a 400 page naming the OP's error and
// starts no session.
func TestCertifiedConsentCancelled(t *testing.T) {
	t.Parallel()
	c := sharedCertified(t)
	tab := sharedBrowser(t).NewWindow(t, "cancel")
	tab.Go(c.App.URL("/private"))
	tab.WaitPage(c.OP.Issuer+"/interaction/", opLoginForm)
	tab.Type(opLoginForm, bob.Login)
	tab.Type(`input[name="password"]`, "builder")
	tab.Click(`button[type="submit"]`)
	tab.WaitPage(c.OP.Issuer+"/interaction/", opConsentButton)
	tab.Click(`a[href$="/abort"]`)

	tab.WaitPage(c.App.URL("/auth/callback?"), "h1")
	if got := tab.Text("h1"); got != http.StatusText(http.StatusBadRequest) {
		t.Errorf("after cancelling, the callback page says %q, want %q", got, http.StatusText(http.StatusBadRequest))
	}
	if body := tab.Text("body"); !strings.Contains(body, "access_denied") {
		t.Errorf("the error page does not name the OP's error: %q", body)
	}
	tab.Screenshot("callback-error")
	if status, _ := meOf(t, tab); status != http.StatusUnauthorized {
		t.Errorf("/me after a cancelled login = %d, want 401", status)
	}
}
