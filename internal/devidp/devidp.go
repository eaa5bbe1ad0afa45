// Package devidp implements a small but real, in-process OpenID Connect
// Provider: Core 1.0 authorization code flow with mandatory PKCE (S256),
// Discovery 1.0, refresh token rotation, RP-Initiated Logout and
// Back-Channel Logout. It uses only the standard library.
//
// It serves as the zero-setup development IdP (a human picks a demo user on
// a login page, no password) and as the test IdP, whose [Misbehavior] knobs
// make it emit the broken responses the OpenID Foundation's RP
// certification tests use.
//
// Anyone can log in as anyone and all state lives in memory: never use it
// in production.
package devidp

import (
	"bytes"
	"cmp"
	"context"
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"maps"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// User is an end-user who can log in at the provider. The profile fields
// are released as claims when the matching scope (email, profile) is granted.
type User struct {
	Subject           string         // "sub": stable and unique
	Email             string         // "email" (email scope)
	Name              string         // "name" (profile scope)
	PreferredUsername string         // "preferred_username" (profile scope); also the login name
	EmailVerified     bool           // "email_verified" (email scope)
	Extra             map[string]any // extra claims for ID token and userinfo; cannot override the others
}

// Client is a registered relying party (a confidential client).
type Client struct {
	ID                     string   // client_id
	Secret                 string   // client_secret; must not be empty
	RedirectURIs           []string // allowed redirect_uri values (exact match)
	PostLogoutRedirectURIs []string // allowed post_logout_redirect_uri values (exact match)
	// BackchannelLogoutURI, if set, is sent a Back-Channel Logout token when
	// a session of this client is ended at the end-session endpoint.
	BackchannelLogoutURI string
}

// Options configures a Provider.
type Options struct {
	Users          []User        // users who can log in; empty means DemoUsers()
	Clients        []Client      // initial clients; see also AddClient
	Logger         *slog.Logger  // nil means slog.Default()
	AccessTokenTTL time.Duration // default 5 minutes
	IDTokenTTL     time.Duration // default 5 minutes
}

// Misbehavior makes the provider emit broken responses on purpose. The zero
// value is a well-behaved provider. See Provider.SetMisbehavior.
type Misbehavior struct {
	WrongIssuer     bool          // ID token "iss" is another issuer
	DiscoveryIssuer string        // replaces "issuer" in the discovery document
	WrongAudience   bool          // ID token "aud" (and "azp") is another client
	ExtraAudience   string        // "aud" is [client, ExtraAudience] and there is no "azp"
	WrongAZP        bool          // "azp" is another client
	OmitIAT         bool          // no "iat"
	FutureIAT       time.Duration // "iat" is now+FutureIAT
	Expired         bool          // "exp" is in the past
	OmitSub         bool          // no "sub"
	WrongNonce      bool          // "nonce" differs from the requested one (if one was sent)
	OmitNonce       bool          // no "nonce"
	AlgNone         bool          // unsigned: header alg "none", empty signature
	HS256           bool          // signed with HMAC-SHA256 keyed with the client secret
	BadSignature    bool          // valid RS256 signature with one byte flipped
	UnknownKID      bool          // signed with a key never published in the JWKS
	OmitKID         bool          // no "kid" in the ID token header
	BigClaimBytes   int           // adds a claim "big" of that many characters
	// OmitProfileClaims leaves email, email_verified, name and
	// preferred_username out of the ID token; userinfo still has them.
	OmitProfileClaims bool
	UserinfoSubject   string // userinfo returns this "sub"
	// AuthorizeError makes the authorization endpoint redirect back with
	// error=AuthorizeError (once client_id and redirect_uri are validated).
	AuthorizeError string
	TokenError     string        // token endpoint answers 400 {"error": TokenError}
	TokenStatus    int           // token endpoint answers this status with a non-JSON body
	TokenDelay     time.Duration // token endpoint waits this long (or until the request is canceled)
	JWKSStatus     int           // JWKS endpoint answers this status with a non-JSON body
}

// Stats counts requests served by a Provider.
type Stats struct {
	DiscoveryFetches   int64 // GET /.well-known/openid-configuration
	JWKSFetches        int64 // GET /jwks
	AuthorizeRequests  int64 // GET /authorize (login form submissions are not counted)
	TokenRequests      int64 // POST /token
	UserinfoRequests   int64 // GET or POST /userinfo
	EndSessionRequests int64 // GET or POST /end-session
}

// DemoUsers returns the default users, whose login names are alice, bob and
// carol.
func DemoUsers() []User {
	return []User{
		{Subject: "user-alice", PreferredUsername: "alice", Name: "Alice Liddell", Email: "alice@example.com", EmailVerified: true},
		{Subject: "user-bob", PreferredUsername: "bob", Name: "Bob Builder", Email: "bob@example.com", EmailVerified: true},
		{Subject: "user-carol", PreferredUsername: "carol", Name: "Carol Danvers", Email: "carol@example.com"},
	}
}

// Provider is a running OpenID Connect Provider. Its methods are safe for
// concurrent use.
type Provider struct {
	issuer           string
	log              *slog.Logger
	accessTTL, idTTL time.Duration
	users            []User
	srv              *http.Server
	cancel           context.CancelFunc // cancels all request contexts
	done             chan struct{}      // closed when Serve has returned
	closeOnce        sync.Once
	closeErr         error

	nDiscovery, nJWKS, nAuthorize, nToken, nUserinfo, nEndSession atomic.Int64

	mu       sync.Mutex
	clients  map[string]Client
	keys     []*signingKey // keys[0] signs; all are published
	rogue    *signingKey   // never published, see Misbehavior.UnknownKID
	mis      Misbehavior
	codes    map[string]*authCode
	access   map[string]*accessToken
	refresh  map[string]*grant
	sessions map[string]*grant // live IdP sessions by sid
}

type signingKey struct {
	kid  string
	priv *rsa.PrivateKey
}

// grant is what a login stands for; codes and tokens point to it.
type grant struct {
	client, nonce, sid string
	user               User
	scopes             []string
	authTime           time.Time
	code               string // the authorization code the grant stems from
}

type authCode struct {
	*grant
	redirectURI, challenge string
	expires                time.Time
	used                   bool
}

type accessToken struct {
	*grant
	expires time.Time
}

// oauthError is an OAuth 2.0 error response.
type oauthError struct{ code, desc string }

const otherClient = "some-other-client"

var supportedScopes = []string{"openid", "email", "profile", "offline_access"}

// Listen binds addr (e.g. "127.0.0.1:0"), sets the issuer to "http://" plus
// the bound address (an unspecified IP, as with ":0", becomes "localhost")
// and serves in a background goroutine until Close.
func Listen(addr string, opts Options) (*Provider, error) {
	key, err := newSigningKey()
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("devidp: %w", err)
	}
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "localhost"
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Provider{
		issuer:    "http://" + net.JoinHostPort(host, port),
		log:       cmp.Or(opts.Logger, slog.Default()),
		accessTTL: cmp.Or(opts.AccessTokenTTL, 5*time.Minute),
		idTTL:     cmp.Or(opts.IDTokenTTL, 5*time.Minute),
		users:     slices.Clone(opts.Users),
		cancel:    cancel,
		done:      make(chan struct{}),
		clients:   make(map[string]Client),
		keys:      []*signingKey{key},
		codes:     make(map[string]*authCode),
		access:    make(map[string]*accessToken),
		refresh:   make(map[string]*grant),
		sessions:  make(map[string]*grant),
	}
	if len(p.users) == 0 {
		p.users = DemoUsers()
	}
	for _, c := range opts.Clients {
		p.AddClient(c)
	}
	p.srv = &http.Server{
		Handler:           p.routes(),
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ErrorLog:          slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
	}
	go func() {
		defer close(p.done)
		if err := p.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			p.log.Error("devidp: server stopped", "err", err)
		}
	}()
	p.log.Warn("devidp: DEVELOPMENT IDENTITY PROVIDER running: anyone can log in as any user; NOT FOR PRODUCTION USE",
		"issuer", p.issuer)
	return p, nil
}

// Issuer returns the issuer URL, e.g. "http://127.0.0.1:41234".
func (p *Provider) Issuer() string { return p.issuer }

// Close stops the server: it cancels pending requests and waits for them.
func (p *Provider) Close() error {
	p.closeOnce.Do(func() {
		p.cancel()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := p.srv.Shutdown(ctx); err != nil {
			p.closeErr = errors.Join(err, p.srv.Close())
		}
		<-p.done
	})
	return p.closeErr
}

// AddClient registers c, replacing any client with the same ID.
func (p *Provider) AddClient(c Client) {
	c.RedirectURIs = slices.Clone(c.RedirectURIs)
	c.PostLogoutRedirectURIs = slices.Clone(c.PostLogoutRedirectURIs)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clients[c.ID] = c
}

// SetMisbehavior replaces the active Misbehavior. It applies to tokens and
// responses issued from now on.
func (p *Provider) SetMisbehavior(m Misbehavior) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mis = m
}

func (p *Provider) misbehavior() Misbehavior {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mis
}

// RotateKey switches to a new RSA signing key with a new kid. The previous
// keys stay published in the JWKS only if keepOld is true.
func (p *Provider) RotateKey(keepOld bool) error {
	k, err := newSigningKey()
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !keepOld {
		p.keys = nil
	}
	p.keys = slices.Insert(p.keys, 0, k)
	return nil
}

// Stats returns the request counters.
func (p *Provider) Stats() Stats {
	return Stats{
		DiscoveryFetches:   p.nDiscovery.Load(),
		JWKSFetches:        p.nJWKS.Load(),
		AuthorizeRequests:  p.nAuthorize.Load(),
		TokenRequests:      p.nToken.Load(),
		UserinfoRequests:   p.nUserinfo.Load(),
		EndSessionRequests: p.nEndSession.Load(),
	}
}

// SignJWT signs claims with the current key (RS256), for tests that craft
// tokens such as logout tokens. The header defaults to alg "RS256", typ
// "JWT" and the current kid; entries of header override these, a nil value
// removes one. It panics if header or claims cannot be marshaled to JSON.
func (p *Provider) SignJWT(header, claims map[string]any) string {
	p.mu.Lock()
	k := p.keys[0]
	p.mu.Unlock()
	h := map[string]any{"alg": "RS256", "typ": "JWT", "kid": k.kid}
	maps.Copy(h, header)
	maps.DeleteFunc(h, func(_ string, v any) bool { return v == nil })
	tok, err := encodeJWT(h, claims, k.sign)
	if err != nil {
		panic("devidp: SignJWT: " + err.Error())
	}
	return tok
}

// Login logs in, without a browser, the user whose PreferredUsername is
// username, given the full authorization URL the RP redirected to. It
// returns the URL the provider redirects back to (the RP's redirect_uri with
// code and state, or with error=...) without following it. A nil client
// means http.DefaultClient.
func (p *Provider) Login(ctx context.Context, client *http.Client, authorizeURL, username string) (string, error) {
	u, err := url.Parse(authorizeURL)
	if err != nil || u.Scheme+"://"+u.Host+u.Path != p.issuer+"/authorize" {
		return "", fmt.Errorf("devidp: login: %q is not an authorization URL of this provider", authorizeURL)
	}
	c := *cmp.Or(client, http.DefaultClient)
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	form := u.Query()
	form.Set("user", username)
	// The GET shows the login page (or redirects back with an error); the
	// POST is what clicking the user's button sends.
	get, err1 := http.NewRequestWithContext(ctx, http.MethodGet, authorizeURL, nil)
	post, err2 := http.NewRequestWithContext(ctx, http.MethodPost, p.issuer+"/authorize", strings.NewReader(form.Encode()))
	if err := errors.Join(err1, err2); err != nil {
		return "", fmt.Errorf("devidp: login: %w", err)
	}
	post.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for _, req := range []*http.Request{get, post} {
		resp, err := c.Do(req)
		if err != nil {
			return "", fmt.Errorf("devidp: login: %w", err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusOK: // the login page
		case http.StatusFound:
			loc, err := resp.Location()
			if err != nil {
				return "", fmt.Errorf("devidp: login: %w", err)
			}
			return loc.String(), nil
		default:
			return "", fmt.Errorf("devidp: login: %s /authorize: %s: %s", req.Method, resp.Status, resp.Header.Get("X-Devidp-Error"))
		}
	}
	return "", errors.New("devidp: login: the login form submission did not redirect")
}

func (p *Provider) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", p.handleDiscovery)
	mux.HandleFunc("GET /authorize", p.handleAuthorize)
	mux.HandleFunc("POST /authorize", p.handleLogin)
	mux.HandleFunc("POST /token", p.handleToken)
	mux.HandleFunc("GET /userinfo", p.handleUserinfo)
	mux.HandleFunc("POST /userinfo", p.handleUserinfo)
	mux.HandleFunc("GET /jwks", p.handleJWKS)
	mux.HandleFunc("GET /end-session", p.handleEndSession)
	mux.HandleFunc("POST /end-session", p.handleEndSession)
	return mux
}

func (p *Provider) handleDiscovery(w http.ResponseWriter, r *http.Request) {
	p.nDiscovery.Add(1)
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                cmp.Or(p.misbehavior().DiscoveryIssuer, p.issuer),
		"authorization_endpoint":                p.issuer + "/authorize",
		"token_endpoint":                        p.issuer + "/token",
		"userinfo_endpoint":                     p.issuer + "/userinfo",
		"jwks_uri":                              p.issuer + "/jwks",
		"end_session_endpoint":                  p.issuer + "/end-session",
		"response_types_supported":              []string{"code"},
		"response_modes_supported":              []string{"query"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post"},
		"code_challenge_methods_supported":      []string{"S256"},
		"grant_types_supported":                 []string{"authorization_code", "refresh_token"},
		"scopes_supported":                      supportedScopes,
		"claims_supported": []string{"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "sid", "azp",
			"at_hash", "email", "email_verified", "name", "preferred_username"},
		"backchannel_logout_supported":         true,
		"backchannel_logout_session_supported": true,
	})
}

// validateAuthorize checks the authorization request q. If it is invalid it
// writes the response, an error page if client_id or redirect_uri are bad
// (never redirecting to an unverified URI), else an error redirect, and
// returns nil. Otherwise it returns the pending grant (without code and
// sid), the redirect URI and the code challenge.
func (p *Provider) validateAuthorize(w http.ResponseWriter, q url.Values) (g *grant, redirectURI, challenge string) {
	p.mu.Lock()
	c, known := p.clients[q.Get("client_id")]
	m := p.mis
	p.mu.Unlock()
	redirectURI = q.Get("redirect_uri")
	if len(q["client_id"]) != 1 || !known {
		p.errorPage(w, http.StatusBadRequest, "Unknown client", "The client_id is missing or not registered.")
		return nil, "", ""
	}
	if len(q["redirect_uri"]) != 1 || !slices.Contains(c.RedirectURIs, redirectURI) {
		p.errorPage(w, http.StatusBadRequest, "Invalid redirect_uri", "The redirect_uri is missing or not registered for this client.")
		return nil, "", ""
	}
	scopes := strings.Fields(q.Get("scope"))
	challenge = q.Get("code_challenge")
	var e *oauthError
	switch {
	case m.AuthorizeError != "":
		e = &oauthError{m.AuthorizeError, "error requested by the devidp misbehavior settings"}
	case q.Get("response_type") != "code":
		e = &oauthError{"unsupported_response_type", "only response_type=code is supported"}
	case !slices.Contains(scopes, "openid"):
		e = &oauthError{"invalid_scope", "scope must contain openid"}
	case q.Get("code_challenge_method") != "S256":
		e = &oauthError{"invalid_request", "PKCE is required: code_challenge_method must be S256"}
	case !validChallenge(challenge):
		e = &oauthError{"invalid_request", "PKCE is required: code_challenge missing or malformed"}
	case q.Has("response_mode") && q.Get("response_mode") != "query":
		e = &oauthError{"invalid_request", "only response_mode=query is supported"}
	case slices.Contains(strings.Fields(q.Get("prompt")), "none"):
		e = &oauthError{"login_required", "the development IdP always requires an interactive login"}
	}
	if e != nil {
		redirectBack(w, redirectURI, q, url.Values{"error": {e.code}, "error_description": {e.desc}})
		return nil, "", ""
	}
	scopes = slices.DeleteFunc(scopes, func(s string) bool { return !slices.Contains(supportedScopes, s) })
	slices.Sort(scopes)
	return &grant{client: c.ID, nonce: q.Get("nonce"), scopes: slices.Compact(scopes)}, redirectURI, challenge
}

func validChallenge(s string) bool {
	b, err := base64.RawURLEncoding.DecodeString(s)
	return err == nil && len(b) == sha256.Size
}

// validVerifier checks the code_verifier syntax of RFC 7636 section 4.1.
func validVerifier(s string) bool {
	return len(s) >= 43 && len(s) <= 128 && strings.Trim(s,
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~") == ""
}

// redirectBack redirects to target with params added to its query, and the
// state of the request q if it had one.
func redirectBack(w http.ResponseWriter, target string, q, params url.Values) {
	u, err := url.Parse(target)
	if err != nil {
		http.Error(w, "invalid redirect target", http.StatusInternalServerError)
		return
	}
	query := u.Query()
	maps.Copy(query, params)
	if q.Has("state") {
		query.Set("state", q.Get("state"))
	}
	u.RawQuery = query.Encode()
	w.Header().Set("Location", u.String())
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusFound)
}

func (p *Provider) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	p.nAuthorize.Add(1)
	q := r.URL.Query()
	g, _, _ := p.validateAuthorize(w, q)
	if g == nil {
		return
	}
	var hidden []field
	for _, k := range slices.Sorted(maps.Keys(q)) {
		for _, v := range q[k] {
			if k != "user" {
				hidden = append(hidden, field{k, v})
			}
		}
	}
	p.page(w, http.StatusOK, pageData{Title: "Sign in", Client: g.client, Users: p.users, Hidden: hidden})
}

// handleLogin handles the login form submission: it issues the code.
func (p *Provider) handleLogin(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		p.errorPage(w, http.StatusBadRequest, "Bad request", "The login form could not be parsed.")
		return
	}
	q := r.PostForm
	g, redirectURI, challenge := p.validateAuthorize(w, q)
	if g == nil {
		return
	}
	i := slices.IndexFunc(p.users, func(u User) bool { return u.PreferredUsername == q.Get("user") })
	if i < 0 {
		p.errorPage(w, http.StatusBadRequest, "Unknown user", "There is no such user at this identity provider.")
		return
	}
	now := time.Now()
	g.user, g.authTime, g.sid, g.code = p.users[i], now, rand.Text(), rand.Text()
	p.mu.Lock()
	p.gcLocked(now)
	p.codes[g.code] = &authCode{grant: g, redirectURI: redirectURI, challenge: challenge, expires: now.Add(time.Minute)}
	p.sessions[g.sid] = g
	p.mu.Unlock()
	p.log.Info("devidp: user logged in", "user", g.user.PreferredUsername, "client", g.client)
	redirectBack(w, redirectURI, q, url.Values{"code": {g.code}})
}

// gcLocked drops expired codes and access tokens.
func (p *Provider) gcLocked(now time.Time) {
	maps.DeleteFunc(p.codes, func(_ string, c *authCode) bool { return now.After(c.expires) })
	maps.DeleteFunc(p.access, func(_ string, a *accessToken) bool { return now.After(a.expires) })
}

// revokeLocked drops all codes and tokens whose grant matches.
func (p *Provider) revokeLocked(match func(*grant) bool) {
	maps.DeleteFunc(p.codes, func(_ string, c *authCode) bool { return match(c.grant) })
	maps.DeleteFunc(p.access, func(_ string, a *accessToken) bool { return match(a.grant) })
	maps.DeleteFunc(p.refresh, func(_ string, g *grant) bool { return match(g) })
}

func (p *Provider) handleToken(w http.ResponseWriter, r *http.Request) {
	p.nToken.Add(1)
	m := p.misbehavior()
	if m.TokenDelay > 0 {
		t := time.NewTimer(m.TokenDelay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			return
		}
	}
	if m.TokenStatus != 0 {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(m.TokenStatus)
		_, _ = io.WriteString(w, "<html><body><h1>Something went wrong upstream</h1></body></html>\n")
		return
	}
	g, nonce, e := p.redeem(w, r, m)
	if e != nil {
		status := http.StatusBadRequest
		if e.code == "invalid_client" {
			status = http.StatusUnauthorized
		}
		writeJSON(w, status, map[string]string{"error": e.code, "error_description": e.desc})
		return
	}
	at := rand.Text()
	idToken, err := p.idToken(g, nonce, at, m)
	if err != nil {
		p.log.Error("devidp: cannot issue ID token", "err", err)
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "server_error"})
		return
	}
	resp := map[string]any{
		"access_token": at,
		"token_type":   "Bearer",
		"expires_in":   int(p.accessTTL.Seconds()),
		"id_token":     idToken,
		"scope":        strings.Join(g.scopes, " "),
	}
	now := time.Now()
	p.mu.Lock()
	p.gcLocked(now)
	p.access[at] = &accessToken{grant: g, expires: now.Add(p.accessTTL)}
	if slices.Contains(g.scopes, "offline_access") {
		rt := rand.Text() + rand.Text()
		p.refresh[rt] = g
		resp["refresh_token"] = rt
	}
	p.mu.Unlock()
	writeJSON(w, http.StatusOK, resp)
}

// redeem authenticates the client and redeems the code or refresh token of
// a token request. It returns the grant and the nonce to put in the ID token.
func (p *Provider) redeem(w http.ResponseWriter, r *http.Request, m Misbehavior) (*grant, string, *oauthError) {
	if m.TokenError != "" {
		return nil, "", &oauthError{m.TokenError, "error requested by the devidp misbehavior settings"}
	}
	if err := r.ParseForm(); err != nil {
		return nil, "", &oauthError{"invalid_request", "malformed form body"}
	}
	form := r.PostForm
	// client_secret_basic, with the form-urlencoding of RFC 6749 section
	// 2.3.1, or client_secret_post.
	id, secret, basic := r.BasicAuth()
	var err1, err2 error
	if basic {
		w.Header().Set("WWW-Authenticate", `Basic realm="devidp"`)
		id, err1 = url.QueryUnescape(id)
		secret, err2 = url.QueryUnescape(secret)
		if form.Has("client_secret") || form.Has("client_id") && form.Get("client_id") != id {
			err1 = errors.New("several client authentication methods")
		}
	} else {
		id, secret = form.Get("client_id"), form.Get("client_secret")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	c, known := p.clients[id]
	if err1 != nil || err2 != nil || !known || c.Secret == "" || subtle.ConstantTimeCompare([]byte(c.Secret), []byte(secret)) != 1 {
		return nil, "", &oauthError{"invalid_client", "client authentication failed"}
	}
	w.Header().Del("WWW-Authenticate")

	switch form.Get("grant_type") {
	case "authorization_code":
		code := form.Get("code")
		ac, ok := p.codes[code]
		switch {
		case !ok || time.Now().After(ac.expires):
			return nil, "", &oauthError{"invalid_grant", "unknown or expired authorization code"}
		case ac.client != c.ID:
			return nil, "", &oauthError{"invalid_grant", "authorization code issued to another client"}
		case ac.used:
			// RFC 6749 section 4.1.2: revoke the tokens issued for the code.
			p.revokeLocked(func(g *grant) bool { return g.code == code })
			return nil, "", &oauthError{"invalid_grant", "authorization code already used"}
		}
		ac.used = true // any redemption attempt by its client consumes the code
		switch v := form.Get("code_verifier"); {
		case form.Get("redirect_uri") != ac.redirectURI:
			return nil, "", &oauthError{"invalid_grant", "redirect_uri does not match the authorization request"}
		case !validVerifier(v) || s256(v) != ac.challenge:
			return nil, "", &oauthError{"invalid_grant", "PKCE code_verifier does not match the code_challenge"}
		case p.sessions[ac.sid] == nil:
			return nil, "", &oauthError{"invalid_grant", "the session has ended"}
		}
		return ac.grant, ac.nonce, nil
	case "refresh_token":
		rt := form.Get("refresh_token")
		g, ok := p.refresh[rt]
		if !ok || g.client != c.ID || p.sessions[g.sid] == nil {
			return nil, "", &oauthError{"invalid_grant", "unknown, rotated or revoked refresh token"}
		}
		delete(p.refresh, rt) // rotation: the caller issues a new one
		// A narrower scope may be requested but is not honoured; the
		// response's "scope" tells the client (RFC 6749 section 5.1).
		for _, s := range strings.Fields(form.Get("scope")) {
			if !slices.Contains(g.scopes, s) {
				return nil, "", &oauthError{"invalid_scope", "scope exceeds the original grant"}
			}
		}
		return g, "", nil
	}
	return nil, "", &oauthError{"unsupported_grant_type", "grant_type must be authorization_code or refresh_token"}
}

func s256(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// userClaims returns u's Extra claims plus its scope-dependent claims.
func userClaims(u User, scopes []string, profile bool) map[string]any {
	claims := maps.Clone(u.Extra)
	if claims == nil {
		claims = make(map[string]any)
	}
	if profile && slices.Contains(scopes, "email") && u.Email != "" {
		claims["email"], claims["email_verified"] = u.Email, u.EmailVerified
	}
	if profile && slices.Contains(scopes, "profile") {
		for k, v := range map[string]string{"name": u.Name, "preferred_username": u.PreferredUsername} {
			if v != "" {
				claims[k] = v
			}
		}
	}
	return claims
}

// idToken issues an ID token for g, misbehaving as m says.
func (p *Provider) idToken(g *grant, nonce, accessToken string, m Misbehavior) (string, error) {
	now := time.Now()
	atHash := sha256.Sum256([]byte(accessToken))
	claims := userClaims(g.user, g.scopes, !m.OmitProfileClaims)
	maps.Copy(claims, map[string]any{
		"iss":       p.issuer,
		"sub":       g.user.Subject,
		"aud":       g.client,
		"azp":       g.client,
		"exp":       now.Add(p.idTTL).Unix(),
		"iat":       now.Unix(),
		"auth_time": g.authTime.Unix(),
		"sid":       g.sid,
		"at_hash":   base64.RawURLEncoding.EncodeToString(atHash[:sha256.Size/2]),
	})
	// set sets claim k to v (deleting it if v is nil) when on is true.
	set := func(on bool, k string, v any) {
		switch {
		case on && v == nil:
			delete(claims, k)
		case on:
			claims[k] = v
		}
	}
	set(nonce != "", "nonce", nonce)
	set(nonce != "" && m.WrongNonce, "nonce", "wrong-"+nonce)
	set(m.OmitNonce, "nonce", nil)
	set(m.WrongIssuer, "iss", "https://wrong-issuer.example.com")
	set(m.WrongAudience, "aud", otherClient)
	set(m.WrongAudience, "azp", otherClient)
	set(m.ExtraAudience != "", "aud", []string{g.client, m.ExtraAudience})
	set(m.ExtraAudience != "", "azp", nil)
	set(m.WrongAZP, "azp", otherClient)
	set(m.OmitSub, "sub", nil)
	set(m.Expired, "exp", now.Add(-time.Hour).Unix())
	set(m.Expired, "iat", now.Add(-2*time.Hour).Unix())
	set(m.FutureIAT != 0, "iat", now.Add(m.FutureIAT).Unix())
	set(m.OmitIAT, "iat", nil)
	set(m.BigClaimBytes > 0, "big", strings.Repeat("x", max(m.BigClaimBytes, 0)))

	header := map[string]any{"alg": "RS256", "typ": "JWT"}
	var sign func([]byte) []byte
	switch {
	case m.AlgNone:
		header["alg"] = "none"
	case m.HS256:
		header["alg"] = "HS256"
		p.mu.Lock()
		secret := p.clients[g.client].Secret
		p.mu.Unlock()
		sign = func(input []byte) []byte {
			mac := hmac.New(sha256.New, []byte(secret))
			mac.Write(input)
			return mac.Sum(nil)
		}
	default:
		key, err := p.signingKey(m.UnknownKID)
		if err != nil {
			return "", err
		}
		if !m.OmitKID {
			header["kid"] = key.kid
		}
		sign = func(input []byte) []byte {
			sig := key.sign(input)
			if m.BadSignature {
				sig[len(sig)/2] ^= 0x01
			}
			return sig
		}
	}
	return encodeJWT(header, claims, sign)
}

// signingKey returns the current key, or the never-published rogue key.
func (p *Provider) signingKey(rogue bool) (*signingKey, error) {
	p.mu.Lock()
	k := p.keys[0]
	if rogue {
		k = p.rogue
	}
	p.mu.Unlock()
	if k != nil {
		return k, nil
	}
	k, err := newSigningKey() // outside the lock: this takes a while
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rogue = cmp.Or(p.rogue, k)
	return p.rogue, nil
}

func newSigningKey() (*signingKey, error) {
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("devidp: generating RSA key: %w", err)
	}
	k := &signingKey{priv: priv}
	jwk := k.jwk() // the kid is the RFC 7638 JWK thumbprint
	sum := sha256.Sum256(fmt.Appendf(nil, `{"e":%q,"kty":"RSA","n":%q}`, jwk["e"], jwk["n"]))
	k.kid = base64.RawURLEncoding.EncodeToString(sum[:])
	return k, nil
}

func (k *signingKey) jwk() map[string]string {
	return map[string]string{
		"kty": "RSA",
		"kid": k.kid,
		"use": "sig",
		"alg": "RS256",
		"n":   base64.RawURLEncoding.EncodeToString(k.priv.N.Bytes()),
		"e":   base64.RawURLEncoding.EncodeToString(big.NewInt(int64(k.priv.E)).Bytes()),
	}
}

func (k *signingKey) sign(input []byte) []byte {
	sum := sha256.Sum256(input)
	sig, err := rsa.SignPKCS1v15(rand.Reader, k.priv, crypto.SHA256, sum[:])
	if err != nil {
		panic("devidp: RS256 signing failed: " + err.Error()) // cannot happen with a valid key
	}
	return sig
}

// encodeJWT returns the JWS compact serialization; a nil sign gives an
// empty signature.
func encodeJWT(header, claims map[string]any, sign func([]byte) []byte) (string, error) {
	h, err1 := json.Marshal(header)
	c, err2 := json.Marshal(claims)
	if err := errors.Join(err1, err2); err != nil {
		return "", err
	}
	input := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
	var sig []byte
	if sign != nil {
		sig = sign([]byte(input))
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

// verifyJWT checks that tok is an RS256 JWT issued by this provider and
// signed with a published key, ignoring expiry, and returns its claims.
func (p *Provider) verifyJWT(tok string) (map[string]any, error) {
	var header struct{ Alg, Kid string }
	var claims map[string]any
	parts := strings.Split(tok, ".")
	if len(parts) != 3 || decodeSegment(parts[0], &header) != nil || decodeSegment(parts[1], &claims) != nil {
		return nil, errors.New("malformed JWT")
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || header.Alg != "RS256" || claims["iss"] != p.issuer {
		return nil, errors.New("not an RS256 JWT of this issuer")
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	p.mu.Lock()
	keys := slices.Clone(p.keys)
	p.mu.Unlock()
	for _, k := range keys {
		if (header.Kid == "" || header.Kid == k.kid) && rsa.VerifyPKCS1v15(&k.priv.PublicKey, crypto.SHA256, sum[:], sig) == nil {
			return claims, nil
		}
	}
	return nil, errors.New("JWT signature not valid for any published key")
}

func decodeSegment(seg string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

func (p *Provider) handleUserinfo(w http.ResponseWriter, r *http.Request) {
	p.nUserinfo.Add(1)
	scheme, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	p.mu.Lock()
	at, ok := p.access[strings.TrimSpace(tok)]
	m := p.mis
	p.mu.Unlock()
	if !strings.EqualFold(scheme, "Bearer") || !ok || time.Now().After(at.expires) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="devidp", error="invalid_token"`)
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_token"})
		return
	}
	claims := userClaims(at.user, at.scopes, true)
	claims["sub"] = cmp.Or(m.UserinfoSubject, at.user.Subject)
	writeJSON(w, http.StatusOK, claims)
}

func (p *Provider) handleJWKS(w http.ResponseWriter, r *http.Request) {
	p.nJWKS.Add(1)
	p.mu.Lock()
	status, keys := p.mis.JWKSStatus, slices.Clone(p.keys)
	p.mu.Unlock()
	if status != 0 {
		http.Error(w, "JWKS unavailable (devidp misbehavior)", status)
		return
	}
	jwks := make([]map[string]string, len(keys))
	for i, k := range keys {
		jwks[i] = k.jwk()
	}
	writeJSON(w, http.StatusOK, map[string]any{"keys": jwks})
}

// handleEndSession implements OpenID Connect RP-Initiated Logout 1.0.
func (p *Provider) handleEndSession(w http.ResponseWriter, r *http.Request) {
	p.nEndSession.Add(1)
	if err := r.ParseForm(); err != nil {
		p.errorPage(w, http.StatusBadRequest, "Bad request", "The logout request could not be parsed.")
		return
	}
	q := r.Form
	clientID, sid := q.Get("client_id"), ""
	if hint := q.Get("id_token_hint"); hint != "" {
		claims, err := p.verifyJWT(hint)
		if err != nil {
			p.errorPage(w, http.StatusBadRequest, "Invalid logout request", "The id_token_hint was not issued by this identity provider.")
			return
		}
		var aud []string
		switch a := claims["aud"].(type) {
		case string:
			aud = []string{a}
		case []any:
			for _, v := range a {
				s, _ := v.(string)
				aud = append(aud, s)
			}
		}
		if clientID == "" && len(aud) > 0 {
			clientID = aud[0]
		} else if !slices.Contains(aud, clientID) {
			p.errorPage(w, http.StatusBadRequest, "Invalid logout request", "The client_id does not match the id_token_hint.")
			return
		}
		sid, _ = claims["sid"].(string)
	}
	target := q.Get("post_logout_redirect_uri")
	p.mu.Lock()
	c, known := p.clients[clientID]
	p.mu.Unlock()
	if target != "" && (!known || !slices.Contains(c.PostLogoutRedirectURIs, target)) {
		p.errorPage(w, http.StatusBadRequest, "Invalid logout request",
			"The post_logout_redirect_uri is not registered for this client, so you were not logged out.")
		return
	}
	if sid != "" {
		p.endSession(r.Context(), sid)
	}
	if target != "" {
		redirectBack(w, target, q, nil)
		return
	}
	p.page(w, http.StatusOK, pageData{Title: "You are logged out", Message: "Your session at the development identity provider has ended."})
}

// endSession ends the IdP session sid, revokes its tokens and sends a
// back-channel logout token to the client if it registered a URI.
func (p *Provider) endSession(ctx context.Context, sid string) {
	p.mu.Lock()
	g := p.sessions[sid]
	delete(p.sessions, sid)
	p.revokeLocked(func(g *grant) bool { return g.sid == sid })
	var c Client
	if g != nil {
		c = p.clients[g.client]
	}
	p.mu.Unlock()
	if g == nil {
		return
	}
	p.log.Info("devidp: session ended", "user", g.user.PreferredUsername, "client", g.client)
	if c.BackchannelLogoutURI == "" {
		return
	}
	now := time.Now()
	tok := p.SignJWT(map[string]any{"typ": "logout+jwt"}, map[string]any{
		"iss": p.issuer, "aud": c.ID, "iat": now.Unix(), "exp": now.Add(2 * time.Minute).Unix(),
		"jti": rand.Text(), "sub": g.user.Subject, "sid": sid,
		"events": map[string]any{"http://schemas.openid.net/event/backchannel-logout": map[string]any{}},
	})
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.BackchannelLogoutURI,
		strings.NewReader(url.Values{"logout_token": {tok}}.Encode()))
	if err == nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		var resp *http.Response
		if resp, err = http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNoContent {
				err = errors.New(resp.Status)
			}
		}
	}
	if err != nil {
		p.log.Warn("devidp: back-channel logout failed", "client", c.ID, "err", err)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

type field struct{ Name, Value string }

type pageData struct {
	Title, Message, Client string
	Users                  []User
	Hidden                 []field
}

var pageTmpl = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}} · Development IdP</title>
<style>
body{margin:0;font-family:system-ui,sans-serif;background:#f3f4f7;color:#1d1d24}
.banner{background:#b3261e;color:#fff;font-weight:700;text-align:center;padding:.8em;letter-spacing:.03em}
main{max-width:26em;margin:2.5em auto;background:#fff;border-radius:10px;box-shadow:0 2px 8px rgba(0,0,0,.12);padding:1.5em 2em}
h1{font-size:1.35em;margin-top:0}
button{display:block;width:100%;margin:.6em 0;padding:.75em 1em;text-align:left;font:inherit;cursor:pointer;
 background:#f8f9ff;border:1px solid #c9cde0;border-radius:8px}
button:hover,button:focus{background:#e9edff;border-color:#6b75c9}
.sub{color:#5f6270;font-size:.9em}
</style></head><body>
<div class="banner">DEVELOPMENT IDENTITY PROVIDER — for local development only</div>
<main><h1>{{.Title}}</h1>
{{with .Message}}<p>{{.}}</p>{{end}}
{{if .Users}}<p class="sub">Choose a demo user to sign in to <strong>{{.Client}}</strong>. No password needed.</p>
<form method="post" action="/authorize">
{{range .Hidden}}<input type="hidden" name="{{.Name}}" value="{{.Value}}">
{{end}}{{range .Users}}<button type="submit" name="user" value="{{.PreferredUsername}}"><strong>{{.Name}}</strong><br><span class="sub">{{.Email}}</span></button>
{{end}}</form>{{end}}
</main></body></html>
`))

func (p *Provider) page(w http.ResponseWriter, status int, d pageData) {
	var buf bytes.Buffer
	if err := pageTmpl.Execute(&buf, d); err != nil {
		p.log.Error("devidp: rendering page", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
	if status >= 400 {
		h.Set("X-Devidp-Error", d.Message) // lets Login report why
	}
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func (p *Provider) errorPage(w http.ResponseWriter, status int, title, msg string) {
	p.page(w, status, pageData{Title: title, Message: msg})
}
