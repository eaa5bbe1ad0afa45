package oidcauth

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"
)

// MinSecretLength is the shortest SESSION_SECRET (in bytes) that Validate
// accepts. Keys for encryption and signing are derived from it with HKDF, so
// it should come from a random source, e.g. `openssl rand -base64 48`.
const MinSecretLength = 32

// UserinfoMode says when the callback calls the IdP's userinfo endpoint.
type UserinfoMode string

// The values of OIDC_USERINFO.
const (
	// UserinfoAuto calls userinfo only when the ID token lacks email or name.
	UserinfoAuto UserinfoMode = "auto"
	// UserinfoAlways calls userinfo on every login.
	UserinfoAlways UserinfoMode = "true"
	// UserinfoNever never calls userinfo.
	UserinfoNever UserinfoMode = "false"
)

// Config is everything the middleware needs to know about the IdP, the
// client and the session. Fill it in code, or read it from the environment
// with ConfigFromEnv. New validates it.
type Config struct {
	// Issuer is the IdP's issuer URL (OIDC_ISSUER). Discovery is done at
	// Issuer + "/.well-known/openid-configuration" and the discovered issuer
	// must equal it exactly.
	Issuer string
	// ClientID and ClientSecret identify this app, a confidential client, at
	// the IdP (OIDC_CLIENT_ID, OIDC_CLIENT_SECRET).
	ClientID     string
	ClientSecret string
	// RedirectURI is the absolute callback URL registered at the IdP
	// (OIDC_REDIRECT_URI). Its path is served by Auth.Handler.
	RedirectURI string
	// Scopes requested at login (OIDC_SCOPES). Empty means
	// "openid email profile"; it must contain "openid".
	Scopes []string
	// PostLogoutRedirectURI is where the IdP sends the browser after logout
	// (OIDC_POST_LOGOUT_REDIRECT_URI). Optional.
	PostLogoutRedirectURI string
	// Userinfo says when to call the userinfo endpoint (OIDC_USERINFO).
	// Empty means UserinfoAuto.
	Userinfo UserinfoMode

	// SessionSecret is the master secret for cookies (SESSION_SECRET), at
	// least MinSecretLength bytes.
	SessionSecret string
	// SessionSecretPrevious, when set, is still accepted for reading
	// cookies (SESSION_SECRET_PREVIOUS), so the secret can rotate without
	// logging everybody out.
	SessionSecretPrevious string
	// SessionMaxAge is the absolute lifetime of a session
	// (SESSION_MAX_AGE). Zero means 24h.
	SessionMaxAge time.Duration
	// SessionCookieName is the session cookie's name (SESSION_COOKIE_NAME).
	// Empty means "oidcauth".
	SessionCookieName string
	// SessionIdleTimeout, when set, ends a session that has not been used
	// for that long (SESSION_IDLE_TIMEOUT; server-side stores only).
	SessionIdleTimeout time.Duration

	// APIAudience, when set, turns on bearer-token authentication for API
	// clients (OIDC_API_AUDIENCE): an Authorization: Bearer JWT must be
	// signed by the IdP, unexpired, and have this audience.
	APIAudience string

	// RedisURL, when set, keeps sessions in Redis instead of cookies
	// (REDIS_URL); see the README for the accepted forms.
	RedisURL string
}

// Default values used when a Config field is left empty.
const (
	DefaultSessionMaxAge     = 24 * time.Hour
	DefaultSessionCookieName = "oidcauth"
)

// DefaultScopes are requested when Config.Scopes is empty.
var DefaultScopes = []string{"openid", "email", "profile"}

// ConfigError reports one invalid configuration value. ConfigFromEnv and
// Config.Validate return several of them joined with errors.Join.
type ConfigError struct {
	// Variable is the environment variable (or, for a Config built in
	// code, the environment variable of the field) that is wrong.
	Variable string
	// Problem says what is wrong; it never contains a secret's value.
	Problem string
}

func (e *ConfigError) Error() string { return e.Variable + ": " + e.Problem }

// ConfigFromEnv reads a Config from the OIDC_* and SESSION_* environment
// variables and validates it. Every problem is reported at once, each naming
// its variable.
func ConfigFromEnv() (Config, error) {
	return configFromLookup(os.LookupEnv)
}

func configFromLookup(lookup func(string) (string, bool)) (Config, error) {
	get := func(name string) string {
		v, _ := lookup(name)
		return strings.TrimSpace(v)
	}
	var errs []error
	cfg := Config{
		Issuer:                get("OIDC_ISSUER"),
		ClientID:              get("OIDC_CLIENT_ID"),
		ClientSecret:          get("OIDC_CLIENT_SECRET"),
		RedirectURI:           get("OIDC_REDIRECT_URI"),
		Scopes:                strings.Fields(get("OIDC_SCOPES")),
		PostLogoutRedirectURI: get("OIDC_POST_LOGOUT_REDIRECT_URI"),
		Userinfo:              UserinfoMode(strings.ToLower(get("OIDC_USERINFO"))),
		SessionCookieName:     get("SESSION_COOKIE_NAME"),
		RedisURL:              get("REDIS_URL"),
		APIAudience:           get("OIDC_API_AUDIENCE"),
	}
	// Secrets are taken verbatim: surrounding spaces may be part of them.
	cfg.SessionSecret, _ = lookup("SESSION_SECRET")
	cfg.SessionSecretPrevious, _ = lookup("SESSION_SECRET_PREVIOUS")
	if v := get("SESSION_MAX_AGE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			errs = append(errs, &ConfigError{"SESSION_MAX_AGE", fmt.Sprintf("%q is not a Go duration such as 24h or 90m", v)})
		} else if d <= 0 {
			errs = append(errs, &ConfigError{"SESSION_MAX_AGE", "must be positive"})
		} else {
			cfg.SessionMaxAge = d
		}
	}
	if v := get("SESSION_IDLE_TIMEOUT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			errs = append(errs, &ConfigError{"SESSION_IDLE_TIMEOUT", fmt.Sprintf("%q is not a positive Go duration such as 30m", v)})
		} else {
			cfg.SessionIdleTimeout = d
		}
	}
	if err := cfg.Validate(); err != nil {
		errs = append(errs, err)
	}
	return cfg, errors.Join(errs...)
}

// Validate checks c and returns every problem at once, joined with
// errors.Join; each is a *ConfigError naming the environment variable that
// feeds the field.
func (c *Config) Validate() error {
	var errs []error
	bad := func(variable, format string, args ...any) {
		errs = append(errs, &ConfigError{variable, fmt.Sprintf(format, args...)})
	}
	if c.Issuer == "" {
		bad("OIDC_ISSUER", "is required")
	} else if err := checkURL(c.Issuer); err != nil {
		bad("OIDC_ISSUER", "%v", err)
	}
	if c.ClientID == "" {
		bad("OIDC_CLIENT_ID", "is required")
	}
	if c.ClientSecret == "" {
		bad("OIDC_CLIENT_SECRET", "is required (the client must be confidential)")
	}
	if c.RedirectURI == "" {
		bad("OIDC_REDIRECT_URI", "is required")
	} else if err := checkURL(c.RedirectURI); err != nil {
		bad("OIDC_REDIRECT_URI", "%v", err)
	} else if u, _ := url.Parse(c.RedirectURI); u.Path == "" || u.Path == "/" {
		bad("OIDC_REDIRECT_URI", "needs a path for the callback route, such as /auth/callback")
	}
	if len(c.Scopes) > 0 && !slices.Contains(c.Scopes, "openid") {
		bad("OIDC_SCOPES", "must contain openid")
	}
	if c.PostLogoutRedirectURI != "" {
		if err := checkURL(c.PostLogoutRedirectURI); err != nil {
			bad("OIDC_POST_LOGOUT_REDIRECT_URI", "%v", err)
		}
	}
	switch c.Userinfo {
	case "", UserinfoAuto, UserinfoAlways, UserinfoNever:
	default:
		bad("OIDC_USERINFO", "must be auto, true or false")
	}
	switch {
	case c.SessionSecret == "":
		bad("SESSION_SECRET", "is required (at least %d random bytes)", MinSecretLength)
	case len(c.SessionSecret) < MinSecretLength:
		bad("SESSION_SECRET", "is too short: %d bytes, at least %d are needed", len(c.SessionSecret), MinSecretLength)
	case weakSecret(c.SessionSecret):
		bad("SESSION_SECRET", "is too weak: it repeats a few characters; use a random value")
	}
	if c.SessionSecretPrevious != "" && len(c.SessionSecretPrevious) < MinSecretLength {
		bad("SESSION_SECRET_PREVIOUS", "is too short: %d bytes, at least %d are needed", len(c.SessionSecretPrevious), MinSecretLength)
	}
	if c.SessionMaxAge < 0 {
		bad("SESSION_MAX_AGE", "must be positive")
	}
	if c.SessionIdleTimeout < 0 {
		bad("SESSION_IDLE_TIMEOUT", "must be positive")
	}
	if c.RedisURL != "" {
		if err := checkRedisURL(c.RedisURL); err != nil {
			bad("REDIS_URL", "%v", err)
		}
	}
	if c.SessionCookieName != "" && !validCookieName(c.SessionCookieName) {
		bad("SESSION_COOKIE_NAME", "%q is not a valid cookie name (letters, digits and !#$%%&'*+-.^_`|~ only)", c.SessionCookieName)
	}
	return errors.Join(errs...)
}

// withDefaults returns a copy of c with empty fields set to their defaults.
func (c Config) withDefaults() Config {
	if len(c.Scopes) == 0 {
		c.Scopes = slices.Clone(DefaultScopes)
	}
	if c.Userinfo == "" {
		c.Userinfo = UserinfoAuto
	}
	if c.SessionMaxAge == 0 {
		c.SessionMaxAge = DefaultSessionMaxAge
	}
	if c.SessionCookieName == "" {
		c.SessionCookieName = DefaultSessionCookieName
	}
	return c
}

// checkURL accepts absolute https URLs, and http ones for loopback hosts
// only (local development).
func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return fmt.Errorf("%q is not an absolute http(s) URL", raw)
	}
	if u.Fragment != "" || u.User != nil {
		return fmt.Errorf("%q must not contain a fragment or user info", raw)
	}
	if u.Scheme == "http" && !isLoopback(u.Hostname()) {
		return fmt.Errorf("%q uses http: only https is allowed, except for localhost and loopback addresses", raw)
	}
	return nil
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// weakSecret flags secrets made of very few distinct bytes, such as 32
// times "a": long enough, yet guessable.
func weakSecret(s string) bool {
	var seen [256]bool
	n := 0
	for i := 0; i < len(s); i++ {
		if !seen[s[i]] {
			seen[s[i]] = true
			n++
		}
	}
	return n < 8
}

func validCookieName(name string) bool {
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("()<>@,;:\\\"/[]?={}", c) >= 0 {
			return false
		}
	}
	return name != ""
}
