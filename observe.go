package oidcauth

import (
	"context"
	"time"
)

// Observer receives what oidcauth does, for metrics, traces and audit. The
// otelauth module implements it with OpenTelemetry; set it with
// WithObserver (and AuthorizerConfig.Observer). Without one, nothing is
// recorded and nothing is spent. Methods are called on the request's
// goroutine and must be fast and safe for concurrent use. No token, code,
// cookie or secret is ever passed to them.
type Observer interface {
	// Event records something that happened.
	Event(ctx context.Context, e Event)
	// Start begins a call to the IdP or the authorizer; the returned
	// function ends it with the call's error (nil on success). The
	// returned context carries the call (e.g. its span) to the HTTP or
	// gRPC client.
	Start(ctx context.Context, op Op) (context.Context, func(error))
}

// EventKind says what an Event is about.
type EventKind uint8

// The kinds of Event.
const (
	// EventLoginStarted: /login sent a browser to the IdP.
	EventLoginStarted EventKind = iota + 1
	// EventLoginSucceeded: a callback made a session. Duration is the
	// callback's.
	EventLoginSucceeded
	// EventLoginFailed: a callback failed; Outcome is the Error's code
	// (invalid_state, invalid_id_token, idp_error, ...).
	EventLoginFailed
	// EventSessionLoaded: a request's session was looked up. Store is
	// cookie, redis, gorilla, bearer or custom; Outcome is user,
	// anonymous, invalid (a refused bearer token) or error.
	EventSessionLoaded
	// EventRefresh: tokens were refreshed. Outcome is success, ended (the
	// IdP refused: the session ended) or error (try again later).
	EventRefresh
	// EventBackchannelLogout: a logout token arrived. Outcome is success,
	// invalid or error.
	EventBackchannelLogout
	// EventDecision: the authorizer decided. Outcome is allowed, denied or
	// error; Cached tells whether the decision came from the cache;
	// PolicyPath names the policy.
	EventDecision
)

var eventKindNames = [...]string{"", "login_started", "login_succeeded", "login_failed", "session_loaded",
	"refresh", "backchannel_logout", "decision"}

// String returns the kind's name, such as "login_failed".
func (k EventKind) String() string {
	if int(k) < len(eventKindNames) && k != 0 {
		return eventKindNames[k]
	}
	return "unknown"
}

// Event is one thing oidcauth did. Fields not meaningful for its Kind are
// zero.
type Event struct {
	Kind       EventKind
	Outcome    string
	Store      string
	Cached     bool
	PolicyPath string
	Duration   time.Duration
}

// Op names a call that Observer.Start times and traces.
type Op string

// The calls oidcauth makes.
const (
	OpDiscovery     Op = "discovery"     // the IdP's metadata
	OpToken         Op = "token"         // redeeming a login's code
	OpUserinfo      Op = "userinfo"      // the userinfo endpoint
	OpRefresh       Op = "refresh"       // a refresh-token grant
	OpIntrospection Op = "introspection" // an opaque bearer token
	OpAuthorize     Op = "authorize"     // a Topaz decision (cache misses only)
)

// WithObserver sends oidcauth's events and timed calls to o.
func WithObserver(o Observer) Option { return func(opt *options) { opt.observer = o } }

// event records e if there is an observer.
func (a *Auth) event(ctx context.Context, e Event) {
	if a.obs != nil {
		a.obs.Event(ctx, e)
	}
}

// start begins a timed call if there is an observer.
func startOp(o Observer, ctx context.Context, op Op) (context.Context, func(error)) {
	if o == nil {
		return ctx, func(error) {}
	}
	return o.Start(ctx, op)
}

// storeName is how Events name a SessionStore.
func storeName(s SessionStore) string {
	switch s.(type) {
	case *cookieStore:
		return "cookie"
	case *redisSessionStore:
		return "redis"
	case *gorillaStore:
		return "gorilla"
	}
	return "custom"
}
