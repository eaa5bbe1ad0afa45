package oidcauth

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/oidcauth/oidcauth/internal/devidp"
)

const testSecret = "test-secret-0123456789-abcdefghijklmnop"

// harness is an app behind oidcauth, logging in at a real in-process
// OpenID Provider over loopback HTTP.
type harness struct {
	t      testing.TB
	idp    *devidp.Provider
	auth   *Auth
	app    *httptest.Server
	client *http.Client // a browser: cookie jar, redirects not followed
	logs   *strings.Builder

	reg  devidp.Client // the app's registration at the IdP
	skew time.Duration // see later
}

type harnessOption struct {
	config func(*Config)
	opts   []Option
}

// newHarness starts the provider and the app. The app serves /private
// (RequireUser), /me (JSON of the user, or 401) and / (public).
func newHarness(t testing.TB, ho ...harnessOption) *harness {
	t.Helper()
	h := &harness{t: t, logs: new(strings.Builder)}
	app := httptest.NewUnstartedServer(nil)
	appURL := "http://" + app.Listener.Addr().String()
	client := devidp.Client{
		ID: "test-app", Secret: "test-client-secret",
		RedirectURIs:           []string{appURL + "/auth/callback"},
		PostLogoutRedirectURIs: []string{appURL + "/bye"},
		BackchannelLogoutURI:   appURL + "/backchannel-logout",
	}
	idp, err := devidp.Listen("127.0.0.1:0", devidp.Options{
		Clients: []devidp.Client{client},
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { idp.Close() })
	h.idp = idp
	cfg := Config{
		Issuer:                idp.Issuer(),
		ClientID:              client.ID,
		ClientSecret:          client.Secret,
		RedirectURI:           client.RedirectURIs[0],
		PostLogoutRedirectURI: client.PostLogoutRedirectURIs[0],
		SessionSecret:         testSecret,
	}
	opts := []Option{WithLogger(slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})))}
	for _, o := range ho {
		if o.config != nil {
			o.config(&cfg)
		}
		opts = append(opts, o.opts...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h.auth, err = New(ctx, cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	app.Config.Handler = h.auth.Handler(testRoutes(h.auth))
	app.Start()
	t.Cleanup(app.Close)
	h.app = app
	h.reg = client
	h.client = newBrowser()
	return h
}

func newBrowser() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{
		Jar:           jar,
		Timeout:       20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

func testRoutes(a *Auth) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "home") })
	mux.Handle("GET /private", a.RequireUser(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, _ := UserFrom(r.Context())
		io.WriteString(w, "private for "+u.Name)
	})))
	mux.HandleFunc("GET /me", func(w http.ResponseWriter, r *http.Request) {
		u, ok := UserFrom(r.Context())
		if !ok {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "unauthenticated"})
			return
		}
		writeJSON(w, http.StatusOK, u)
	})
	return mux
}

func (h *harness) url(path string) string { return h.app.URL + path }

// get requests path (or an absolute URL) with the harness browser.
func (h *harness) get(target string, header ...string) *http.Response {
	h.t.Helper()
	if strings.HasPrefix(target, "/") {
		target = h.url(target)
	}
	req, _ := http.NewRequest(http.MethodGet, target, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := h.client.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(strings.NewReader(string(body)))
	return resp
}

// startLogin follows /login to the IdP and returns the authorization URL.
func (h *harness) startLogin(next string) string {
	h.t.Helper()
	path := "/login"
	if next != "" {
		path += "?next=" + url.QueryEscape(next)
	}
	resp := h.get(path)
	if resp.StatusCode != http.StatusFound {
		h.t.Fatalf("/login: %s", resp.Status)
	}
	return resp.Header.Get("Location")
}

// idpLogin logs user in at the IdP and returns the callback URL.
func (h *harness) idpLogin(authorizeURL, user string) string {
	h.t.Helper()
	cb, err := h.idp.Login(context.Background(), h.client, authorizeURL, user)
	if err != nil {
		h.t.Fatal(err)
	}
	return cb
}

// login runs a whole login as user and returns the callback's response.
func (h *harness) login(user string) *http.Response {
	h.t.Helper()
	return h.get(h.idpLogin(h.startLogin("/private"), user))
}

// me returns /me's status and user.
func (h *harness) me() (int, User) {
	h.t.Helper()
	resp := h.get("/me")
	var u User
	_ = json.NewDecoder(resp.Body).Decode(&u)
	return resp.StatusCode, u
}

func (h *harness) mustBeAnonymous() {
	h.t.Helper()
	if status, u := h.me(); status != http.StatusUnauthorized {
		h.t.Fatalf("/me = %d %+v, want 401", status, u)
	}
}

func (h *harness) mustBe(sub string) {
	h.t.Helper()
	if status, u := h.me(); status != http.StatusOK || u.Subject != sub {
		h.t.Fatalf("/me = %d %+v, want %s", status, u, sub)
	}
}

// sessionCookies are the session cookies the browser holds for the app.
func (h *harness) sessionCookies() []*http.Cookie {
	u, _ := url.Parse(h.app.URL)
	var out []*http.Cookie
	for _, c := range h.client.Jar.Cookies(u) {
		if strings.HasPrefix(c.Name, h.auth.cfg.SessionCookieName) && !strings.Contains(c.Name, "_tx_") {
			out = append(out, c)
		}
	}
	return out
}

// setCookieFor finds the Set-Cookie named name in resp.
func setCookieFor(resp *http.Response, name string) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func newRecorder() *httptest.ResponseRecorder { return httptest.NewRecorder() }

func httptestRecorder(h http.Handler, method, target string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, target, nil))
	return rec
}

// reqWithCookies is a request carrying the harness browser's cookies.
func reqWithCookies(h *harness) *http.Request {
	req := httptest.NewRequest("GET", h.url("/"), nil)
	for _, c := range h.sessionCookies() {
		req.AddCookie(c)
	}
	return req
}

func mustParse(t testing.TB, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func newTextLogger(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

// reqWithCookiesFor is the Cookie header the harness browser sends to path.
func reqWithCookiesFor(h *harness, path string) string {
	var parts []string
	for _, c := range h.client.Jar.Cookies(mustParse(h.t, h.url(path))) {
		parts = append(parts, c.Name+"="+c.Value)
	}
	return strings.Join(parts, "; ")
}

// later moves the Auth's clock d further ahead (cumulatively): for
// behaviour that waits, such as the JWKS refresh limit, without sleeping.
// Tokens and cookies keep real time.
func (h *harness) later(d time.Duration) {
	h.skew += d
	skew := h.skew
	h.auth.now = func() time.Time { return time.Now().Add(skew) }
}

func jsonDecode(r io.Reader, v any) error { return json.NewDecoder(r).Decode(v) }
