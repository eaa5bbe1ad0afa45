// Package oidcauthtest is a kit for testing applications that use oidcauth:
// it runs a real OpenID Provider in the test process and logs users in to
// an [oidcauth.Auth] wired to it, so a handler test can run as "alice" in
// one line:
//
//	func TestDashboard(t *testing.T) {
//		auth := oidcauthtest.NewAuth(t)
//		app := auth.Handler(routes(auth))
//		rec := httptest.NewRecorder()
//		app.ServeHTTP(rec, oidcauthtest.NewRequest(t, auth, "alice", "GET", "/dashboard", nil))
//		// rec is the dashboard as Alice sees it
//	}
//
// The provider is the same development provider the oidcauth demo uses,
// reached over loopback HTTP: logins go through the real authorization code
// flow (state, nonce, PKCE, a signed ID token), so a test exercises the
// same checks as production. It knows the users of [DefaultUsers] (alice,
// bob and carol) unless given others with [WithUsers], and can misbehave
// on demand ([Provider.Misbehave]) to test how an app copes with a login
// that fails.
//
// Everything a helper starts is stopped by t.Cleanup. Helpers report
// problems with t.Fatalf, so they must be called from the test's goroutine.
//
// The provider lets anyone log in as anyone: it is for tests only.
package oidcauthtest

import (
	"cmp"
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oidcauth/oidcauth/internal/devidp"
)

// User is someone who can log in at a Provider.
type User struct {
	// Subject is the user's stable identifier, the sub claim. Required.
	Subject string
	// Username is the user's login name (the preferred_username claim):
	// the name Login and the other helpers take. Required and unique.
	Username string
	// Email is the email claim, released with the email scope.
	Email string
	// EmailVerified is the email_verified claim.
	EmailVerified bool
	// Name is the display name, the name claim (profile scope).
	Name string
	// Claims are extra claims for the user's ID tokens, userinfo and
	// access tokens, such as "groups" or "roles". They cannot replace
	// the standard claims above nor iss, aud, exp and the like.
	Claims map[string]any
}

// DefaultUsers returns the users a Provider knows unless WithUsers says
// otherwise:
//
//	Username  Subject     Name           Email
//	alice     user-alice  Alice Liddell  alice@example.com (verified)
//	bob       user-bob    Bob Builder    bob@example.com (verified)
//	carol     user-carol  Carol Danvers  carol@example.com
func DefaultUsers() []User {
	demo := devidp.DemoUsers()
	users := make([]User, len(demo))
	for i, u := range demo {
		users[i] = User{Subject: u.Subject, Username: u.PreferredUsername, Email: u.Email,
			EmailVerified: u.EmailVerified, Name: u.Name, Claims: maps.Clone(u.Extra)}
	}
	return users
}

// ProviderOption configures NewProvider.
type ProviderOption func(*providerConfig)

type providerConfig struct {
	users     []User
	accessTTL time.Duration
	idTTL     time.Duration
}

// WithUsers replaces DefaultUsers with users.
func WithUsers(users ...User) ProviderOption {
	return func(c *providerConfig) { c.users = slices.Clone(users) }
}

// WithTokenLifetimes sets how long the access tokens and ID tokens the
// provider issues stay valid; zero keeps the default of 5 minutes. An
// access token lifetime under 30 seconds makes oidcauth's Auth.Token
// renew the token at once (or, without a refresh token, report
// oidcauth.ErrLoginRequired).
func WithTokenLifetimes(accessToken, idToken time.Duration) ProviderOption {
	return func(c *providerConfig) { c.accessTTL, c.idTTL = accessToken, idToken }
}

// Provider is a running test OpenID Provider on loopback. Make it with
// NewProvider, or let NewAuth make one. Its methods are safe for
// concurrent use.
type Provider struct {
	idp       *devidp.Provider
	users     []User
	accessTTL time.Duration
	clients   atomic.Int64 // clients registered by NewAuth, for unique ids
}

// NewProvider starts a test OpenID Provider, stopped when the test ends.
func NewProvider(t testing.TB, opts ...ProviderOption) *Provider {
	t.Helper()
	c := providerConfig{users: DefaultUsers()}
	for _, opt := range opts {
		opt(&c)
	}
	if len(c.users) == 0 {
		t.Fatalf("oidcauthtest: NewProvider: WithUsers needs at least one user")
	}
	users := make([]devidp.User, len(c.users))
	seen := make(map[string]bool)
	for i, u := range c.users {
		switch {
		case u.Subject == "" || u.Username == "":
			t.Fatalf("oidcauthtest: NewProvider: user %d (%q) needs both a Subject and a Username", i, u.Username)
		case seen[u.Username]:
			t.Fatalf("oidcauthtest: NewProvider: two users are called %q", u.Username)
		}
		seen[u.Username] = true
		users[i] = devidp.User{Subject: u.Subject, PreferredUsername: u.Username, Email: u.Email,
			EmailVerified: u.EmailVerified, Name: u.Name, Extra: maps.Clone(u.Claims)}
	}
	idp, err := devidp.Listen("127.0.0.1:0", devidp.Options{
		Users:          users,
		Logger:         slog.New(slog.DiscardHandler),
		AccessTokenTTL: c.accessTTL,
		IDTokenTTL:     c.idTTL,
	})
	if err != nil {
		t.Fatalf("oidcauthtest: starting the test provider: %v", err)
	}
	t.Cleanup(func() { _ = idp.Close() })
	users2 := make([]User, len(c.users))
	for i, u := range c.users {
		u.Claims = maps.Clone(u.Claims)
		users2[i] = u
	}
	return &Provider{idp: idp, users: users2, accessTTL: cmp.Or(c.accessTTL, 5*time.Minute)}
}

// Issuer returns the provider's issuer URL, such as
// "http://127.0.0.1:41234"; discovery is at Issuer() +
// "/.well-known/openid-configuration".
func (p *Provider) Issuer() string { return p.idp.Issuer() }

// Users returns the users who can log in.
func (p *Provider) Users() []User {
	users := make([]User, len(p.users))
	for i, u := range p.users {
		u.Claims = maps.Clone(u.Claims)
		users[i] = u
	}
	return users
}

// user finds the user called username.
func (p *Provider) user(t testing.TB, username string) User {
	t.Helper()
	for _, u := range p.users {
		if u.Username == username {
			return u
		}
	}
	t.Fatalf("oidcauthtest: no user %q at the test provider; its users are %s", username, p.usernames())
	return User{}
}

func (p *Provider) usernames() string {
	names := make([]string, len(p.users))
	for i, u := range p.users {
		names[i] = u.Username
	}
	return strings.Join(names, ", ")
}

// Misbehavior makes a Provider fail logins in the ways real identity
// providers do, so that tests can check how an app copes. The zero value
// is a well-behaved provider. Each field applies to logins and token
// requests from the moment Provider.Misbehave is called.
type Misbehavior struct {
	// LoginError sends the browser back from the provider's login page
	// with error=LoginError instead of an authorization code, as a
	// provider does when the user declines or may not use the app (for
	// example "access_denied"). oidcauth answers the callback with 400.
	LoginError string
	// TokenError makes the token endpoint refuse authorization codes and
	// refresh tokens with 400 {"error": TokenError}, for example
	// "invalid_grant". oidcauth answers the callback with 400, and
	// Auth.Token with oidcauth.ErrSessionEnded.
	TokenError string
	// TokenStatus makes the token endpoint fail with this HTTP status and
	// an HTML body, as a provider that is down behind its proxy does (for
	// example 503). oidcauth answers the callback with 502.
	TokenStatus int
	// TokenDelay makes the token endpoint answer this late. With an
	// oidcauth.WithHTTPClient whose timeout is shorter, oidcauth answers
	// the callback with 503.
	TokenDelay time.Duration
	// ExpiredIDToken issues ID tokens that expired an hour ago. oidcauth
	// refuses them: the callback answers 400.
	ExpiredIDToken bool
	// InvalidIDToken issues ID tokens whose signature does not verify.
	// oidcauth refuses them: the callback answers 400.
	InvalidIDToken bool
}

// Misbehave replaces the provider's misbehavior with m; the zero
// Misbehavior makes it behave again.
func (p *Provider) Misbehave(m Misbehavior) {
	p.idp.SetMisbehavior(devidp.Misbehavior{
		AuthorizeError: m.LoginError,
		TokenError:     m.TokenError,
		TokenStatus:    m.TokenStatus,
		TokenDelay:     m.TokenDelay,
		Expired:        m.ExpiredIDToken,
		BadSignature:   m.InvalidIDToken,
	})
}

// AccessToken returns an access token for the user called username: a JWT
// signed by the provider (RS256, with a key its JWKS publishes) whose aud is
// audience, with the user's sub, email, name, preferred_username and extra
// claims, valid for the provider's access token lifetime. An oidcauth.Auth
// whose Config.APIAudience is audience accepts it as an Authorization:
// Bearer token; BearerToken is the shortcut for that.
func (p *Provider) AccessToken(t testing.TB, username, audience string) string {
	t.Helper()
	u := p.user(t, username)
	now := time.Now()
	claims := maps.Clone(u.Claims)
	if claims == nil {
		claims = make(map[string]any)
	}
	for k, v := range map[string]string{"email": u.Email, "name": u.Name, "preferred_username": u.Username} {
		if v != "" {
			claims[k] = v
		}
	}
	maps.Copy(claims, map[string]any{
		"iss": p.Issuer(), "sub": u.Subject, "aud": audience,
		"iat": now.Unix(), "exp": now.Add(p.accessTTL).Unix(), "jti": rand.Text(),
	})
	return p.idp.SignJWT(nil, claims)
}

// SignToken returns a JWT with exactly claims, signed like the provider's
// own tokens (RS256, with a published key). Use it to craft unusual tokens,
// such as an expired access token or one for another audience; the
// claims decide everything, so set iss, sub, aud and exp as needed.
func (p *Provider) SignToken(claims map[string]any) string {
	return p.idp.SignJWT(nil, claims)
}

// logoutToken returns a back-channel logout token from the provider to
// clientID ending every session of the user called username.
func (p *Provider) logoutToken(t testing.TB, clientID, username string) string {
	t.Helper()
	u := p.user(t, username)
	now := time.Now()
	return p.idp.SignJWT(map[string]any{"typ": "logout+jwt"}, map[string]any{
		"iss": p.Issuer(), "aud": clientID, "sub": u.Subject, "jti": rand.Text(),
		"iat": now.Unix(), "exp": now.Add(2 * time.Minute).Unix(),
		"events": map[string]any{"http://schemas.openid.net/event/backchannel-logout": map[string]any{}},
	})
}

// login logs username in at the provider, given the authorization URL the
// app redirected to, and returns the URL the provider sends the browser
// back to.
func (p *Provider) login(authorizeURL, username string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cb, err := p.idp.Login(ctx, nil, authorizeURL, username)
	if err != nil {
		return "", fmt.Errorf("logging %q in at the test provider: %w", username, err)
	}
	return cb, nil
}
