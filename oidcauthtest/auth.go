package oidcauthtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oidcauth/oidcauth"
	"github.com/oidcauth/oidcauth/internal/devidp"
)

// DefaultRedirectURI is the redirect URI of an Auth made by NewAuth unless
// WithConfig sets another. Nothing needs to listen there: the helpers call
// the Auth's handler directly for the callback, so its path
// (/auth/callback) is what matters.
const DefaultRedirectURI = "http://localhost/auth/callback"

// Option configures NewAuth.
type Option func(*authConfig)

type authConfig struct {
	provider *Provider
	edits    []func(*oidcauth.Config)
	opts     []oidcauth.Option
}

// WithProvider wires the Auth to p instead of a provider of its own, so
// that the test can make p misbehave, or share p between several Auths.
func WithProvider(p *Provider) Option { return func(c *authConfig) { c.provider = p } }

// WithConfig lets edit change the Config before the Auth is made: for
// example to set APIAudience, Scopes or a RedirectURI on the test server.
// The Config it gets is already complete (issuer, client, secrets); the
// client is registered at the provider as edit leaves it.
func WithConfig(edit func(*oidcauth.Config)) Option {
	return func(c *authConfig) { c.edits = append(c.edits, edit) }
}

// WithOptions passes opts to oidcauth.New, after the kit's own
// (oidcauth.WithLogger, capturing the log to show it when a login fails),
// so they win.
func WithOptions(opts ...oidcauth.Option) Option {
	return func(c *authConfig) { c.opts = append(c.opts, opts...) }
}

// env is what the kit knows about an Auth made by NewAuth.
type env struct {
	provider *Provider
	cfg      oidcauth.Config
	origin   string // scheme://host of the redirect URI
	logs     *logBuffer
}

// envs maps each live *oidcauth.Auth made by NewAuth to its env.
var envs sync.Map

func lookup(t testing.TB, auth *oidcauth.Auth) *env {
	t.Helper()
	e, ok := envs.Load(auth)
	if !ok {
		t.Fatalf("oidcauthtest: this *oidcauth.Auth was not made by oidcauthtest.NewAuth, or its test has ended")
	}
	return e.(*env)
}

// NewAuth returns an *oidcauth.Auth for a client registered at a test
// provider, ready for Login and the other helpers. By default it has its
// own Provider with DefaultUsers, a random client secret and
// SESSION_SECRET, the redirect URI DefaultRedirectURI, and the defaults of
// oidcauth.Config for the rest; WithProvider, WithConfig and WithOptions
// change that.
func NewAuth(t testing.TB, opts ...Option) *oidcauth.Auth {
	t.Helper()
	var c authConfig
	for _, opt := range opts {
		opt(&c)
	}
	p := c.provider
	if p == nil {
		p = NewProvider(t)
	}
	cfg := oidcauth.Config{
		Issuer:        p.Issuer(),
		ClientID:      fmt.Sprintf("test-app-%d", p.clients.Add(1)),
		ClientSecret:  rand.Text(),
		RedirectURI:   DefaultRedirectURI,
		SessionSecret: rand.Text() + rand.Text(),
	}
	for _, edit := range c.edits {
		edit(&cfg)
	}
	reg := devidp.Client{ID: cfg.ClientID, Secret: cfg.ClientSecret, RedirectURIs: []string{cfg.RedirectURI}}
	if cfg.PostLogoutRedirectURI != "" {
		reg.PostLogoutRedirectURIs = []string{cfg.PostLogoutRedirectURI}
	}
	p.idp.AddClient(reg)

	logs := new(logBuffer)
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	auth, err := oidcauth.New(ctx, cfg, append([]oidcauth.Option{oidcauth.WithLogger(logger)}, c.opts...)...)
	if err != nil {
		t.Fatalf("oidcauthtest: NewAuth: %v", err)
	}
	origin := ""
	if u, err := url.Parse(cfg.RedirectURI); err == nil { // New validated it
		origin = u.Scheme + "://" + u.Host
	}
	envs.Store(auth, &env{provider: p, cfg: cfg, origin: origin, logs: logs})
	t.Cleanup(func() { envs.Delete(auth) })
	return auth
}

// TryLogin runs a whole login of the user called username against auth,
// without a browser and without a server: it calls auth's handler for the
// login route, logs the user in at the provider, and calls auth's handler
// for the callback, whose response it returns. On success that is a 302
// with the session cookie(s); when the provider misbehaves it is the
// error oidcauth gives (JSON, as to an API client). Use Login unless the
// login is expected to fail.
func TryLogin(t testing.TB, auth *oidcauth.Auth, username string) *http.Response {
	t.Helper()
	e := lookup(t, auth)
	e.provider.user(t, username) // an unknown user fails here, naming the known ones
	resp, err := e.login(auth, username)
	if err != nil {
		t.Fatalf("oidcauthtest: %v%s", err, e.logs.tail())
	}
	return resp
}

func (e *env) login(auth *oidcauth.Auth, username string) (*http.Response, error) {
	h := auth.Handler(http.NotFoundHandler())
	// The login route is where RequireUser sends a browser; this finds it
	// even when oidcauth.WithPaths moved it.
	browser := httptest.NewRequest(http.MethodGet, e.origin+"/", nil)
	browser.Header.Set("Accept", "text/html")
	rec := httptest.NewRecorder()
	auth.Unauthenticated(rec, browser)
	loginPath := rec.Header().Get("Location")
	if rec.Code != http.StatusFound || !strings.HasPrefix(loginPath, "/") {
		return nil, fmt.Errorf("cannot find the login route: Auth.Unauthenticated answered %d %q", rec.Code, loginPath)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, e.origin+loginPath, nil))
	start := rec.Result()
	if start.StatusCode != http.StatusFound {
		return nil, fmt.Errorf("GET %s answered %s: %s", loginPath, start.Status, rec.Body)
	}
	callback, err := e.provider.login(start.Header.Get("Location"), username)
	if err != nil {
		return nil, err
	}
	req := httptest.NewRequest(http.MethodGet, callback, nil)
	for _, c := range start.Cookies() {
		req.AddCookie(c)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result(), nil
}

// Login logs the user called username in to auth (see TryLogin) and
// returns the session cookie(s) its callback set: add them to requests to
// make them the user's. The test fails, showing oidcauth's log, if the
// login does.
func Login(t testing.TB, auth *oidcauth.Auth, username string) []*http.Cookie {
	t.Helper()
	resp := TryLogin(t, auth, username)
	var session []*http.Cookie
	for _, c := range resp.Cookies() {
		if c.MaxAge >= 0 && c.Value != "" { // not a deletion (of the login's own cookie)
			session = append(session, c)
		}
	}
	if resp.StatusCode != http.StatusFound || len(session) == 0 {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("oidcauthtest: logging %q in failed: the callback answered %s %s%s",
			username, resp.Status, bytes.TrimSpace(body), lookup(t, auth).logs.tail())
	}
	return session
}

// NewRequest is httptest.NewRequest with the session cookie(s) of the user
// called username, logged in to auth with Login: a request as that user,
// for a handler wrapped in auth.Handler or auth.RequireUser. An empty
// username gives an anonymous request.
func NewRequest(t testing.TB, auth *oidcauth.Auth, username, method, target string, body io.Reader) *http.Request {
	t.Helper()
	req := httptest.NewRequest(method, target, body)
	if username != "" {
		for _, c := range Login(t, auth, username) {
			req.AddCookie(c)
		}
	}
	return req
}

// Client returns an HTTP client for the app served by srv (whose handler is
// wrapped in auth.Handler), with a cookie jar holding the session of the
// user called username, logged in to auth with Login; an empty username
// gives a client with an empty jar. Like a browser it keeps the cookies
// the app sets, so logging out through it works; unlike one it does not
// follow redirects, so tests see them. It uses srv's transport, so TLS
// servers work; a session cookie marked Secure (a RedirectURI with https)
// needs one.
func Client(t testing.TB, auth *oidcauth.Auth, srv *httptest.Server, username string) *http.Client {
	t.Helper()
	u, err := url.Parse(srv.URL)
	if err != nil || u.Host == "" {
		t.Fatalf("oidcauthtest: Client: the server's URL %q is not usable; is it started?", srv.URL)
	}
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatalf("oidcauthtest: Client: %v", err)
	}
	if username != "" {
		cookies := Login(t, auth, username)
		for _, c := range cookies {
			if c.Secure && u.Scheme != "https" {
				t.Fatalf("oidcauthtest: Client: the session cookie %q is Secure (the RedirectURI is https) but %s is not: use httptest.NewTLSServer, or an http RedirectURI", c.Name, srv.URL)
			}
		}
		jar.SetCookies(u, cookies)
	}
	return &http.Client{
		Transport:     srv.Client().Transport,
		Jar:           jar,
		Timeout:       30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// BearerToken returns an access token of the user called username for
// auth's API audience (Config.APIAudience, set with WithConfig): send it as
// "Authorization: Bearer " + token. See Provider.AccessToken.
func BearerToken(t testing.TB, auth *oidcauth.Auth, username string) string {
	t.Helper()
	e := lookup(t, auth)
	if e.cfg.APIAudience == "" {
		t.Fatalf("oidcauthtest: BearerToken: the Auth has no Config.APIAudience, so it takes no bearer tokens; set one with WithConfig")
	}
	return e.provider.AccessToken(t, username, e.cfg.APIAudience)
}

// LogoutToken returns a back-channel logout token from auth's provider
// that ends every session of the user called username. Post it as the
// form field logout_token to auth's back-channel logout route (by default
// POST /backchannel-logout), as the provider would when the user logs out
// there.
func LogoutToken(t testing.TB, auth *oidcauth.Auth, username string) string {
	t.Helper()
	e := lookup(t, auth)
	return e.provider.logoutToken(t, e.cfg.ClientID, username)
}

// logBuffer keeps the end of oidcauth's log, to show it when a login fails.
type logBuffer struct {
	mu sync.Mutex
	b  []byte
}

const maxLog = 16 << 10

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b = append(l.b, p...)
	if len(l.b) > maxLog {
		l.b = l.b[len(l.b)-maxLog:]
	}
	return len(p), nil
}

// tail returns the last lines of the log, introduced, or "" when empty.
func (l *logBuffer) tail() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	lines := strings.Split(strings.TrimSpace(string(l.b)), "\n")
	if len(lines) == 1 && lines[0] == "" {
		return ""
	}
	if len(lines) > 10 {
		lines = lines[len(lines)-10:]
	}
	return "\noidcauth's log:\n\t" + strings.Join(lines, "\n\t")
}
