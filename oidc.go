package oidcauth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/oidcauth/oidcauth/internal/cookies"
	"github.com/oidcauth/oidcauth/internal/redirect"
	"github.com/oidcauth/oidcauth/internal/seal"
)

// Timing rules of the login flow.
const (
	// loginTTL is how long a login transaction (state, nonce, PKCE
	// verifier) stays valid.
	loginTTL = 10 * time.Minute
	// clockSkew is how far in the future an ID token's iat may be.
	clockSkew = time.Minute
	// DefaultHTTPTimeout bounds each call to the IdP.
	DefaultHTTPTimeout = 10 * time.Second
)

// Auth is the OpenID Connect middleware for one client at one IdP. Make it
// with New; it is safe for concurrent use.
type Auth struct {
	cfg      Config
	oauth    oauth2.Config
	provider *oidc.Provider
	meta     discovery

	verifier       *oidc.IDTokenVerifier // ID tokens
	logoutVerifier *oidc.IDTokenVerifier // back-channel logout tokens
	bearerVerifier *oidc.IDTokenVerifier // API access tokens; nil unless Config.APIAudience
	client         *http.Client

	store  SessionStore
	sealer *seal.Sealer
	txBase http.Cookie // attributes of login-transaction cookies

	loginPath, callbackPath, logoutPath string

	errorHandler ErrorHandler
	log          *slog.Logger
	now          func() time.Time
	used         usedStates   // consumed login states
	logoutJTIs   usedStates   // consumed logout-token ids
	revoked      revocations  // back-channel logouts of stateless sessions
	refreshes    refreshGroup // token refreshes in flight or just done
	storeErrors  burstLog     // store outages, logged once per burst

	backchannelPath string
	postLogoutPath  string      // the post-logout landing on this app, if any
	appOrigin       string      // scheme://host of the redirect URI
	bearerCache     bearerCache // verified bearer tokens

	obs       Observer // nil: nothing is recorded
	storeKind string   // the store's name in Events
}

// Option changes how New builds an Auth.
type Option func(*options)

type options struct {
	store        SessionStore
	errorHandler ErrorHandler
	logger       *slog.Logger
	client       *http.Client
	loginPath    string
	logoutPath   string
	backchannel  string
	observer     Observer
	now          func() time.Time
}

// WithSessionStore keeps sessions in store instead of the default encrypted
// cookie. Use GorillaStore to plug in any gorilla/sessions store.
func WithSessionStore(store SessionStore) Option { return func(o *options) { o.store = store } }

// WithErrorHandler replaces DefaultErrorHandler.
func WithErrorHandler(h ErrorHandler) Option { return func(o *options) { o.errorHandler = h } }

// WithLogger sets the logger; the default is slog.Default(). Tokens, codes,
// cookies and secrets are never logged.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithHTTPClient sets the client for every call to the IdP (discovery,
// keys, token, userinfo). The default has a 10-second timeout.
func WithHTTPClient(c *http.Client) Option { return func(o *options) { o.client = c } }

// WithPaths changes the paths of the login and logout routes (default
// /login and /logout). The callback's path is OIDC_REDIRECT_URI's.
func WithPaths(login, logout string) Option {
	return func(o *options) { o.loginPath, o.logoutPath = login, logout }
}

// WithBackchannelLogoutPath changes the path of the back-channel logout
// route (default /backchannel-logout), where the IdP posts logout tokens.
func WithBackchannelLogoutPath(path string) Option { return func(o *options) { o.backchannel = path } }

// discovery is the part of the IdP's metadata that oidcauth uses.
type discovery struct {
	Issuer            string   `json:"issuer"`
	AuthURL           string   `json:"authorization_endpoint"`
	TokenURL          string   `json:"token_endpoint"`
	UserinfoURL       string   `json:"userinfo_endpoint"`
	JWKSURL           string   `json:"jwks_uri"`
	EndSessionURL     string   `json:"end_session_endpoint"`
	IntrospectionURL  string   `json:"introspection_endpoint"`
	ResponseIss       bool     `json:"authorization_response_iss_parameter_supported"`
	Algorithms        []string `json:"id_token_signing_alg_values_supported"`
	TokenAuthMethods  []string `json:"token_endpoint_auth_methods_supported"`
	ChallengeMethods  []string `json:"code_challenge_methods_supported"`
	BackchannelLogout bool     `json:"backchannel_logout_supported"`
}

// New discovers the IdP named by cfg.Issuer and returns the middleware. If
// the IdP cannot be reached it retries with backoff until ctx ends, then
// returns an error naming the issuer and the cause. A discovery document
// whose issuer differs from cfg.Issuer is an error at once.
func New(ctx context.Context, cfg Config, opts ...Option) (*Auth, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	o := options{loginPath: "/login", logoutPath: "/logout", backchannel: "/backchannel-logout", now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	if o.logger == nil {
		o.logger = slog.Default()
	}
	if o.client == nil {
		o.client = &http.Client{Timeout: DefaultHTTPTimeout}
	}
	if o.errorHandler == nil {
		o.errorHandler = DefaultErrorHandler
	}
	redirectURL, _ := url.Parse(cfg.RedirectURI) // validated
	secure := redirectURL.Scheme == "https"

	sealer, err := seal.New(cfg.SessionSecret, cfg.SessionSecretPrevious)
	if err != nil {
		return nil, err
	}
	a := &Auth{
		cfg:          cfg,
		client:       o.client,
		sealer:       sealer,
		loginPath:    o.loginPath,
		logoutPath:   o.logoutPath,
		callbackPath: redirectURL.Path,
		errorHandler: o.errorHandler,
		log:          o.logger,
		now:          o.now,
		store:        o.store,

		backchannelPath: o.backchannel,
		obs:             o.observer,
		appOrigin:       redirectURL.Scheme + "://" + redirectURL.Host,
		txBase: http.Cookie{
			Path:     redirectURL.Path,
			HttpOnly: true,
			Secure:   secure,
			SameSite: http.SameSiteLaxMode,
			MaxAge:   int(loginTTL.Seconds()),
		},
	}
	if pl, err := url.Parse(cfg.PostLogoutRedirectURI); err == nil && cfg.PostLogoutRedirectURI != "" &&
		pl.Scheme+"://"+pl.Host == a.appOrigin {
		a.postLogoutPath = pl.Path
	}
	switch {
	case a.store != nil:
	case cfg.RedisURL != "":
		if a.store, err = newRedisSessionStore(cfg, secure, o.now); err != nil {
			return nil, err
		}
	default:
		a.store = newCookieStore(sealer, cfg.SessionCookieName, secure, o.now)
	}

	a.storeKind = storeName(a.store)
	meta, err := a.discover(ctx)
	if err != nil {
		return nil, err
	}
	a.meta = meta
	algs := signingAlgorithms(meta.Algorithms)
	idpCtx := oidc.ClientContext(context.Background(), o.client)
	a.provider = (&oidc.ProviderConfig{
		IssuerURL:   meta.Issuer,
		AuthURL:     meta.AuthURL,
		TokenURL:    meta.TokenURL,
		UserInfoURL: meta.UserinfoURL,
		JWKSURL:     meta.JWKSURL,
		Algorithms:  algs,
	}).NewProvider(idpCtx)
	// One key set, fetched once and refreshed on an unknown kid, serves
	// ID tokens, logout tokens and bearer tokens alike.
	keys := &keySet{url: meta.JWKSURL, client: o.client, now: func() time.Time { return a.now() }}
	a.verifier = oidc.NewVerifier(meta.Issuer, keys, &oidc.Config{ClientID: cfg.ClientID, SupportedSigningAlgs: algs, Now: o.now})
	// Logout tokens need not carry exp; it is checked when present.
	a.logoutVerifier = oidc.NewVerifier(meta.Issuer, keys, &oidc.Config{ClientID: cfg.ClientID, SupportedSigningAlgs: algs, Now: o.now, SkipExpiryCheck: true})
	if cfg.APIAudience != "" {
		a.bearerVerifier = oidc.NewVerifier(meta.Issuer, keys, &oidc.Config{ClientID: cfg.APIAudience, SupportedSigningAlgs: algs, Now: o.now})
	}
	authStyle := oauth2.AuthStyleInHeader
	if len(meta.TokenAuthMethods) > 0 && !slices.Contains(meta.TokenAuthMethods, "client_secret_basic") &&
		slices.Contains(meta.TokenAuthMethods, "client_secret_post") {
		authStyle = oauth2.AuthStyleInParams
	}
	a.oauth = oauth2.Config{
		ClientID:     cfg.ClientID,
		ClientSecret: cfg.ClientSecret,
		RedirectURL:  cfg.RedirectURI,
		Scopes:       cfg.Scopes,
		Endpoint:     oauth2.Endpoint{AuthURL: meta.AuthURL, TokenURL: meta.TokenURL, AuthStyle: authStyle},
	}
	return a, nil
}

// signingAlgorithms keeps the advertised ID-token algorithms that are
// asymmetric: never "none", never HMAC. With none left, RS256, which every
// OpenID Provider must support.
func signingAlgorithms(advertised []string) []string {
	var algs []string
	for _, alg := range advertised {
		switch alg {
		case oidc.RS256, oidc.RS384, oidc.RS512, oidc.ES256, oidc.ES384, oidc.ES512,
			oidc.PS256, oidc.PS384, oidc.PS512, oidc.EdDSA:
			algs = append(algs, alg)
		}
	}
	if len(algs) == 0 {
		algs = []string{oidc.RS256}
	}
	return algs
}

// discover fetches the IdP's metadata, retrying with capped exponential
// backoff while the IdP is unreachable or failing and ctx lasts.
func (a *Auth) discover(ctx context.Context) (discovery, error) {
	wellKnown := strings.TrimSuffix(a.cfg.Issuer, "/") + "/.well-known/openid-configuration"
	delay := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		sctx, end := startOp(a.obs, ctx, OpDiscovery)
		meta, err := a.fetchDiscovery(sctx, wellKnown)
		end(err)
		if err == nil {
			return meta, nil
		}
		var permanent *ConfigError
		if errors.As(err, &permanent) {
			return discovery{}, err
		}
		a.log.WarnContext(ctx, "oidcauth: identity provider discovery failed, retrying",
			"issuer", a.cfg.Issuer, "attempt", attempt, "retry_in", delay, "cause", err.Error())
		select {
		case <-ctx.Done():
			return discovery{}, fmt.Errorf("oidcauth: discovery of %s failed after %d attempts: %w (gave up: %v)", a.cfg.Issuer, attempt, err, context.Cause(ctx))
		case <-time.After(delay):
		}
		delay = min(delay*2, 5*time.Second)
	}
}

func (a *Auth) fetchDiscovery(ctx context.Context, wellKnown string) (discovery, error) {
	var meta discovery
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, wellKnown, nil)
	if err != nil {
		return meta, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := a.client.Do(req)
	if err != nil {
		return meta, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return meta, err
	}
	if resp.StatusCode != http.StatusOK {
		return meta, fmt.Errorf("%s answered %s", wellKnown, resp.Status)
	}
	if err := json.Unmarshal(body, &meta); err != nil {
		return meta, fmt.Errorf("%s: malformed discovery document: %v", wellKnown, err)
	}
	if meta.Issuer != a.cfg.Issuer {
		return meta, &ConfigError{"OIDC_ISSUER", fmt.Sprintf("the IdP's discovery document names issuer %q, not %q: they must be equal", meta.Issuer, a.cfg.Issuer)}
	}
	for name, u := range map[string]string{
		"authorization_endpoint": meta.AuthURL,
		"token_endpoint":         meta.TokenURL,
		"jwks_uri":               meta.JWKSURL,
	} {
		if u == "" {
			return meta, &ConfigError{"OIDC_ISSUER", fmt.Sprintf("the IdP's discovery document has no %s", name)}
		}
	}
	for name, u := range map[string]string{
		"authorization_endpoint": meta.AuthURL,
		"token_endpoint":         meta.TokenURL,
		"jwks_uri":               meta.JWKSURL,
		"userinfo_endpoint":      meta.UserinfoURL,
		"end_session_endpoint":   meta.EndSessionURL,
	} {
		if u != "" {
			if err := checkURL(u); err != nil {
				return meta, &ConfigError{"OIDC_ISSUER", fmt.Sprintf("the IdP's %s: %v", name, err)}
			}
		}
	}
	if len(meta.ChallengeMethods) > 0 && !slices.Contains(meta.ChallengeMethods, "S256") {
		a.log.Warn("oidcauth: the IdP does not advertise PKCE S256; sending it anyway", "issuer", meta.Issuer)
	}
	return meta, nil
}

// loginTx is a login in progress, kept in its own encrypted cookie.
type loginTx struct {
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
	Next     string `json:"r"`
	Created  int64  `json:"t"`
}

// txCookieName names the cookie of the login whose state is state: one
// cookie per login, so logins in parallel tabs do not overwrite each other.
func (a *Auth) txCookieName(state string) string {
	h := sha256.Sum256([]byte(state))
	return a.cfg.SessionCookieName + "_tx_" + hex.EncodeToString(h[:8])
}

// randomString returns n random bytes, base64url-encoded.
func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// login starts a login: GET /login[?next=/path].
func (a *Auth) login(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		a.fail(w, r, &Error{Status: http.StatusMethodNotAllowed, Code: "method_not_allowed", Message: "Use GET to log in."})
		return
	}
	tx := loginTx{
		State:    randomString(32),
		Nonce:    randomString(32),
		Verifier: oauth2.GenerateVerifier(),
		Next:     redirect.SafePath(r.URL.Query().Get("next")),
		Created:  a.now().Unix(),
	}
	b, _ := json.Marshal(tx)
	ck := a.txBase
	ck.Name = a.txCookieName(tx.State)
	ck.Value = a.sealer.Seal(b, ck.Name)
	http.SetCookie(w, &ck)
	params := []oauth2.AuthCodeOption{oidc.Nonce(tx.Nonce), oauth2.S256ChallengeOption(tx.Verifier)}
	if slices.Contains(a.cfg.Scopes, "offline_access") {
		// OpenID Connect Core 11: offline access must be consented to, and
		// spec-following IdPs drop the scope without this prompt.
		params = append(params, oauth2.SetAuthURLParam("prompt", "consent"))
	}
	target := a.oauth.AuthCodeURL(tx.State, params...)
	a.event(r.Context(), Event{Kind: EventLoginStarted})
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, target, http.StatusFound)
}

// callback finishes a login: the IdP redirects the browser here.
func (a *Auth) callback(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		a.fail(w, r, &Error{Status: http.StatusMethodNotAllowed, Code: "method_not_allowed", Message: "The callback takes GET."})
		return
	}
	start := a.now()
	sess, next, err := a.finishLogin(w, r)
	if err == nil {
		if serr := a.store.Save(w, r, sess); serr != nil {
			err = storeError(serr)
		}
	}
	if err != nil {
		a.event(r.Context(), Event{Kind: EventLoginFailed, Outcome: errorAs(err).Code, Duration: a.now().Sub(start)})
		a.fail(w, r, err)
		return
	}
	a.event(r.Context(), Event{Kind: EventLoginSucceeded, Duration: a.now().Sub(start)})
	a.log.InfoContext(r.Context(), "oidcauth: login", "sub", sess.Subject, "iss", sess.Issuer)
	http.Redirect(w, r, next, http.StatusFound)
}

func badLogin(code, msg string, cause error) *Error {
	return &Error{Status: http.StatusBadRequest, Code: code, Message: msg, Err: cause}
}

// finishLogin checks the callback against its login transaction, redeems
// the code and validates what the IdP returned. It returns the new session
// and where to send the user.
func (a *Auth) finishLogin(w http.ResponseWriter, r *http.Request) (*Session, string, error) {
	q := r.URL.Query()
	tx, err := a.takeTransaction(w, r, q.Get("state"))
	if err != nil {
		// Without a live login, the IdP's error text is not shown either:
		// anyone could otherwise put words on this app's error page.
		return nil, "", err
	}
	if iss := q.Get("iss"); iss != "" && iss != a.meta.Issuer || iss == "" && a.meta.ResponseIss {
		// RFC 9207: the authorization response names its issuer (mix-up
		// defence).
		return nil, "", badLogin("invalid_issuer", "The login response comes from another identity provider.", fmt.Errorf("authorization response iss %q", iss))
	}
	if idpErr := q.Get("error"); idpErr != "" {
		msg := "The identity provider did not log you in (" + idpErr
		if d := q.Get("error_description"); d != "" {
			msg += ": " + d
		}
		return nil, "", &Error{Status: http.StatusBadRequest, Code: "idp_error", Message: msg + ").", Err: fmt.Errorf("idp error %q", idpErr)}
	}
	code := q.Get("code")
	if code == "" {
		return nil, "", badLogin("missing_code", "The identity provider sent no authorization code.", nil)
	}

	ctx := oidc.ClientContext(r.Context(), a.client)
	tctx, end := startOp(a.obs, ctx, OpToken)
	token, err := a.oauth.Exchange(tctx, code, oauth2.VerifierOption(tx.Verifier))
	end(err)
	if err != nil {
		return nil, "", tokenError(err)
	}
	rawID, _ := token.Extra("id_token").(string)
	if rawID == "" {
		return nil, "", badLogin("missing_id_token", "The identity provider sent no ID token.", nil)
	}
	idt, claims, err := a.verifyIDToken(ctx, rawID, tx.Nonce)
	if err != nil {
		if keysUnavailable(err) {
			return nil, "", &Error{Status: http.StatusBadGateway, Code: "idp_keys_unavailable",
				Message: "The identity provider's signing keys cannot be fetched. Please try again later.", Err: err}
		}
		return nil, "", badLogin("invalid_id_token", "The identity provider's ID token is not valid.", err)
	}
	if idt.AccessTokenHash != "" {
		if err := idt.VerifyAccessToken(token.AccessToken); err != nil {
			return nil, "", badLogin("invalid_id_token", "The ID token does not match the access token.", err)
		}
	}
	if err := a.addUserinfo(ctx, token, idt.Subject, &claims); err != nil {
		return nil, "", err
	}
	now := a.now()
	s := &Session{
		User: User{
			Subject:           idt.Subject,
			Email:             claims.Email,
			Name:              firstNonEmpty(claims.Name, claims.Email, claims.PreferredUsername),
			PreferredUsername: claims.PreferredUsername,
			Issuer:            idt.Issuer,
		},
		SID:       claims.SID,
		IDToken:   rawID,
		CreatedAt: now,
		ExpiresAt: now.Add(a.cfg.SessionMaxAge),

		AccessToken:       token.AccessToken,
		AccessTokenExpiry: token.Expiry,
		RefreshToken:      token.RefreshToken,
	}
	return s, tx.Next, nil
}

// takeTransaction finds, checks and consumes the login transaction that
// state belongs to. The transaction cookie is cleared whatever happens, and
// a state is accepted once only.
func (a *Auth) takeTransaction(w http.ResponseWriter, r *http.Request, state string) (*loginTx, error) {
	if state == "" {
		return nil, badLogin("missing_state", "The login response has no state. Please log in again.", nil)
	}
	name := a.txCookieName(state)
	v, ok := cookies.Get(r, name)
	if !ok {
		return nil, badLogin("invalid_state", "This login is unknown, finished or expired. Please log in again.", nil)
	}
	ck := a.txBase
	ck.Name = name
	cookies.Delete(w, ck)
	b, err := a.sealer.Open(v, name)
	if err != nil {
		return nil, badLogin("invalid_state", "This login is unknown, finished or expired. Please log in again.", err)
	}
	var tx loginTx
	if err := json.Unmarshal(b, &tx); err != nil {
		return nil, badLogin("invalid_state", "This login is unknown, finished or expired. Please log in again.", err)
	}
	created := time.Unix(tx.Created, 0)
	if tx.Nonce == "" || tx.Verifier == "" || subtle.ConstantTimeCompare([]byte(tx.State), []byte(state)) != 1 ||
		a.now().Sub(created) > loginTTL || created.After(a.now().Add(clockSkew)) {
		return nil, badLogin("invalid_state", "This login is unknown, finished or expired. Please log in again.", nil)
	}
	if !a.used.add(name, created.Add(loginTTL), a.now()) {
		return nil, badLogin("invalid_state", "This login was already used. Please log in again.", errors.New("replayed state"))
	}
	return &tx, nil
}

// idClaims are the ID token (and userinfo) claims oidcauth reads beyond
// go-oidc's.
type idClaims struct {
	Email             string `json:"email"`
	Name              string `json:"name"`
	PreferredUsername string `json:"preferred_username"`
	SID               string `json:"sid"`
	AZP               string `json:"azp"`
}

// verifyIDToken checks the signature, iss, aud and exp (go-oidc), then what
// go-oidc leaves out: sub, iat, azp and, unless it is empty (refreshed ID
// tokens), nonce.
func (a *Auth) verifyIDToken(ctx context.Context, raw, nonce string) (*oidc.IDToken, idClaims, error) {
	var c idClaims
	idt, err := a.verifier.Verify(ctx, raw)
	if err != nil {
		return nil, c, err
	}
	if err := idt.Claims(&c); err != nil {
		return nil, c, err
	}
	switch {
	case idt.Subject == "":
		return nil, c, errors.New("ID token has no sub")
	case idt.IssuedAt.IsZero():
		return nil, c, errors.New("ID token has no iat")
	case idt.IssuedAt.After(a.now().Add(clockSkew)):
		return nil, c, fmt.Errorf("ID token issued in the future (iat %s)", idt.IssuedAt.UTC().Format(time.RFC3339))
	case len(idt.Audience) > 1 && c.AZP == "":
		return nil, c, errors.New("ID token has several audiences and no azp")
	case c.AZP != "" && c.AZP != a.cfg.ClientID:
		return nil, c, fmt.Errorf("ID token azp %q is not this client", c.AZP)
	case nonce != "" && (idt.Nonce == "" || subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(nonce)) != 1):
		return nil, c, errors.New("ID token nonce does not match the login's")
	}
	return idt, c, nil
}

// addUserinfo calls the userinfo endpoint as Config.Userinfo says and fills
// in the claims it returns. Its sub must be the ID token's.
func (a *Auth) addUserinfo(ctx context.Context, token *oauth2.Token, sub string, c *idClaims) error {
	switch a.cfg.Userinfo {
	case UserinfoNever:
		return nil
	case UserinfoAuto:
		if (c.Email != "" && c.Name != "") || a.meta.UserinfoURL == "" {
			return nil
		}
	}
	if a.meta.UserinfoURL == "" {
		return &Error{Status: http.StatusBadGateway, Code: "userinfo_unavailable", Message: "The identity provider has no userinfo endpoint.", Err: errors.New("OIDC_USERINFO=true but no userinfo_endpoint")}
	}
	uctx, end := startOp(a.obs, ctx, OpUserinfo)
	info, err := a.provider.UserInfo(uctx, oauth2.StaticTokenSource(token))
	end(err)
	if err != nil {
		if a.cfg.Userinfo == UserinfoAuto {
			a.log.WarnContext(ctx, "oidcauth: userinfo failed; continuing with the ID token's claims", "cause", err.Error())
			return nil
		}
		return &Error{Status: http.StatusBadGateway, Code: "userinfo_failed", Message: "The identity provider did not answer for your profile. Please try again.", Err: err}
	}
	if info.Subject != sub {
		return badLogin("userinfo_mismatch", "The identity provider's userinfo is for another user.", fmt.Errorf("userinfo sub differs from the ID token's"))
	}
	var u idClaims
	if err := info.Claims(&u); err != nil {
		return badLogin("invalid_userinfo", "The identity provider's userinfo is malformed.", err)
	}
	if info.Email != "" {
		c.Email = info.Email
	}
	if u.Name != "" {
		c.Name = u.Name
	}
	if u.PreferredUsername != "" {
		c.PreferredUsername = u.PreferredUsername
	}
	return nil
}

// tokenError classifies a failed code exchange: the IdP refusing (4xx) is
// the user's 400; the IdP unreachable, slow or failing is 502/503. The
// token endpoint's response body is not logged.
func tokenError(err error) *Error {
	var re *oauth2.RetrieveError
	switch {
	case errors.As(err, &re) && re.Response != nil && re.Response.StatusCode < 500:
		return badLogin("token_error", "The identity provider refused the login. Please log in again.",
			fmt.Errorf("token endpoint answered %d %s", re.Response.StatusCode, re.ErrorCode))
	case errors.As(err, &re) && re.Response != nil:
		return &Error{Status: http.StatusBadGateway, Code: "idp_unavailable", Message: "The identity provider failed. Please try again later.",
			Err: fmt.Errorf("token endpoint answered %d", re.Response.StatusCode)}
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		return &Error{Status: http.StatusServiceUnavailable, Code: "idp_timeout", Message: "The identity provider did not answer in time. Please try again.", Err: errors.New("token endpoint timed out")}
	default:
		return &Error{Status: http.StatusServiceUnavailable, Code: "idp_unavailable", Message: "The identity provider cannot be reached. Please try again later.", Err: redactURLError(err)}
	}
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

// redactURLError keeps the cause of a transport error but drops the URL,
// which for token requests is harmless but for others may carry secrets.
func redactURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %v", ue.Op, ue.Err)
	}
	return err
}

// logout ends the session here and, when the IdP supports it, there too.
//
// POST is the documented form. GET works too, for links and simple
// clients, but a browser's cross-site GET (another site linking or
// embedding /logout) gets a confirmation page instead of a logout, and a
// cross-site POST is refused: SameSite=Lax keeps the session cookie off
// cross-site POSTs, and Origin and Sec-Fetch-Site are checked on top.
func (a *Auth) logout(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		a.fail(w, r, &Error{Status: http.StatusMethodNotAllowed, Code: "method_not_allowed", Message: "Use POST (or GET) to log out."})
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	if a.crossSite(r) {
		if r.Method == http.MethodGet {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			_ = logoutConfirmPage.Execute(w, a.logoutPath)
			return
		}
		a.fail(w, r, &Error{Status: http.StatusForbidden, Code: "cross_site_logout", Message: "Logging out from another site is not allowed."})
		return
	}
	sess, err := a.store.Load(r)
	if err != nil {
		a.log.WarnContext(r.Context(), "oidcauth: logout could not read the session", "cause", err.Error())
	}
	if err := a.store.Delete(w, r); err != nil {
		a.fail(w, r, storeError(err))
		return
	}
	if sess != nil {
		a.log.InfoContext(r.Context(), "oidcauth: logout", "sub", sess.Subject)
	}
	http.Redirect(w, r, a.endSessionURL(w, sess), http.StatusFound)
}

// crossSite reports whether a browser sent r from another site.
func (a *Auth) crossSite(r *http.Request) bool {
	if r.Header.Get("Sec-Fetch-Site") == "cross-site" {
		return true
	}
	origin := r.Header.Get("Origin")
	return origin != "" && origin != a.appOrigin
}

var logoutConfirmPage = template.Must(template.New("logout").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Log out?</title>
<meta name="viewport" content="width=device-width,initial-scale=1">
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}button{font:inherit;padding:.4rem 1rem}</style>
</head><body><h1>Log out?</h1><p>Another site asked to log you out.</p>
<form method="post" action="{{.}}"><button type="submit">Log out</button> <a href="/">Stay signed in</a></form>
</body></html>
`))

// logoutStateCookie is the cookie that carries the state of one
// RP-initiated logout until the IdP sends the browser back; one per logout,
// named after its state, so logouts from two tabs do not collide.
func (a *Auth) logoutStateCookie(state string) http.Cookie {
	c := a.txBase
	h := sha256.Sum256([]byte(state))
	c.Name = a.cfg.SessionCookieName + "_logout_" + hex.EncodeToString(h[:8])
	c.Path = a.postLogoutPath
	return c
}

// endSessionURL is where logout sends the browser: the IdP's end-session
// endpoint (RP-initiated logout) when it has one, else the post-logout URI
// or "/". The state it sends is kept in a cookie when the post-logout URI
// is on this app, so the landing can check it.
func (a *Auth) endSessionURL(w http.ResponseWriter, sess *Session) string {
	if a.meta.EndSessionURL == "" {
		return firstNonEmpty(a.cfg.PostLogoutRedirectURI, "/")
	}
	u, err := url.Parse(a.meta.EndSessionURL)
	if err != nil {
		return firstNonEmpty(a.cfg.PostLogoutRedirectURI, "/")
	}
	q := u.Query()
	if sess != nil && sess.IDToken != "" {
		q.Set("id_token_hint", sess.IDToken)
	}
	q.Set("client_id", a.cfg.ClientID)
	state := randomString(24)
	q.Set("state", state)
	if a.cfg.PostLogoutRedirectURI != "" {
		q.Set("post_logout_redirect_uri", a.cfg.PostLogoutRedirectURI)
		if a.postLogoutPath != "" {
			c := a.logoutStateCookie(state)
			c.Value = a.sealer.Seal([]byte(state), c.Name)
			http.SetCookie(w, &c)
		}
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// postLogout checks the state the IdP brings back to the post-logout
// landing. A state that this browser's logout sent (its cookie is here) is
// verified, used up and dropped from the URL; a request whose state is
// unknown is none of ours and goes on to the app untouched.
func (a *Auth) postLogout(w http.ResponseWriter, r *http.Request) bool {
	state := r.URL.Query().Get("state")
	c := a.logoutStateCookie(state)
	v, ok := cookies.Get(r, c.Name)
	if !ok {
		return false
	}
	w.Header().Set("Cache-Control", "no-store")
	cookies.Delete(w, c)
	want, err := a.sealer.Open(v, c.Name)
	if err != nil || subtle.ConstantTimeCompare(want, []byte(state)) != 1 {
		a.fail(w, r, &Error{Status: http.StatusBadRequest, Code: "invalid_logout_state", Message: "This logout response does not match the logout.", Err: err})
		return true
	}
	clean := *r.URL
	q := clean.Query()
	q.Del("state")
	clean.RawQuery = q.Encode()
	http.Redirect(w, r, clean.RequestURI(), http.StatusFound)
	return true
}

// keysUnavailable reports whether a verification failed because the IdP's
// key set could not be fetched (the IdP failing, not the token being bad).
// go-oidc's verifier flattens the key set's error into text, hence the
// second test.
func keysUnavailable(err error) bool {
	return errors.Is(err, errKeysUnavailable) || err != nil && strings.Contains(err.Error(), errKeysUnavailable.Error())
}

func firstNonEmpty(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

// usedStates remembers consumed login transactions until they expire, so a
// replayed callback (same URL, same cookie) is refused on this instance.
type usedStates struct {
	mu   sync.Mutex
	seen map[string]time.Time
}

// maxUsedStates bounds the memory of usedStates; beyond it the oldest
// entries give way (the IdP's single-use codes still stop replays).
const maxUsedStates = 100_000

// add records key until expires and reports whether it was new.
func (u *usedStates) add(key string, expires, now time.Time) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.seen == nil {
		u.seen = make(map[string]time.Time)
	}
	if _, ok := u.seen[key]; ok {
		return false
	}
	if len(u.seen) >= maxUsedStates/2 {
		for k, exp := range u.seen {
			if !exp.After(now) || len(u.seen) >= maxUsedStates {
				delete(u.seen, k)
			}
		}
	}
	u.seen[key] = expires
	return true
}
