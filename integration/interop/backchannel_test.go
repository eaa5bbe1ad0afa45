package interop

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// Flow 3: back-channel logout. The user ends their session at the OP
// itself (its own end-session page, no client involved); the OP posts a
// logout token to the app's /backchannel-logout; the browser, which still
// holds its session cookie, is anonymous at the app on its next request.
// The logout token names the OP session (sid): a second browser of the
// same user, with an OP session of its own, stays signed in.

// dave is the back-channel tests' user at the shared OP, which makes his
// account up (server.js: a login it does not know gets name = login): no
// other test logs in as him, so the app's log lines about him are theirs.
var dave = User{Login: "dave", Email: "dave@example.net", Name: "dave", PreferredUsername: "dave"}

// endOPSession signs the tab's user out at the OP itself: its end-session
// page without any client's id_token_hint, then "Yes, sign me out". The
// OP ends its session and posts logout tokens to the clients it served.
func endOPSession(tab *Tab, op *OP) {
	tab.t.Helper()
	tab.Go(op.Issuer + "/session/end")
	tab.WaitPage(op.Issuer+"/session/end", opLogoutYes)
	tab.Screenshot("op-end-session")
	tab.Click(opLogoutYes)
	tab.WaitPage(op.Issuer+"/session/end/success", "#signed-out")
}

// waitBackchannel waits until the OP reports a successful back-channel
// logout to client and the app reports the logout of user's session,
// with sessions_ended as the app logged it ("-1" for cookie sessions,
// which are refused when next seen; the count for Redis).
func waitBackchannel(t *testing.T, op *OP, opMark int, client string, app *App, appMark int, user User, sessionsEnded string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		line, err := op.WaitLog(ctx, opMark, "event backchannel.")
		if err != nil {
			t.Fatalf("the OP posted no logout token to %s: %v", client, err)
		}
		opMark = markAfter(op.proc, opMark, line)
		if !slices.Contains(strings.Fields(line), "client="+client) {
			continue // another client's, or another test's
		}
		if !strings.Contains(line, "event backchannel.success") {
			t.Fatalf("the OP's back-channel logout to %s failed: %s", client, line)
		}
		break
	}
	want := `msg="oidcauth: back-channel logout" sub=` + user.Login + ` `
	line, err := app.WaitLog(ctx, appMark, want)
	if err != nil {
		t.Fatalf("the app did not log the back-channel logout of %s: %v", user.Login, err)
	}
	if !strings.Contains(line, " sessions_ended="+sessionsEnded) {
		t.Errorf("the app's back-channel logout: %s; want sessions_ended=%s", line, sessionsEnded)
	}
}

// markAfter returns the mark just after the first line from mark on that
// equals line.
func markAfter(p *process, mark int, line string) int {
	lines, _ := p.linesSince(mark)
	for i, l := range lines {
		if l == line {
			return mark + i + 1
		}
	}
	return mark
}

// expectAnonymous opens app's home page in tab and checks that the app
// sees no user there: the page offers to log in, and /me is 401.
func expectAnonymous(t *testing.T, tab *Tab, app *App, when string) {
	t.Helper()
	tab.Go(app.URL("/"))
	if status, m := meOf(t, tab); status != http.StatusUnauthorized {
		t.Errorf("%s: /me %s = %d %+v, want 401", app.Base, when, status, m)
	}
	if n, err := evaluate[int](tab, `document.querySelectorAll('a[href="/login"]').length`); err != nil || n == 0 {
		t.Errorf("%s: the home page %s offers no login (%v): it sees a user", app.Base, when, err)
	}
}

// Cookie returns the browser's cookie called name that a request to url
// would carry, HttpOnly or not, or nil.
func (tab *Tab) Cookie(url, name string) *network.Cookie {
	tab.t.Helper()
	cookies, err := run(tab, func(ctx context.Context, t *chromedp.Target) ([]*network.Cookie, error) {
		res, err := cdp.Call(ctx, t, network.GetCookies, network.GetCookiesParams{URLs: []string{url}})
		return res.Cookies, err
	})
	if err != nil {
		tab.fatal("reading the cookies for %s: %v", url, err)
	}
	for _, c := range cookies {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// Flow 3 with cookie sessions, at the shared app: the session lives in
// the browser's cookie, which the back-channel logout cannot clear; the
// app remembers the OP session it ended and refuses the cookie.
func TestCertifiedBackchannelLogout(t *testing.T) {
	t.Parallel()
	c := sharedCertified(t)
	b := sharedBrowser(t)
	tab := b.NewWindow(t, "ended")
	other := b.NewWindow(t, "other")
	loginAt(t, tab, c.App, dave)
	loginAt(t, other, c.App, dave)

	opMark, appMark := c.OP.Mark(), c.App.Mark()
	endOPSession(tab, c.OP)
	waitBackchannel(t, c.OP, opMark, c.Client.ID, c.App, appMark, dave, "-1")
	if tab.Cookie(c.App.Base, "oidcauth") == nil {
		t.Fatal("the browser has no session cookie any more: this test needs it kept, to show the app refusing it")
	}

	expectAnonymous(t, tab, c.App, "after the OP ended the session")
	tab.Screenshot("app-anonymous")
	other.Go(c.App.URL("/"))
	if status, m := meOf(t, other); status != http.StatusOK || m.Sub != dave.Login {
		t.Errorf("the other browser's /me = %d %+v: only the ended OP session's login should end", status, m)
	}
}

// Flow 3 with Redis sessions, on two instances: the OP posts the logout
// token to instance A only, which deletes the session from Redis; the
// browser is anonymous at B as well, at once.
func TestRedisBackchannelLogout(t *testing.T) {
	t.Parallel()
	redis := sharedRedis(t)
	c := sharedCertified(t)
	p := newRedisPair(t, redis, c, "basic-redis-bcl")
	b := sharedBrowser(t)
	tab := b.NewWindow(t, "ended")
	other := b.NewWindow(t, "other")
	loginAt(t, tab, p.B, dave)
	loginAt(t, other, p.A, dave)
	if n := redisSessions(t, p.RedisURL); n != 2 {
		t.Fatalf("Redis holds %d sessions after two logins, want 2", n)
	}

	opMark, appMark := c.OP.Mark(), p.A.Mark()
	endOPSession(tab, c.OP)
	waitBackchannel(t, c.OP, opMark, p.Client.ID, p.A, appMark, dave, "1")
	if tab.Cookie(p.B.Base, "oidcauth") == nil {
		t.Fatal("the browser has no session cookie any more: this test needs it kept, to show the app refusing it")
	}
	if n := redisSessions(t, p.RedisURL); n != 1 {
		t.Errorf("Redis holds %d sessions after the back-channel logout, want 1 (the other browser's)", n)
	}

	expectAnonymous(t, tab, p.A, "after the OP ended the session")
	expectAnonymous(t, tab, p.B, "after the OP ended the session")
	tab.Screenshot("app-anonymous")
	for _, app := range []*App{p.A, p.B} {
		other.Go(app.URL("/"))
		if status, m := meOf(t, other); status != http.StatusOK || m.Sub != dave.Login {
			t.Errorf("%s: the other browser's /me = %d %+v: only the ended OP session's login should end", app.Base, status, m)
		}
	}
}
