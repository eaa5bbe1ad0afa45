package oidcauth

import (
	"context"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	aserto "github.com/aserto-dev/go-aserto"
	"github.com/aserto-dev/go-aserto/az"
	authorizer "github.com/aserto-dev/go-authorizer/aserto/authorizer/v2"
	"github.com/aserto-dev/go-authorizer/aserto/authorizer/v2/api"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
)

// Defaults of AuthorizerConfig.
const (
	// DefaultDecision is the policy rule an Authorizer asks for.
	DefaultDecision = "allowed"
	// DefaultDecisionCacheTTL is how long a decision is reused.
	DefaultDecisionCacheTTL = 30 * time.Second
	// DefaultDecisionCacheSize bounds the number of cached decisions.
	DefaultDecisionCacheSize = 10_000
	// DefaultAuthorizerTimeout bounds each call to the authorizer.
	DefaultAuthorizerTimeout = 5 * time.Second
	// NoDecisionCache, as AuthorizerConfig.CacheTTL, turns the decision
	// cache off: every request asks the authorizer (concurrent identical
	// questions still share one call).
	NoDecisionCache time.Duration = -1
)

// AuthorizerClient asks a Topaz authorizer for decisions. go-aserto's
// *az.Client satisfies it, as does any generated
// authorizer.AuthorizerClient; tests can supply their own.
type AuthorizerClient interface {
	Is(ctx context.Context, in *authorizer.IsRequest, opts ...grpc.CallOption) (*authorizer.IsResponse, error)
}

// AuthorizerConfig configures NewAuthorizer. Only PolicyRoot and one of
// Auth or Identity are required; every other zero value means its default.
type AuthorizerConfig struct {
	// PolicyRoot is the first part of every policy path, such as "myapp"
	// in "myapp.GET.documents.__id" (TOPAZ_POLICY_ROOT). It is a dotted
	// Rego reference: letters, digits and underscores, dots between parts.
	PolicyRoot string
	// Decision is the rule of the policy to evaluate; default "allowed".
	Decision string

	// Auth, when set, supplies the default identity (the session's
	// subject), answers a request that is denied without a user the way
	// RequireUser does (browsers to log in, 401 for the rest), and makes a
	// session store that cannot answer a 503 rather than an anonymous
	// request. Its error handler and logger are the defaults of
	// ErrorHandler and Logger. Without it, the last two are done by the
	// Auth whose Handler the request went through, if any; otherwise a
	// denial without a user is a plain 401.
	Auth *Auth
	// Identity derives the identity sent to the authorizer; default
	// Auth.Identity (SUB, the user's subject). Use Auth.IDTokenIdentity
	// for JWT, or your own provider for MANUAL identities. Whenever it
	// returns an anonymous identity, the session store of Auth (or of the
	// Auth whose Handler the request went through) is checked: if it
	// cannot answer the request fails with 503.
	Identity IdentityProvider

	// PolicyPath, when set, replaces the automatic policy path of
	// Middleware: it returns the whole path, root included.
	PolicyPath func(*http.Request) string
	// ResourceContext, when set, replaces the default resource context of
	// Middleware and RequirePolicy (the route's path values, such as
	// {"id": "42"} for "GET /documents/{id}"). The map must encode as a
	// JSON object.
	ResourceContext func(*http.Request) map[string]any

	// CacheTTL is how long a decision is reused; default 30 s.
	// NoDecisionCache (any negative value) turns caching off.
	CacheTTL time.Duration
	// CacheSize bounds the number of cached decisions, the least recently
	// used giving way first; default 10,000.
	CacheSize int
	// Timeout bounds each call to the authorizer; default 5 s. A call
	// that takes longer fails the request with 503.
	Timeout time.Duration

	// ErrorHandler writes the 403, 500 and 503 answers; default Auth's
	// error handler, or DefaultErrorHandler.
	ErrorHandler ErrorHandler
	// Logger receives a line for every refused or failed request, with the
	// cause; default Auth's logger, or slog.Default(). Tokens are never
	// logged.
	Logger *slog.Logger
	// AuditLog, when set, receives one Info line per decision: identity
	// type and value (never a JWT's), policy path, decision, outcome
	// (allowed, denied, error) and whether it was cached. Off by default.
	AuditLog *slog.Logger
	// Observer receives an EventDecision per decision and times the
	// authorizer calls (OpAuthorize); default Auth's (see WithObserver).
	Observer Observer
}

// Authorizer asks a Topaz authorizer whether a request may proceed. Make
// it with NewAuthorizer; it is safe for concurrent use.
//
// Outcomes are the same for every middleware: allowed goes on to the next
// handler; denied without a user is answered like RequireUser (a browser
// is sent to log in, anything else gets 401); denied with a user, or a user
// the authorizer's directory does not know, gets 403; an authorizer that is
// unreachable, failing or slower than the timeout gives 503. An error never
// allows.
type Authorizer struct {
	client    AuthorizerClient
	root      string
	decision  string
	checkPath string

	auth       *Auth
	identity   IdentityProvider
	policyPath func(*http.Request) string
	resource   func(*http.Request) map[string]any
	timeout    time.Duration

	errorHandler ErrorHandler
	log          *slog.Logger
	audit        *slog.Logger // nil: no audit log
	obs          Observer     // nil: nothing recorded
	cache        decisionCache
}

// NewAuthorizer returns an Authorizer asking client, typically go-aserto's
// *az.Client (see TopazConfig.Connect). It reports a configuration that
// cannot work, such as a missing or malformed PolicyRoot.
func NewAuthorizer(client AuthorizerClient, cfg AuthorizerConfig) (*Authorizer, error) {
	var errs []error
	if client == nil {
		errs = append(errs, errors.New("oidcauth: NewAuthorizer needs a client (go-aserto's *az.Client)"))
	}
	if cfg.PolicyRoot == "" {
		errs = append(errs, &ConfigError{"TOPAZ_POLICY_ROOT", "is required (the policy root, e.g. myapp)"})
	} else if !validPolicyPath(cfg.PolicyRoot) {
		errs = append(errs, &ConfigError{"TOPAZ_POLICY_ROOT", fmt.Sprintf("%q is not a policy path: use letters, digits and underscores, with dots between parts", cfg.PolicyRoot)})
	}
	if cfg.Decision == "" {
		cfg.Decision = DefaultDecision
	} else if !validIdent(cfg.Decision) {
		errs = append(errs, fmt.Errorf("oidcauth: decision %q is not a Rego rule name", cfg.Decision))
	}
	if cfg.Auth == nil && cfg.Identity == nil {
		errs = append(errs, errors.New("oidcauth: AuthorizerConfig needs Auth or an Identity provider"))
	}
	if cfg.CacheSize < 0 {
		errs = append(errs, errors.New("oidcauth: AuthorizerConfig.CacheSize must not be negative"))
	}
	if cfg.Timeout < 0 {
		errs = append(errs, errors.New("oidcauth: AuthorizerConfig.Timeout must not be negative"))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if cfg.Identity == nil {
		cfg.Identity = cfg.Auth.Identity
	}
	if cfg.CacheTTL == 0 {
		cfg.CacheTTL = DefaultDecisionCacheTTL
	}
	if cfg.CacheSize == 0 {
		cfg.CacheSize = DefaultDecisionCacheSize
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultAuthorizerTimeout
	}
	if cfg.ErrorHandler == nil {
		cfg.ErrorHandler = DefaultErrorHandler
		if cfg.Auth != nil {
			cfg.ErrorHandler = cfg.Auth.errorHandler
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
		if cfg.Auth != nil {
			cfg.Logger = cfg.Auth.log
		}
	}
	if cfg.Observer == nil && cfg.Auth != nil {
		cfg.Observer = cfg.Auth.obs
	}
	z := &Authorizer{
		client:       client,
		root:         cfg.PolicyRoot,
		decision:     cfg.Decision,
		checkPath:    cfg.PolicyRoot + ".check",
		auth:         cfg.Auth,
		identity:     cfg.Identity,
		policyPath:   cfg.PolicyPath,
		resource:     cfg.ResourceContext,
		timeout:      cfg.Timeout,
		errorHandler: cfg.ErrorHandler,
		log:          cfg.Logger,
		audit:        cfg.AuditLog,
		obs:          cfg.Observer,
	}
	z.cache.init(cfg.CacheTTL, cfg.CacheSize, time.Now)
	return z, nil
}

// IDTokenIdentity is an IdentityProvider for Topaz setups that resolve
// users from JWTs: IdentityJWT with the session's raw ID token, or
// IdentityNone for anonymous requests. The ID token expires long before
// the session (often within minutes); Topaz then refuses it, which gives
// 403, so use it only where that is what you want.
func (a *Auth) IDTokenIdentity(r *http.Request) Identity {
	sess, err := a.Session(r)
	if err != nil || sess == nil || sess.IDToken == "" {
		return Identity{}
	}
	return Identity{Type: IdentityJWT, Value: sess.IDToken}
}

// Identity returns the identity the Authorizer sends for r. The error, an
// *Error with status 503, means the session store could not answer: an
// anonymous identity is double-checked against the session of the Auth
// (AuthorizerConfig.Auth, or the one whose Handler r went through), so
// that a store failure is never taken for an anonymous request.
func (z *Authorizer) Identity(r *http.Request) (Identity, error) {
	a := z.authFor(r)
	if a != nil {
		_, r = a.state(r) // one session load serves the provider and the check
	}
	id := z.identity(r)
	if id.Type == IdentityNone && a != nil && a.mayHaveSession(r) {
		if _, err := a.Session(r); err != nil {
			return Identity{}, storeError(err)
		}
	}
	return id, nil
}

// authFor is AuthorizerConfig.Auth or, without one, the Auth whose Handler
// r went through, if any.
func (z *Authorizer) authFor(r *http.Request) *Auth {
	if z.auth != nil {
		return z.auth
	}
	if s, ok := r.Context().Value(stateKey{}).(*reqState); ok {
		return s.auth
	}
	return nil
}

// Middleware checks each request against the policy of its route. For a
// Go 1.22 ServeMux pattern the path is the root, the method and the
// pattern's segments, each wildcard as "__" and its name:
//
//	GET /documents/{id}          → <root>.GET.documents.__id
//	GET /orgs/{org}/docs/{id}    → <root>.GET.orgs.__org.docs.__id
//	GET /files/{path...}         → <root>.GET.files.__path
//	GET /{$}                     → <root>.GET
//	/reports (no method)         → <root>.<the request's method>.reports
//
// A host in the pattern, "{$}" and empty segments are left out; characters
// other than letters, digits and "_" become "_", and a segment starting
// with a digit gets a leading "_". Without a pattern (a handler not served
// by a ServeMux) the URL path is used the same way. The resource context is
// the route's path values, such as {"id": "42"}. AuthorizerConfig's
// PolicyPath and ResourceContext replace either.
func (z *Authorizer) Middleware(next http.Handler) http.Handler {
	var routes routeCache
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rt := routes.get(z.root, r)
		var path string
		if z.policyPath != nil {
			path = z.policyPath(r)
		} else {
			path = rt.policyPath(r.Method)
		}
		z.serveRoute(w, r, next, rt, path)
	})
}

// RequirePolicy returns middleware checking each request against the
// policy at path, the whole path (root included), such as
// "myapp.GET.documents". The resource context is as for Middleware.
func (z *Authorizer) RequirePolicy(path string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		var routes routeCache
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			z.serveRoute(w, r, next, routes.get(z.root, r), path)
		})
	}
}

// RequireRelation returns middleware asking the "<root>.check" policy
// whether the user has relation (a relation or permission of the
// directory, such as "can_write") to the object of objectType whose id
// objectID returns, with the resource context
// {"object_type", "object_id", "relation", "subject_type": "user"}. An
// empty object id is denied without asking.
func (z *Authorizer) RequireRelation(objectType, relation string, objectID func(*http.Request) string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var arr [4]kv
			id := objectID(r)
			q := question{path: z.checkPath, pairs: relationPairs(arr[:0], objectType, id, relation), deny: id == ""}
			z.serve(w, r, next, &q)
		})
	}
}

// Allowed asks whether id is allowed by the policy at policyPath (root
// included) about resource, which may be nil. It shares the decision
// cache with the middleware. An identity the directory does not know is
// not allowed (false, nil); an error, an *Error with status 503 (or 500
// for a resource that does not encode as a JSON object), means no answer.
func (z *Authorizer) Allowed(ctx context.Context, id Identity, policyPath string, resource map[string]any) (bool, error) {
	q := question{id: id, path: policyPath}
	if resource != nil {
		b, err := json.Marshal(resource)
		if err != nil {
			return false, internalError("the resource context does not encode as a JSON object")
		}
		q.custom = b
	}
	return z.allowed(ctx, &q)
}

// Check asks the "<root>.check" policy whether id has relation to the
// object, as RequireRelation does; errors are as for Allowed. Use it to
// filter a list:
//
//	id, err := az.Identity(r)
//	for _, d := range docs {
//		ok, err := az.Check(r.Context(), id, "document", d.ID, "can_read")
//		...
//	}
func (z *Authorizer) Check(ctx context.Context, id Identity, objectType, objectID, relation string) (bool, error) {
	var arr [4]kv
	q := question{id: id, path: z.checkPath, pairs: relationPairs(arr[:0], objectType, objectID, relation), deny: objectID == ""}
	return z.allowed(ctx, &q)
}

func (z *Authorizer) allowed(ctx context.Context, q *question) (bool, error) {
	if err := checkIdentity(q.id); err != nil {
		return false, err
	}
	if q.deny {
		return false, nil
	}
	ok, err := z.decideAndRecord(ctx, q)
	switch {
	case errors.Is(err, errUnknownIdentity):
		return false, nil
	case err != nil:
		return false, unavailable(err)
	}
	return ok, nil
}

// relationPairs is the resource context of a ReBAC check, sorted by key.
func relationPairs(dst []kv, objectType, objectID, relation string) []kv {
	return append(dst,
		kv{"object_id", objectID},
		kv{"object_type", objectType},
		kv{"relation", relation},
		kv{"subject_type", "user"},
	)
}

// serveRoute serves r with the policy at path and the resource context of
// its route. The resource context stays on the stack: appending to it
// through a pointer would move it to the heap.
func (z *Authorizer) serveRoute(w http.ResponseWriter, r *http.Request, next http.Handler, rt *route, path string) {
	q := question{path: path}
	var arr [8]kv
	if z.resource != nil {
		if m := z.resource(r); m != nil {
			b, err := json.Marshal(m)
			if err != nil {
				z.fail(w, r, &q, internalError("the resource context does not encode as a JSON object: "+err.Error()))
				return
			}
			q.custom = b
		}
	} else {
		pairs := arr[:0]
		for _, name := range rt.names {
			pairs = append(pairs, kv{name, r.PathValue(name)})
		}
		q.pairs = pairs
	}
	z.serve(w, r, next, &q)
}

// serve decides q for r and answers accordingly.
func (z *Authorizer) serve(w http.ResponseWriter, r *http.Request, next http.Handler, q *question) {
	id, err := z.Identity(r)
	if err != nil {
		z.fail(w, r, q, err)
		return
	}
	q.id = id
	if err := checkIdentity(id); err != nil {
		z.fail(w, r, q, err)
		return
	}
	allowed := false
	if !q.deny {
		allowed, err = z.decideAndRecord(r.Context(), q)
	}
	switch {
	case errors.Is(err, errUnknownIdentity):
		z.fail(w, r, q, &Error{Status: http.StatusForbidden, Code: "forbidden", Message: "You are not allowed to do this.", Err: err})
	case err != nil:
		z.fail(w, r, q, unavailable(err))
	case allowed:
		next.ServeHTTP(w, r)
	case id.Anonymous():
		if a := z.authFor(r); a != nil {
			a.Unauthenticated(w, r)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "unauthenticated"})
	default:
		z.fail(w, r, q, &Error{Status: http.StatusForbidden, Code: "forbidden", Message: "You are not allowed to do this.", Err: errDenied})
	}
}

var (
	errDenied          = errors.New("denied by policy")
	errUnknownIdentity = errors.New("the authorizer's directory does not know the identity")
)

func unavailable(err error) *Error {
	return &Error{Status: http.StatusServiceUnavailable, Code: "authorizer_unavailable",
		Message: "Authorization is unavailable right now. Please try again shortly.", Err: err}
}

func internalError(cause string) *Error {
	return &Error{Status: http.StatusInternalServerError, Code: "internal_error", Message: "Something went wrong.", Err: errors.New(cause)}
}

// checkIdentity refuses identities no authorizer could resolve: an
// unknown type, or a named one without a value.
func checkIdentity(id Identity) error {
	switch {
	case id.Type > IdentityManual:
		return internalError(fmt.Sprintf("the identity provider returned an unknown identity type %d", id.Type))
	case id.Type != IdentityNone && id.Value == "":
		return internalError("the identity provider returned a " + id.Type.String() + " identity without a value")
	}
	return nil
}

// fail logs err with the request's policy and identity (never a token)
// and hands it to the error handler.
func (z *Authorizer) fail(w http.ResponseWriter, r *http.Request, q *question, err error) {
	// Copies, so that q (and the resource context on the caller's stack)
	// never escapes: escape analysis does not tell a struct's fields apart.
	policy, id := strings.Clone(q.path), Identity{q.id.Type, strings.Clone(q.id.Value)}
	e := errorAs(err)
	extra := []slog.Attr{slog.String("policy", policy), slog.String("identity_type", id.Type.String())}
	if id.Type == IdentitySubject {
		extra = append(extra, slog.String("sub", id.Value))
	}
	msg := "oidcauth: authorization denied"
	if e.Status >= 500 {
		msg = "oidcauth: authorization failed"
	}
	logFailure(z.log, r, e, msg, extra...)
	z.errorHandler(w, r, e)
}

// kv is one entry of a string-valued resource context.
type kv struct{ k, v string }

// question is one thing to ask the authorizer.
type question struct {
	id     Identity
	path   string
	pairs  []kv   // resource context of strings, sorted by key
	custom []byte // or the JSON encoding of a whole resource context
	deny   bool   // denied without asking (a ReBAC check without an object)
}

// appendKey appends q's cache key: every part length-prefixed, so that no
// two different questions share a key.
func (q *question) appendKey(b []byte, decision string) []byte {
	b = append(b, byte(q.id.Type))
	b = appendString(b, q.id.Value)
	b = appendString(b, q.path)
	b = appendString(b, decision)
	if q.custom != nil {
		b = append(b, 'J')
		return append(b, q.custom...)
	}
	b = append(b, 'P')
	for _, p := range q.pairs {
		b = appendString(b, p.k)
		b = appendString(b, p.v)
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// resourceContext builds the gRPC resource context of q.
func (q *question) resourceContext() (*structpb.Struct, error) {
	s := &structpb.Struct{Fields: make(map[string]*structpb.Value, len(q.pairs))}
	if q.custom != nil {
		if err := protojson.Unmarshal(q.custom, s); err != nil {
			return nil, fmt.Errorf("resource context: %w", err)
		}
		return s, nil
	}
	for _, p := range q.pairs {
		s.Fields[p.k] = structpb.NewStringValue(p.v)
	}
	return s, nil
}

// identityTypes maps IdentityType onto the authorizer's enum.
var identityTypes = [...]api.IdentityType{
	IdentityNone:    api.IdentityType_IDENTITY_TYPE_NONE,
	IdentitySubject: api.IdentityType_IDENTITY_TYPE_SUB,
	IdentityJWT:     api.IdentityType_IDENTITY_TYPE_JWT,
	IdentityManual:  api.IdentityType_IDENTITY_TYPE_MANUAL,
}

// decide answers q from the cache or, on a miss, from the authorizer.
func (z *Authorizer) decide(ctx context.Context, q *question) (allowed, cached bool, err error) {
	var buf [256]byte
	key := q.appendKey(buf[:0], z.decision)
	if allowed, ok := z.cache.get(key); ok {
		return allowed, true, nil
	}
	allowed, err = z.miss(ctx, key, q)
	return allowed, false, err
}

// decideAndRecord decides q and, when observed or audited, records the
// decision. Without either it costs nothing more than decide.
func (z *Authorizer) decideAndRecord(ctx context.Context, q *question) (bool, error) {
	if z.obs == nil && z.audit == nil {
		allowed, _, err := z.decide(ctx, q)
		return allowed, err
	}
	start := time.Now()
	allowed, cached, err := z.decide(ctx, q)
	outcome := "denied"
	switch {
	case err != nil:
		outcome = "error"
	case allowed:
		outcome = "allowed"
	}
	// Copies, so that q stays on the caller's stack (see fail).
	path, idType, value := strings.Clone(q.path), q.id.Type, ""
	if z.audit != nil && idType != IdentityJWT {
		value = strings.Clone(q.id.Value) // a JWT is a token: never logged
	}
	if z.obs != nil {
		z.obs.Event(ctx, Event{Kind: EventDecision, Outcome: outcome, Cached: cached, PolicyPath: path, Duration: time.Since(start)})
	}
	if z.audit != nil {
		z.audit.LogAttrs(ctx, slog.LevelInfo, "oidcauth: authorization decision",
			slog.String("identity_type", idType.String()), slog.String("identity", value),
			slog.String("policy", path), slog.String("decision", z.decision),
			slog.String("outcome", outcome), slog.Bool("cached", cached))
	}
	return allowed, err
}

// miss asks the authorizer, sharing the call with concurrent identical
// questions. It copies q deeply, so that q and its resource context stay
// on the caller's stack and a cache hit allocates nothing.
func (z *Authorizer) miss(ctx context.Context, key []byte, q *question) (bool, error) {
	own := question{
		id:     Identity{q.id.Type, strings.Clone(q.id.Value)},
		path:   strings.Clone(q.path),
		pairs:  make([]kv, len(q.pairs)),
		custom: slices.Clone(q.custom),
	}
	for i, p := range q.pairs {
		own.pairs[i] = kv{strings.Clone(p.k), strings.Clone(p.v)}
	}
	return z.cache.do(ctx, key, func() (bool, error) { return z.ask(ctx, &own) })
}

// ask makes the gRPC call for q, bounded by the timeout and not by ctx's
// cancellation: callers sharing it may outlive the one that started it.
func (z *Authorizer) ask(ctx context.Context, q *question) (bool, error) {
	resource, err := q.resourceContext()
	if err != nil {
		return false, err
	}
	req := &authorizer.IsRequest{
		PolicyContext:   &api.PolicyContext{Path: q.path, Decisions: []string{z.decision}},
		IdentityContext: &api.IdentityContext{Identity: q.id.Value, Type: identityTypes[q.id.Type]},
		ResourceContext: resource,
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), z.timeout)
	defer cancel()
	ctx, end := startOp(z.obs, ctx, OpAuthorize)
	resp, err := z.client.Is(ctx, req)
	end(err)
	if err != nil {
		st, _ := status.FromError(err)
		switch {
		case st.Code() == codes.NotFound:
			return false, fmt.Errorf("%w: %s", errUnknownIdentity, st.Message())
		case ctx.Err() != nil || st.Code() == codes.DeadlineExceeded:
			return false, fmt.Errorf("the authorizer did not answer within %s: %s", z.timeout, st.Message())
		}
		return false, fmt.Errorf("the authorizer failed: %s: %s", st.Code(), st.Message())
	}
	for _, d := range resp.GetDecisions() {
		if d.GetDecision() == z.decision {
			return d.GetIs(), nil
		}
	}
	return false, fmt.Errorf("the authorizer's answer for %s has no decision %q", q.path, z.decision)
}

// route is what the policy path and resource context of a ServeMux
// pattern need, worked out once per pattern.
type route struct {
	pattern string
	path    string   // the whole policy path, when the pattern has a method
	prefix  string   // else root; the request's method goes between the two
	suffix  string   // e.g. ".documents.__id"
	names   []string // wildcard names, sorted
}

func (rt *route) policyPath(method string) string {
	if rt.path != "" {
		return rt.path
	}
	return rt.prefix + "." + sanitize(method) + rt.suffix
}

// routeCache remembers the last pattern a middleware saw: behind a
// ServeMux a middleware almost always serves one pattern.
type routeCache struct{ last atomic.Pointer[route] }

func (c *routeCache) get(root string, r *http.Request) *route {
	if r.Pattern == "" {
		return parseRoute(root, "", r.URL.Path)
	}
	if rt := c.last.Load(); rt != nil && rt.pattern == r.Pattern {
		return rt
	}
	rt := parseRoute(root, r.Pattern, "")
	c.last.Store(rt)
	return rt
}

// parseRoute works out the route of a ServeMux pattern ("[METHOD ][HOST]/
// [PATH]") or, when pattern is empty, of a URL path.
func parseRoute(root, pattern, urlPath string) *route {
	rt := &route{pattern: pattern, prefix: root}
	method, rest := "", urlPath
	if pattern != "" {
		rest = pattern
		if i := strings.IndexAny(pattern, " \t"); i >= 0 {
			method, rest = pattern[:i], strings.TrimLeft(pattern[i:], " \t")
		}
		if i := strings.IndexByte(rest, '/'); i > 0 {
			rest = rest[i:] // drop the host
		}
	}
	var sb strings.Builder
	for seg := range strings.SplitSeq(rest, "/") {
		switch {
		case seg == "" || (pattern != "" && seg == "{$}"):
		case pattern != "" && len(seg) > 2 && seg[0] == '{' && seg[len(seg)-1] == '}':
			name := strings.TrimSuffix(seg[1:len(seg)-1], "...")
			rt.names = append(rt.names, name)
			sb.WriteString(".__")
			sb.WriteString(sanitizeTail(name))
		default:
			sb.WriteByte('.')
			sb.WriteString(sanitize(seg))
		}
	}
	slices.Sort(rt.names)
	rt.names = slices.Compact(rt.names)
	rt.suffix = sb.String()
	if method != "" {
		rt.path = root + "." + sanitize(method) + rt.suffix
	}
	return rt
}

// sanitize makes s a Rego reference part: letters, digits and "_", not
// starting with a digit.
func sanitize(s string) string {
	s = sanitizeTail(s)
	if s == "" || (s[0] >= '0' && s[0] <= '9') {
		return "_" + s
	}
	return s
}

// sanitizeTail replaces every byte other than a letter, digit or "_".
func sanitizeTail(s string) string {
	ok := true
	for i := 0; i < len(s); i++ {
		if !identByte(s[i]) {
			ok = false
			break
		}
	}
	if ok {
		return s
	}
	b := []byte(s)
	for i, c := range b {
		if !identByte(c) {
			b[i] = '_'
		}
	}
	return string(b)
}

func identByte(c byte) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
}

func validIdent(s string) bool {
	if s == "" || (s[0] >= '0' && s[0] <= '9') {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !identByte(s[i]) {
			return false
		}
	}
	return true
}

// validPolicyPath reports whether p is a dotted Rego reference such as
// "myapp" or "acme.docs".
func validPolicyPath(p string) bool {
	for part := range strings.SplitSeq(p, ".") {
		if !validIdent(part) {
			return false
		}
	}
	return true
}

// decisionCache keeps decisions for a TTL, at most size of them, the least
// recently used giving way first, and lets concurrent identical misses
// share one call. A hit takes one lock and allocates nothing.
type decisionCache struct {
	ttl  time.Duration // < 0: nothing is kept
	size int
	now  func() time.Time

	mu      sync.Mutex
	entries map[string]*cacheEntry
	lru     cacheEntry // sentinel: lru.next is the most recently used
	flights map[string]*flight
}

type cacheEntry struct {
	key        string
	allowed    bool
	expires    time.Time
	prev, next *cacheEntry
}

// flight is a call in progress; done is closed once allowed and err are
// set.
type flight struct {
	done    chan struct{}
	allowed bool
	err     error
	shared  int // callers that joined the one who started it
}

func (c *decisionCache) init(ttl time.Duration, size int, now func() time.Time) {
	c.ttl, c.size, c.now = ttl, size, now
	c.entries = make(map[string]*cacheEntry)
	c.flights = make(map[string]*flight)
	c.lru.next, c.lru.prev = &c.lru, &c.lru
}

// get returns the cached decision for key, if it is there and fresh.
func (c *decisionCache) get(key []byte) (allowed, ok bool) {
	if c.ttl < 0 {
		return false, false
	}
	c.mu.Lock()
	allowed, ok = c.getLocked(key)
	c.mu.Unlock()
	return allowed, ok
}

func (c *decisionCache) getLocked(key []byte) (allowed, ok bool) {
	e := c.entries[string(key)]
	if e == nil {
		return false, false
	}
	if !c.now().Before(e.expires) {
		c.unlink(e)
		delete(c.entries, e.key)
		return false, false
	}
	if c.lru.next != e {
		c.unlink(e)
		c.pushFront(e)
	}
	return e.allowed, true
}

// do returns the decision for key: fresh from the cache, from a call in
// progress for the same key, or from a new call of fn, which runs on its
// own so that a caller whose ctx ends can leave without failing the
// others. Decisions are cached; errors are not.
func (c *decisionCache) do(ctx context.Context, key []byte, fn func() (bool, error)) (bool, error) {
	c.mu.Lock()
	if c.ttl >= 0 {
		if allowed, ok := c.getLocked(key); ok {
			c.mu.Unlock()
			return allowed, nil
		}
	}
	k := string(key)
	f := c.flights[k]
	if f == nil {
		f = &flight{done: make(chan struct{})}
		c.flights[k] = f
		go c.run(k, f, fn)
	} else {
		f.shared++
	}
	c.mu.Unlock()
	select {
	case <-f.done:
		return f.allowed, f.err
	case <-ctx.Done():
		return false, context.Cause(ctx)
	}
}

func (c *decisionCache) run(k string, f *flight, fn func() (bool, error)) {
	defer close(f.done)
	defer func() {
		if p := recover(); p != nil {
			f.allowed, f.err = false, fmt.Errorf("authorizer client panicked: %v", p)
			c.mu.Lock()
			delete(c.flights, k)
			c.mu.Unlock()
		}
	}()
	allowed, err := fn()
	c.mu.Lock()
	f.allowed, f.err = allowed, err
	delete(c.flights, k)
	if err == nil && c.ttl >= 0 {
		c.addLocked(k, allowed)
	}
	c.mu.Unlock()
}

func (c *decisionCache) addLocked(k string, allowed bool) {
	expires := c.now().Add(c.ttl)
	if e := c.entries[k]; e != nil {
		e.allowed, e.expires = allowed, expires
		c.unlink(e)
		c.pushFront(e)
		return
	}
	e := &cacheEntry{key: k, allowed: allowed, expires: expires}
	c.entries[k] = e
	c.pushFront(e)
	for len(c.entries) > c.size {
		old := c.lru.prev
		c.unlink(old)
		delete(c.entries, old.key)
	}
}

func (c *decisionCache) unlink(e *cacheEntry) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

func (c *decisionCache) pushFront(e *cacheEntry) {
	e.prev, e.next = &c.lru, c.lru.next
	c.lru.next.prev = e
	c.lru.next = e
}

// count returns the number of cached decisions.
func (c *decisionCache) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// TopazConfig says how to reach a Topaz authorizer. Read it from the
// TOPAZ_* environment with TopazConfigFromEnv, or fill it in code; Connect
// makes the go-aserto client.
type TopazConfig struct {
	// Address is the authorizer's gRPC address, host:port
	// (TOPAZ_AUTHORIZER_ADDR); default localhost:8282.
	Address string
	// NoTLS connects in plaintext (TOPAZ_NO_TLS), for an authorizer on
	// loopback or behind a sidecar.
	NoTLS bool
	// Insecure connects with TLS but does not verify the authorizer's
	// certificate (TOPAZ_INSECURE); for development only.
	Insecure bool
	// CACertPath is a PEM file of CA certificates to verify the authorizer
	// with, in addition to the system's (TOPAZ_CA_CERT), such as Topaz's
	// generated grpc-ca.crt.
	CACertPath string
	// APIKey authenticates to the authorizer (TOPAZ_API_KEY), sent as
	// "authorization: basic <key>". It is never logged or shown.
	APIKey string
	// TenantID is sent as the aserto-tenant-id header (TOPAZ_TENANT_ID).
	TenantID string
	// PolicyRoot is AuthorizerConfig.PolicyRoot (TOPAZ_POLICY_ROOT).
	PolicyRoot string
	// DecisionCacheTTL is AuthorizerConfig.CacheTTL
	// (TOPAZ_DECISION_CACHE_TTL, a Go duration; "0" turns the cache off,
	// which reads as NoDecisionCache; unset means the default).
	DecisionCacheTTL time.Duration
}

// DefaultTopazAddress is the authorizer address when
// TOPAZ_AUTHORIZER_ADDR is unset: a Topaz on this machine.
const DefaultTopazAddress = "localhost:8282"

// TenantHeader is the gRPC header carrying TopazConfig.TenantID.
const TenantHeader = "aserto-tenant-id"

// TopazConfigFromEnv reads a TopazConfig from the TOPAZ_* environment
// variables and validates it. Every problem is reported at once, each a
// *ConfigError naming its variable, joined with errors.Join; the API key's
// value is never echoed.
func TopazConfigFromEnv() (TopazConfig, error) {
	c := TopazConfig{
		Address:    os.Getenv("TOPAZ_AUTHORIZER_ADDR"),
		CACertPath: os.Getenv("TOPAZ_CA_CERT"),
		APIKey:     os.Getenv("TOPAZ_API_KEY"),
		TenantID:   os.Getenv("TOPAZ_TENANT_ID"),
		PolicyRoot: os.Getenv("TOPAZ_POLICY_ROOT"),
	}
	var errs []error
	for _, b := range []struct {
		name string
		dst  *bool
	}{{"TOPAZ_NO_TLS", &c.NoTLS}, {"TOPAZ_INSECURE", &c.Insecure}} {
		v := os.Getenv(b.name)
		if v == "" {
			continue
		}
		parsed, err := strconv.ParseBool(v)
		if err != nil {
			errs = append(errs, &ConfigError{b.name, fmt.Sprintf("%q is not a boolean: use true or false", v)})
			continue
		}
		*b.dst = parsed
	}
	if v := os.Getenv("TOPAZ_DECISION_CACHE_TTL"); v != "" {
		d, err := time.ParseDuration(v)
		switch {
		case err != nil:
			errs = append(errs, &ConfigError{"TOPAZ_DECISION_CACHE_TTL", fmt.Sprintf("%q is not a duration: use a Go duration such as 30s, or 0 to turn the cache off", v)})
		case d < 0:
			errs = append(errs, &ConfigError{"TOPAZ_DECISION_CACHE_TTL", fmt.Sprintf("%q is negative: use 0 to turn the cache off", v)})
		case d == 0:
			c.DecisionCacheTTL = NoDecisionCache
		default:
			c.DecisionCacheTTL = d
		}
	}
	if err := c.Validate(); err != nil {
		errs = append(errs, err)
	}
	return c, errors.Join(errs...)
}

// Validate reports every problem with c at once, each a *ConfigError
// naming the environment variable of the field. It reads CACertPath.
func (c TopazConfig) Validate() error {
	var errs []error
	bad := func(variable, problem string) { errs = append(errs, &ConfigError{variable, problem}) }
	if addr := c.Address; addr != "" {
		if strings.ContainsFunc(addr, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
			bad("TOPAZ_AUTHORIZER_ADDR", fmt.Sprintf("%q contains spaces or control characters", addr))
		} else if !strings.Contains(addr, "://") && !strings.HasPrefix(addr, "unix:") {
			if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
				bad("TOPAZ_AUTHORIZER_ADDR", fmt.Sprintf("%q is not host:port (e.g. localhost:8282)", addr))
			}
		}
	}
	if c.NoTLS && c.Insecure {
		bad("TOPAZ_INSECURE", "cannot be combined with TOPAZ_NO_TLS=true: without TLS there is no certificate to skip verifying")
	}
	if c.CACertPath != "" {
		switch {
		case c.NoTLS:
			bad("TOPAZ_CA_CERT", "is set, but TOPAZ_NO_TLS=true turns TLS off")
		case c.Insecure:
			bad("TOPAZ_CA_CERT", "is set, but TOPAZ_INSECURE=true skips certificate verification")
		default:
			if problem := checkCACert(c.CACertPath); problem != "" {
				bad("TOPAZ_CA_CERT", problem)
			}
		}
	}
	if strings.ContainsFunc(c.APIKey, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		bad("TOPAZ_API_KEY", "contains spaces or control characters (its value is not shown)")
	}
	if strings.ContainsFunc(c.TenantID, func(r rune) bool { return r <= ' ' || r >= 0x7f }) {
		bad("TOPAZ_TENANT_ID", fmt.Sprintf("%q must be printable ASCII without spaces", c.TenantID))
	}
	if c.PolicyRoot != "" && !validPolicyPath(c.PolicyRoot) {
		bad("TOPAZ_POLICY_ROOT", fmt.Sprintf("%q is not a policy path: use letters, digits and underscores, with dots between parts (e.g. myapp)", c.PolicyRoot))
	}
	if c.DecisionCacheTTL < 0 && c.DecisionCacheTTL != NoDecisionCache {
		bad("TOPAZ_DECISION_CACHE_TTL", "is negative: use NoDecisionCache (0 in the environment) to turn the cache off")
	}
	return errors.Join(errs...)
}

// checkCACert returns what is wrong with the CA file at path, if anything.
func checkCACert(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("cannot be read: %v", err)
	}
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return fmt.Sprintf("%s holds no PEM certificate", path)
		}
		if block.Type == "CERTIFICATE" {
			if _, err := x509.ParseCertificate(block.Bytes); err != nil {
				return fmt.Sprintf("%s: %v", path, err)
			}
			return ""
		}
	}
}

// ConnectionOptions maps c onto go-aserto's connection options.
func (c TopazConfig) ConnectionOptions() []aserto.ConnectionOption {
	addr := c.Address
	if addr == "" {
		addr = DefaultTopazAddress
	}
	opts := []aserto.ConnectionOption{
		aserto.WithAddr(addr),
		aserto.WithNoTLS(c.NoTLS),
		aserto.WithInsecure(c.Insecure),
	}
	if c.CACertPath != "" {
		opts = append(opts, aserto.WithCACertPath(c.CACertPath))
	}
	if c.APIKey != "" {
		opts = append(opts, aserto.WithAPIKeyAuth(c.APIKey))
	}
	if c.TenantID != "" {
		opts = append(opts, aserto.WithHeader(TenantHeader, c.TenantID))
	}
	return opts
}

// Connect validates c and returns a go-aserto authorizer client for it.
// The connection is made lazily: an authorizer that is down now gives 503
// answers until it is back, not an error here. Close the client on exit.
func (c TopazConfig) Connect() (*az.Client, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	client, err := az.New(c.ConnectionOptions()...)
	if err != nil {
		return nil, fmt.Errorf("oidcauth: connecting to the Topaz authorizer: %w", err)
	}
	return client, nil
}

// String describes c with the API key redacted.
func (c TopazConfig) String() string {
	key := ""
	if c.APIKey != "" {
		key = "[redacted]"
	}
	ttl := c.DecisionCacheTTL.String()
	switch {
	case c.DecisionCacheTTL == 0:
		ttl = "default"
	case c.DecisionCacheTTL < 0:
		ttl = "off"
	}
	return fmt.Sprintf("TopazConfig{Address:%q NoTLS:%t Insecure:%t CACertPath:%q APIKey:%q TenantID:%q PolicyRoot:%q DecisionCacheTTL:%s}",
		c.Address, c.NoTLS, c.Insecure, c.CACertPath, key, c.TenantID, c.PolicyRoot, ttl)
}

// GoString is String, so that %#v does not show the API key either.
func (c TopazConfig) GoString() string { return c.String() }

// LogValue logs c with the API key redacted.
func (c TopazConfig) LogValue() slog.Value { return slog.StringValue(c.String()) }
