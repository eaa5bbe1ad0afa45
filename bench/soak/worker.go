package main

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"time"

	"github.com/oidcauth/oidcauth/bench/internal/weblogin"
	"github.com/oidcauth/oidcauth/internal/devidp"
)

const (
	maxCycles  = 100_000 // a worker's browsers, whatever the duration
	maxBrowse  = 8       // steps of one browser between login and logout
	maxHops    = 10      // redirects followed in one navigation
	cookieName = "oidcauth"
)

// worker is one simulated person after another: each cycle is a new
// browser (its own cookie jar) logging in as the next demo user, browsing,
// logging out.
type worker struct {
	s    *soak
	id   int
	rnd  *rand.Rand
	load context.Context // ends the worker's cycles, not its requests

	user     devidp.User
	jar      *cookiejar.Jar
	client   *http.Client
	callback struct{ url, cookie string } // the last login's, replayed by hostile steps
}

func newWorker(s *soak, id int) *worker {
	return &worker{s: s, id: id, rnd: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(id+1000))), load: context.Background()}
}

// run cycles until load ends (the cycle under way finishes, logout
// included, with ctx).
func (w *worker) run(load context.Context) {
	w.load = load
	ctx := context.WithoutCancel(load)
	for c := 0; c < maxCycles && load.Err() == nil; c++ {
		w.cycle(ctx, w.id+c)
	}
}

// newBrowser starts a browser of the demo user i (mod 3): an empty cookie
// jar.
func (w *worker) newBrowser(i int) {
	w.user = w.s.users[i%len(w.s.users)]
	w.jar, _ = cookiejar.New(nil)
	w.client = &http.Client{Transport: w.s.tr, Jar: w.jar, Timeout: 15 * time.Second, CheckRedirect: noFollow}
}

// cycle is one browser's life as the demo user i (mod 3).
func (w *worker) cycle(ctx context.Context, i int) {
	w.newBrowser(i)
	if !w.login(ctx) {
		return
	}
	n := 2 + w.rnd.IntN(maxBrowse-1)
	for k := 0; k < n && w.load.Err() == nil; k++ {
		w.think()
		ok := true
		if w.rnd.Float64() < w.s.cfg.hostile {
			ok = w.hostile(ctx, w.rnd.IntN(len(hostileKinds)))
		} else {
			ok = w.browse(ctx, k)
		}
		if !ok {
			return
		}
	}
	w.think()
	w.logout(ctx)
}

// warmUp runs the whole cycle as the demo user i, with every kind of
// hostile step, once: what is made on first use (the provider's keys
// fetched, pools filled) is then there when the soak takes the server's
// starting figures.
func (w *worker) warmUp(ctx context.Context, i int) {
	w.newBrowser(i)
	if !w.login(ctx) {
		return
	}
	for k := range hostileKinds {
		if !w.hostile(ctx, k) {
			return
		}
	}
	w.logout(ctx)
}

func (w *worker) think() {
	if w.s.cfg.think <= 0 {
		return
	}
	t := time.NewTimer(time.Duration(w.rnd.Int64N(int64(2 * w.s.cfg.think))))
	defer t.Stop()
	select {
	case <-t.C:
	case <-w.load.Done():
	}
}

// response is what one request got back.
type response struct {
	status int
	header http.Header
	body   string
	url    *url.URL
}

// send sends one request without following redirects, records it under
// step and fails the check on a transport error or a 5xx. header holds
// name, value pairs. client nil means the browser's.
func (w *worker) send(ctx context.Context, client *http.Client, step, method, target string, form url.Values, header ...string) (*response, bool) {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		w.s.rec.fail("bad request", "%s %s: %v", method, target, err)
		return nil, false
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	if client == nil {
		client = w.client
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		w.s.rec.request(step, 0, time.Since(start))
		w.s.rec.fail("transport error", "%s: %s %s: %v", step, method, redact(target), err)
		return nil, false
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	d := time.Since(start)
	w.s.rec.request(step, resp.StatusCode, d)
	if err != nil {
		w.s.rec.fail("transport error", "%s: %s %s: reading the body: %v", step, method, redact(target), err)
		return nil, false
	}
	r := &response{status: resp.StatusCode, header: resp.Header, body: string(b), url: resp.Request.URL}
	if r.status >= 500 {
		w.s.rec.fail("5xx", "%s: %s %s: %d %.200q", step, method, redact(target), r.status, r.body)
		return r, false
	}
	return r, true
}

// expect sends one request and requires status; for a redirect it returns
// the resolved Location.
func (w *worker) expect(ctx context.Context, step, method, target string, form url.Values, status int, header ...string) (*response, *url.URL, bool) {
	r, ok := w.send(ctx, nil, step, method, target, form, header...)
	if !ok {
		return r, nil, false
	}
	if r.status != status {
		w.s.rec.fail("unexpected status", "%s as %s: %s %s: %d, want %d: %.200q", step, w.user.PreferredUsername, method, redact(target), r.status, status, r.body)
		return r, nil, false
	}
	if status >= 300 && status < 400 {
		loc, err := r.url.Parse(r.header.Get("Location"))
		if err != nil || r.header.Get("Location") == "" {
			w.s.rec.fail("unexpected status", "%s: %s %s: %d without a usable Location", step, method, redact(target), status)
			return r, nil, false
		}
		return r, loc, true
	}
	return r, nil, true
}

// login logs the browser in as w.user, starting at /private as a browser
// would, and checks that it lands there as that user.
func (w *worker) login(ctx context.Context) bool {
	html := []string{"Accept", "text/html"}
	_, loc, ok := w.expect(ctx, "login", "GET", w.s.base+"private", nil, http.StatusFound, html...)
	if !ok {
		return false
	}
	if loc.RequestURI() != "/login?next=%2Fprivate" {
		w.s.rec.fail("unexpected status", "GET /private without a session: redirected to %s", loc)
		return false
	}
	_, authorize, ok := w.expect(ctx, "login", "GET", loc.String(), nil, http.StatusFound, html...)
	if !ok {
		return false
	}
	w.s.learnProvider(authorize)
	page, _, ok := w.expect(ctx, "provider", "GET", authorize.String(), nil, http.StatusOK, html...)
	if !ok {
		return false
	}
	action, form, err := weblogin.LoginForm(page.body, page.url)
	if err != nil {
		w.s.rec.fail("unexpected body", "the provider's login page: %v", err)
		return false
	}
	form.Set("user", w.user.PreferredUsername)
	_, cb, ok := w.expect(ctx, "provider", "POST", action, form, http.StatusFound, html...)
	if !ok {
		return false
	}
	if !strings.HasPrefix(cb.String(), w.s.base+"auth/callback?") {
		w.s.rec.fail("unexpected status", "the provider sent the browser to %s, not the callback", redact(cb.String()))
		return false
	}
	w.callback.url, w.callback.cookie = cb.String(), cookieHeader(w.jar.Cookies(cb))
	r, next, ok := w.expect(ctx, "callback", "GET", cb.String(), nil, http.StatusFound, html...)
	if !ok {
		return false
	}
	if sessionSet(r.header) == "" || next.String() != w.s.base+"private" {
		w.s.rec.fail("unexpected status", "the callback set no session or went to %s", next)
		return false
	}
	w.s.rec.logins.Add(1)
	return w.browse(ctx, 0)
}

// pages are what browse visits in turn; reloads come from visiting the
// same one again.
var pages = []string{"private", "me", "", "private", "me"}

// browse visits a page as w.user and checks it is theirs.
func (w *worker) browse(ctx context.Context, k int) bool {
	page := pages[k%len(pages)]
	accept := "text/html"
	if page == "me" {
		accept = "application/json"
	}
	r, _, ok := w.expect(ctx, "browse", "GET", w.s.base+page, nil, http.StatusOK, "Accept", accept)
	if !ok {
		return false
	}
	if why := wrongUser(page, r.body, w.user, w.s.users); why != "" {
		w.s.rec.fail("wrong user", "GET /%s as %s: %s", page, w.user.PreferredUsername, why)
		return false
	}
	return true
}

// wrongUser is why body, GET /page's, is not user's own, or "".
func wrongUser(page, body string, user devidp.User, all []devidp.User) string {
	var want []string
	switch page {
	case "me":
		var me struct{ Sub, Email, Name string }
		if err := json.Unmarshal([]byte(body), &me); err != nil {
			return fmt.Sprintf("not JSON: %.200q", body)
		}
		if me.Sub == user.Subject && me.Email == user.Email && me.Name == user.Name {
			return ""
		}
		return fmt.Sprintf("got %+v", me)
	case "private":
		want = []string{`<strong id="user-name">` + html.EscapeString(user.Name) + `</strong>`, `<code>` + html.EscapeString(user.Subject) + `</code>`}
	default:
		want = []string{`Signed in as <strong id="user-name">` + html.EscapeString(user.Name) + `</strong>`}
	}
	for _, s := range want {
		if !strings.Contains(body, s) {
			for _, other := range all {
				if other.Subject != user.Subject && (strings.Contains(body, other.Name) || strings.Contains(body, other.Subject)) {
					return "the page is " + other.PreferredUsername + "'s"
				}
			}
			return fmt.Sprintf("the page lacks %q", s)
		}
	}
	return ""
}

// logout logs out as the demo's button does (POST /logout), follows the
// browser through the provider's end-session endpoint and back, and
// checks that the old session cookie no longer works.
func (w *worker) logout(ctx context.Context) bool {
	old := cookieHeader(w.jar.Cookies(mustURL(w.s.base)))
	target, method := w.s.base+"logout", "POST"
	var r *response
	for hop := 0; ; hop++ {
		if hop == maxHops {
			w.s.rec.fail("unexpected status", "logout: more than %d redirects", maxHops)
			return false
		}
		var ok bool
		var form url.Values
		header := []string{"Accept", "text/html"}
		if method == "POST" {
			form, header = url.Values{}, append(header, "Origin", w.s.origin)
		}
		if r, ok = w.send(ctx, nil, "logout", method, target, form, header...); !ok {
			return false
		}
		if r.status != http.StatusFound && r.status != http.StatusSeeOther {
			break
		}
		loc, err := r.url.Parse(r.header.Get("Location"))
		if err != nil {
			w.s.rec.fail("unexpected status", "logout: bad Location %q", r.header.Get("Location"))
			return false
		}
		target, method = loc.String(), "GET"
	}
	if r.status != http.StatusOK || r.url.String() != w.s.base || !strings.Contains(r.body, "You are not signed in.") {
		w.s.rec.fail("unexpected status", "logout as %s ended at %s with %d: %.200q", w.user.PreferredUsername, r.url, r.status, r.body)
		return false
	}
	w.s.rec.logouts.Add(1)
	// The session is gone from Redis: the cookie, replayed, is nobody's.
	r, ok := w.send(ctx, w.s.raw, "logout", "GET", w.s.base+"me", nil, "Cookie", old, "Accept", "application/json")
	if ok && r.status != http.StatusUnauthorized {
		w.s.rec.fail("session after logout", "the cookie of %s's ended session: GET /me = %d %.200q", w.user.PreferredUsername, r.status, r.body)
		return false
	}
	return ok
}

// learnProvider keeps the provider's issuer and the app's client id,
// which forged logout tokens claim, from an authorization URL.
func (s *soak) learnProvider(authorize *url.URL) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.issuer == "" {
		s.issuer = authorize.Scheme + "://" + authorize.Host
		s.clientID = authorize.Query().Get("client_id")
	}
}

func (s *soak) provider() (issuer, clientID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.issuer, s.clientID
}

func cookieHeader(cs []*http.Cookie) string {
	var parts []string
	for _, c := range cs {
		parts = append(parts, c.Name+"="+c.Value)
	}
	return strings.Join(parts, "; ")
}

// sessionSet is the value of the session cookie a response sets, if any
// (a cookie being cleared has none).
func sessionSet(h http.Header) string {
	for _, c := range (&http.Response{Header: h}).Cookies() {
		if c.Name == cookieName && c.Value != "" && c.MaxAge >= 0 {
			return c.Value
		}
	}
	return ""
}

func mustURL(raw string) *url.URL {
	u, err := url.Parse(raw)
	if err != nil {
		panic(err)
	}
	return u
}

// redact drops the query, which may hold a code or a state, from target
// for messages.
func redact(target string) string {
	if i := strings.IndexByte(target, '?'); i >= 0 {
		return target[:i] + "?…"
	}
	return target
}
