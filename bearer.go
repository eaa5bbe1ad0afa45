package oidcauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// Bearer-token authentication for API clients (Config.APIAudience).

const (
	// bearerCacheTTL caps how long a verified bearer token is remembered
	// (never beyond its expiry); introspection results are kept shorter.
	bearerCacheTTL        = 5 * time.Minute
	introspectionCacheTTL = 30 * time.Second
	maxBearerCache        = 10_000
	maxBearerLen          = 16 << 10
)

// errInvalidBearer is the cause of every refused bearer token.
var errInvalidBearer = errors.New("invalid bearer token")

// bearerToken returns the request's bearer token, if it has one.
func bearerToken(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	if len(h) < 7 || !strings.EqualFold(h[:7], "bearer ") {
		return "", false
	}
	return strings.TrimSpace(h[7:]), true
}

// bearerSession authenticates raw, a JWT checked against the IdP's keys
// (iss, aud = APIAudience, exp, nbf, an advertised asymmetric algorithm),
// or an opaque token checked at the IdP's introspection endpoint.
func (a *Auth) bearerSession(ctx context.Context, raw string) (*Session, error) {
	if raw == "" || len(raw) > maxBearerLen {
		return nil, errInvalidBearer
	}
	now := a.now()
	if s := a.bearerCache.get(raw, now); s != nil {
		return s, nil
	}
	var (
		s   *Session
		err error
	)
	if strings.Count(raw, ".") == 2 {
		s, err = a.verifyBearerJWT(ctx, raw)
	} else {
		s, err = a.introspect(ctx, raw)
	}
	if err != nil {
		return nil, err
	}
	ttl := bearerCacheTTL
	if !strings.Contains(raw, ".") {
		ttl = introspectionCacheTTL
	}
	expires := now.Add(ttl)
	if s.ExpiresAt.Before(expires) {
		expires = s.ExpiresAt
	}
	a.bearerCache.put(raw, s, expires, now)
	return s, nil
}

func (a *Auth) verifyBearerJWT(ctx context.Context, raw string) (*Session, error) {
	t, err := a.bearerVerifier.Verify(oidc.ClientContext(ctx, a.client), raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errInvalidBearer, err)
	}
	var c idClaims
	if err := t.Claims(&c); err != nil {
		return nil, fmt.Errorf("%w: %v", errInvalidBearer, err)
	}
	if t.Subject == "" {
		return nil, fmt.Errorf("%w: no sub", errInvalidBearer)
	}
	if t.Nonce != "" {
		// An ID token is not an access token, even with the right audience.
		return nil, fmt.Errorf("%w: an ID token was sent as a bearer token", errInvalidBearer)
	}
	return a.newBearerSession(raw, t.Subject, t.Issuer, c, t.IssuedAt, t.Expiry), nil
}

func (a *Auth) newBearerSession(raw, sub, iss string, c idClaims, iat, exp time.Time) *Session {
	return &Session{
		User: User{
			Subject:           sub,
			Email:             c.Email,
			Name:              firstNonEmpty(c.Name, c.Email, c.PreferredUsername),
			PreferredUsername: c.PreferredUsername,
			Issuer:            iss,
		},
		SID:               c.SID,
		CreatedAt:         iat,
		ExpiresAt:         exp,
		AccessToken:       raw,
		AccessTokenExpiry: exp,
		Bearer:            true,
	}
}

// introspect asks the IdP about an opaque token (RFC 7662).
func (a *Auth) introspect(ctx context.Context, raw string) (*Session, error) {
	if a.meta.IntrospectionURL == "" {
		return nil, fmt.Errorf("%w: opaque token and no introspection endpoint", errInvalidBearer)
	}
	form := url.Values{"token": {raw}, "token_type_hint": {"access_token"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.meta.IntrospectionURL, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.SetBasicAuth(url.QueryEscape(a.cfg.ClientID), url.QueryEscape(a.cfg.ClientSecret))
	ictx, end := startOp(a.obs, ctx, OpIntrospection)
	resp, err := a.client.Do(req.WithContext(ictx))
	if err != nil {
		end(err)
		return nil, &Error{Status: http.StatusServiceUnavailable, Code: "idp_unavailable", Message: "The identity provider cannot be reached.", Err: redactURLError(err)}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("introspection answered %d", resp.StatusCode)
	}
	end(err)
	if err != nil {
		return nil, &Error{Status: http.StatusBadGateway, Code: "idp_unavailable", Message: "The identity provider failed.", Err: err}
	}
	var ir struct {
		Active bool            `json:"active"`
		Sub    string          `json:"sub"`
		Iss    string          `json:"iss"`
		Aud    json.RawMessage `json:"aud"`
		Exp    int64           `json:"exp"`
		Iat    int64           `json:"iat"`
		Nbf    int64           `json:"nbf"`
		idClaims
	}
	if err := json.Unmarshal(body, &ir); err != nil {
		return nil, fmt.Errorf("%w: malformed introspection response", errInvalidBearer)
	}
	now := a.now()
	switch {
	case !ir.Active:
		return nil, fmt.Errorf("%w: inactive", errInvalidBearer)
	case ir.Sub == "":
		return nil, fmt.Errorf("%w: no sub", errInvalidBearer)
	case ir.Iss != "" && ir.Iss != a.meta.Issuer:
		return nil, fmt.Errorf("%w: another issuer", errInvalidBearer)
	case ir.Aud != nil && !audienceContains(ir.Aud, a.cfg.APIAudience):
		return nil, fmt.Errorf("%w: another audience", errInvalidBearer)
	case ir.Exp != 0 && !now.Before(time.Unix(ir.Exp, 0)):
		return nil, fmt.Errorf("%w: expired", errInvalidBearer)
	case ir.Nbf != 0 && now.Add(clockSkew).Before(time.Unix(ir.Nbf, 0)):
		return nil, fmt.Errorf("%w: not yet valid", errInvalidBearer)
	}
	exp := now.Add(introspectionCacheTTL)
	if ir.Exp != 0 {
		exp = time.Unix(ir.Exp, 0)
	}
	return a.newBearerSession(raw, ir.Sub, firstNonEmpty(ir.Iss, a.meta.Issuer), ir.idClaims, time.Unix(ir.Iat, 0), exp), nil
}

// audienceContains reports whether a JSON aud (a string or an array of
// strings) contains want.
func audienceContains(raw json.RawMessage, want string) bool {
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return one == want
	}
	var many []string
	return json.Unmarshal(raw, &many) == nil && slices.Contains(many, want)
}

// unauthorizedBearer answers a request whose bearer token was refused.
func unauthorizedBearer(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_token"})
}

// bearerCache remembers verified bearer tokens until they expire, so an
// API client's every request does not cost a signature check or an
// introspection call. Keys are the tokens' SHA-256.
type bearerCache struct {
	mu sync.Mutex
	m  map[[32]byte]bearerEntry
}

type bearerEntry struct {
	s       *Session
	expires time.Time
}

func (c *bearerCache) get(raw string, now time.Time) *Session {
	k := sha256Key(raw)
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[k]
	if !ok {
		return nil
	}
	if !now.Before(e.expires) {
		delete(c.m, k)
		return nil
	}
	return e.s
}

func (c *bearerCache) put(raw string, s *Session, expires, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[[32]byte]bearerEntry)
	}
	if len(c.m) >= maxBearerCache {
		for k, e := range c.m {
			if !now.Before(e.expires) || len(c.m) >= maxBearerCache {
				delete(c.m, k)
			}
		}
	}
	c.m[sha256Key(raw)] = bearerEntry{s: s, expires: expires}
}
