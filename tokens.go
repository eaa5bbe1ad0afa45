package oidcauth

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// Errors from Auth.Token.
var (
	// ErrNoSession means the request has no signed-in user.
	ErrNoSession = errors.New("oidcauth: no session")
	// ErrLoginRequired means the access token expired and there is no
	// refresh token to renew it: the user must log in again.
	ErrLoginRequired = errors.New("oidcauth: the access token expired and cannot be refreshed; log in again")
	// ErrSessionEnded means the IdP refused to refresh (the refresh token
	// was revoked or expired): the session has been ended.
	ErrSessionEnded = errors.New("oidcauth: the identity provider ended the session; log in again")
)

const (
	// refreshMargin: an access token expiring sooner than this is renewed.
	refreshMargin = 30 * time.Second
	// refreshMemory: how long a finished refresh is remembered, so that
	// requests still carrying the old session (a browser that has not yet
	// stored the new cookie) get its result instead of spending the old,
	// already rotated refresh token.
	refreshMemory = time.Minute
	// refreshLockTTL bounds the cross-instance refresh lock.
	refreshLockTTL = 10 * time.Second
)

// SessionUpdater is implemented by session stores that can rewrite a
// session in place, keeping its id (server-side stores), so that requests
// in flight with the same cookie keep working. Auth uses it to store
// refreshed tokens; stores without it get Save.
type SessionUpdater interface {
	Update(w http.ResponseWriter, r *http.Request, s *Session) error
}

// RefreshLocker is implemented by session stores shared between instances
// (Redis) so that two instances never both spend the same refresh token.
type RefreshLocker interface {
	// LockRefresh tries to take the lock called key for at most ttl. ok is
	// false when another holder has it.
	LockRefresh(ctx context.Context, key string, ttl time.Duration) (unlock func(), ok bool, err error)
}

// Token returns a valid access token for the request's user, for calling
// APIs on their behalf. It refreshes the token shortly before it expires,
// once per session however many requests ask at the same time, and stores
// the result (with a rotated refresh token) at once: call Token before
// writing the response, since a cookie session's new cookie goes in its
// headers.
//
// Errors: ErrNoSession (anonymous), ErrLoginRequired (expired, no refresh
// token), ErrSessionEnded (the IdP refused the refresh; the session is
// deleted), an *Error with status 503 (the store is down), or another error
// for a network failure (the session is kept; try again later).
func (a *Auth) Token(w http.ResponseWriter, r *http.Request) (*oauth2.Token, error) {
	st, r := a.state(r)
	sess, err := st.session()
	switch {
	case err != nil:
		return nil, storeError(err)
	case sess == nil:
		return nil, ErrNoSession
	case sess.AccessToken != "" && (sess.Bearer || a.fresh(sess)):
		return sessionToken(sess), nil
	case sess.RefreshToken == "":
		return nil, ErrLoginRequired
	}
	renewed, err := a.refreshes.do(sess.RefreshToken, a.now(), a.fresh, func() (*Session, error) {
		s, err := a.refresh(r.Context(), r, sess)
		outcome := "success"
		if errors.Is(err, ErrSessionEnded) {
			outcome = "ended"
		} else if err != nil {
			outcome = "error"
		}
		a.event(r.Context(), Event{Kind: EventRefresh, Outcome: outcome})
		return s, err
	})
	if errors.Is(err, ErrSessionEnded) {
		a.log.InfoContext(r.Context(), "oidcauth: refresh refused; ending the session", "sub", sess.Subject)
		if derr := a.store.Delete(w, r); derr != nil {
			return nil, storeError(derr)
		}
		return nil, err
	}
	if err != nil {
		return nil, err
	}
	if renewed.RefreshToken != sess.RefreshToken || renewed.AccessToken != sess.AccessToken {
		if err := a.updateSession(w, r, renewed); err != nil {
			if errors.Is(err, ErrSessionEnded) {
				return nil, err
			}
			return nil, storeError(err)
		}
	}
	return sessionToken(renewed), nil
}

func (a *Auth) fresh(s *Session) bool {
	return s.AccessTokenExpiry.IsZero() || a.now().Add(refreshMargin).Before(s.AccessTokenExpiry)
}

func sessionToken(s *Session) *oauth2.Token {
	return &oauth2.Token{AccessToken: s.AccessToken, TokenType: "Bearer", Expiry: s.AccessTokenExpiry}
}

func (a *Auth) updateSession(w http.ResponseWriter, r *http.Request, s *Session) error {
	if u, ok := a.store.(SessionUpdater); ok {
		return u.Update(w, r, s)
	}
	return a.store.Save(w, r, s)
}

// refresh redeems sess's refresh token and returns the session with the new
// tokens. With a store shared between instances it first takes the
// session's refresh lock; if another instance holds it, it waits for that
// instance to store the result and returns the stored session.
func (a *Auth) refresh(ctx context.Context, r *http.Request, sess *Session) (*Session, error) {
	if l, ok := a.store.(RefreshLocker); ok {
		key := fmt.Sprintf("%x", sha256Key(sess.RefreshToken))
		for deadline := a.now().Add(refreshLockTTL); ; {
			unlock, ok, err := l.LockRefresh(ctx, key, refreshLockTTL)
			if err != nil {
				return nil, storeError(err)
			}
			if ok {
				defer unlock()
				break
			}
			// Another instance is refreshing: wait for its result.
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
			stored, err := a.store.Load(r)
			if err != nil {
				return nil, storeError(err)
			}
			if stored == nil {
				return nil, ErrSessionEnded
			}
			if stored.RefreshToken != sess.RefreshToken {
				return stored, nil
			}
			if a.now().After(deadline) {
				return nil, errors.New("oidcauth: timed out waiting for another instance's token refresh")
			}
		}
	}
	ctx = oidc.ClientContext(ctx, a.client)
	rctx, end := startOp(a.obs, ctx, OpRefresh)
	tok, err := a.oauth.TokenSource(rctx, &oauth2.Token{RefreshToken: sess.RefreshToken, Expiry: time.Unix(1, 0)}).Token()
	end(err)
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.Response != nil && re.Response.StatusCode < 500 {
			return nil, fmt.Errorf("%w (%d %s)", ErrSessionEnded, re.Response.StatusCode, re.ErrorCode)
		}
		return nil, fmt.Errorf("oidcauth: token refresh failed: %w", tokenError(err))
	}
	renewed := *sess
	renewed.AccessToken = tok.AccessToken
	renewed.AccessTokenExpiry = tok.Expiry
	if tok.RefreshToken != "" {
		renewed.RefreshToken = tok.RefreshToken
	}
	if raw, _ := tok.Extra("id_token").(string); raw != "" {
		idt, claims, err := a.verifyIDToken(ctx, raw, "")
		if err != nil {
			return nil, fmt.Errorf("%w: refreshed ID token invalid: %v", ErrSessionEnded, err)
		}
		if idt.Subject != sess.Subject || idt.Issuer != sess.Issuer {
			return nil, fmt.Errorf("%w: refreshed ID token is for another subject or issuer", ErrSessionEnded)
		}
		renewed.IDToken = raw
		if claims.Email != "" {
			renewed.Email = claims.Email
		}
		if claims.Name != "" {
			renewed.Name = claims.Name
		}
	}
	a.log.DebugContext(ctx, "oidcauth: tokens refreshed", "sub", sess.Subject)
	return &renewed, nil
}

// refreshGroup makes concurrent refreshes of one refresh token share one
// call, and remembers successful results for refreshMemory.
type refreshGroup struct {
	mu    sync.Mutex
	calls map[string]*refreshCall
}

type refreshCall struct {
	done    chan struct{}
	sess    *Session
	err     error
	expires time.Time
}

// do runs fn for refreshToken, or joins the call already running for it,
// or returns the result of a call that finished less than refreshMemory
// ago if that result is still usable (a session whose tokens are still
// fresh, or an ended session). IdPs that do not rotate refresh tokens send
// the same one next time: its old result is stale by then and fn runs.
func (g *refreshGroup) do(refreshToken string, now time.Time, fresh func(*Session) bool, fn func() (*Session, error)) (*Session, error) {
	k := sha256Key(refreshToken)
	key := string(k[:])
	g.mu.Lock()
	if g.calls == nil {
		g.calls = make(map[string]*refreshCall)
	}
	if c, ok := g.calls[key]; ok {
		if c.expires.IsZero() { // in flight
			g.mu.Unlock()
			<-c.done
			return c.sess, c.err
		}
		if now.Before(c.expires) && (c.err != nil || fresh(c.sess)) {
			g.mu.Unlock()
			return c.sess, c.err
		}
	}
	for k, c := range g.calls {
		if !c.expires.IsZero() && !now.Before(c.expires) {
			delete(g.calls, k)
		}
	}
	c := &refreshCall{done: make(chan struct{})}
	g.calls[key] = c
	g.mu.Unlock()

	c.sess, c.err = fn()
	g.mu.Lock()
	if c.err != nil && !errors.Is(c.err, ErrSessionEnded) {
		delete(g.calls, key) // a transient failure: the next request retries
	} else {
		c.expires = now.Add(refreshMemory)
	}
	g.mu.Unlock()
	close(c.done)
	return c.sess, c.err
}

func sha256Key(s string) [32]byte { return sha256.Sum256([]byte(s)) }
