package oidcauth

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/oidcauth/oidcauth/internal/cookies"
)

// reqState is a request's context with oidcauth's per-request state: the
// session, loaded at most once and only when something asks for the user.
// It is its own context.Context so that adding it costs one allocation.
type reqState struct {
	context.Context
	auth *Auth
	req  *http.Request

	once      sync.Once
	sess      *Session
	err       error // the store failed
	bearerErr error // the request's bearer token was refused
}

type stateKey struct{}

// Value returns the state itself for oidcauth's key and defers to the
// parent context otherwise.
func (s *reqState) Value(key any) any {
	if key == (stateKey{}) {
		return s
	}
	return s.Context.Value(key)
}

// session loads the request's session once: from its bearer token when
// bearer authentication is on and it has one, else from the store. A
// session ended by a back-channel logout is nil.
func (s *reqState) session() (*Session, error) {
	s.once.Do(s.load)
	return s.sess, s.err
}

func (s *reqState) load() {
	a := s.auth
	store := a.storeKind
	raw, bearer := "", false
	if a.bearerVerifier != nil {
		raw, bearer = bearerToken(s.req)
	}
	if bearer {
		store = "bearer"
		s.sess, s.bearerErr = a.bearerSession(s.req.Context(), raw)
		var e *Error
		if errors.As(s.bearerErr, &e) { // the IdP could not be asked
			s.err, s.bearerErr = e, nil
		}
	} else {
		s.sess, s.err = a.store.Load(s.req)
		if s.sess != nil && a.revoked.has(s.sess) {
			s.sess = nil
		}
	}
	if a.obs != nil {
		outcome := "anonymous"
		switch {
		case s.err != nil:
			outcome = "error"
		case s.bearerErr != nil:
			outcome = "invalid"
		case s.sess != nil:
			outcome = "user"
		}
		a.obs.Event(s.req.Context(), Event{Kind: EventSessionLoaded, Store: store, Outcome: outcome})
	}
}

// state returns r's oidcauth state, adding it (and returning the new
// request) when r has not been through this Auth's Handler.
func (a *Auth) state(r *http.Request) (*reqState, *http.Request) {
	if s, ok := r.Context().Value(stateKey{}).(*reqState); ok && s.auth == a {
		return s, r
	}
	s := &reqState{Context: r.Context(), auth: a, req: r}
	return s, r.WithContext(s)
}

// Handler serves the login, callback and logout routes and passes every
// other request to next, with the user (if any) available through UserFrom.
// The session is read lazily: a request that never asks for the user does
// not pay for it.
func (a *Auth) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case a.loginPath:
			a.login(w, r)
		case a.callbackPath:
			a.callback(w, r)
		case a.logoutPath:
			a.logout(w, r)
		case a.backchannelPath:
			a.backchannelLogout(w, r)
		case a.postLogoutPath:
			if strings.Contains(r.URL.RawQuery, "state=") && a.postLogout(w, r) {
				return
			}
			_, r = a.state(r)
			next.ServeHTTP(w, r)
		default:
			if a.mayHaveSession(r) {
				_, r = a.state(r)
			}
			next.ServeHTTP(w, r)
		}
	})
}

// mayHaveSession reports whether r carries anything that could make it
// authenticated. A request without it is anonymous for sure and goes on
// untouched: UserFrom reports no user for it, at no cost.
func (a *Auth) mayHaveSession(r *http.Request) bool {
	if a.bearerVerifier != nil && r.Header.Get("Authorization") != "" {
		return true
	}
	if n, ok := a.store.(interface{ cookieName() string }); ok {
		_, has := cookies.Get(r, n.cookieName())
		return has
	}
	return true // a store we do not know: always look
}

// RequireUser lets only signed-in users through to next. A browser
// navigation (GET or HEAD accepting text/html) without a session is
// redirected to the login route, which brings it back afterwards; any
// other request gets 401 {"error":"unauthenticated"}. When the session
// store cannot answer, the request fails with 503: never access.
func (a *Auth) RequireUser(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, r := a.state(r)
		sess, err := s.session()
		switch {
		case err != nil:
			a.fail(w, r, storeError(err))
		case s.bearerErr != nil:
			a.log.InfoContext(r.Context(), "oidcauth: bearer token refused", "cause", s.bearerErr.Error())
			unauthorizedBearer(w)
		case sess == nil:
			a.Unauthenticated(w, r)
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// Unauthenticated answers a request that needs a user and has none: a
// browser navigation is redirected to log in and come back, anything else
// gets 401 {"error":"unauthenticated"}.
func (a *Auth) Unauthenticated(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if (r.Method == http.MethodGet || r.Method == http.MethodHead) && wantsHTML(r) {
		http.Redirect(w, r, a.loginPath+"?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusFound)
		return
	}
	if a.bearerVerifier != nil {
		w.Header().Set("WWW-Authenticate", "Bearer")
	}
	writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "unauthenticated"})
}

// User returns the request's signed-in user, or nil for an anonymous
// request. An error means the session store could not answer.
func (a *Auth) User(r *http.Request) (*User, error) {
	sess, err := a.Session(r)
	if sess == nil || err != nil {
		return nil, err
	}
	return &sess.User, nil
}

// UserFrom returns the signed-in user of the request whose context ctx is,
// as set up by Auth.Handler or Auth.RequireUser. It reports false for
// anonymous requests and, failing closed, when the session store could not
// answer. The returned User is shared: do not modify it.
func UserFrom(ctx context.Context) (*User, bool) {
	s, ok := ctx.Value(stateKey{}).(*reqState)
	if !ok {
		return nil, false
	}
	sess, err := s.session()
	if sess == nil || err != nil {
		return nil, false
	}
	return &sess.User, true
}

// storeError is the 503 for a session store that cannot answer.
func storeError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Status: http.StatusServiceUnavailable, Code: storeUnavailable,
		Message: "Sessions are unavailable right now. Please try again shortly.", Err: err}
}

// Session returns the request's session (nil when anonymous), for code
// that needs more than the User, such as the raw ID token. An error means
// the session store could not answer. The Session is shared: do not modify
// it.
func (a *Auth) Session(r *http.Request) (*Session, error) {
	if s, ok := r.Context().Value(stateKey{}).(*reqState); ok && s.auth == a {
		return s.session()
	}
	if !a.mayHaveSession(r) {
		return nil, nil // nothing to load: anonymous, at no cost
	}
	s, _ := a.state(r)
	return s.session()
}
