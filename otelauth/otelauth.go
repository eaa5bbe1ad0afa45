// Package otelauth reports what oidcauth does through OpenTelemetry:
// metrics of logins, sessions, refreshes, back-channel logouts and
// authorization decisions, and a span for every call to the identity
// provider or the authorizer. It is a module of its own, so that
// OpenTelemetry never enters the dependencies of an app that does not
// use it.
//
// Give the observer to the Auth and, if the authorizer should report to
// another one, to the Authorizer:
//
//	obs := otelauth.New() // the global providers; see WithMeterProvider
//	auth, err := oidcauth.New(ctx, cfg, oidcauth.WithObserver(obs))
//	az, err := oidcauth.NewAuthorizer(client, oidcauth.AuthorizerConfig{Auth: auth, ...}) // Auth's observer by default
//
// and export with whatever the app's OpenTelemetry setup uses (for
// example go.opentelemetry.io/otel/exporters/prometheus).
//
// # Metrics
//
// Counters and histograms, durations in seconds:
//
//	oidcauth.login.started                 {login}    logins begun (a browser sent to the IdP)
//	oidcauth.login.completed               {login}    callbacks: oidcauth.outcome (success, failure), error.type (the failure's code)
//	oidcauth.login.duration                s          the callback's duration, same attributes
//	oidcauth.session.loaded                {request}  oidcauth.session.store (cookie, redis, gorilla, bearer, custom), oidcauth.outcome (user, anonymous, invalid, error)
//	oidcauth.refresh.completed             {refresh}  oidcauth.outcome (success, ended, error)
//	oidcauth.backchannel_logout.received   {logout}   oidcauth.outcome (success, invalid, error)
//	oidcauth.idp.request.duration          s          oidcauth.operation (discovery, token, userinfo, refresh, introspection), error.type on failure
//	oidcauth.authorizer.decisions          {decision} oidcauth.outcome (allowed, denied, error), oidcauth.decision.cached
//	oidcauth.authorizer.decision.duration  s          the whole decision, cache hits included; same attributes
//	oidcauth.authorizer.request.duration   s          calls to the authorizer (cache misses); error.type on failure
//
// error.type is a small set of values: "timeout", "canceled", a gRPC code
// such as "Unavailable", an HTTP status such as "400" for an IdP that
// refused a token request, "transport" for one that could not be reached,
// "_OTHER" otherwise; for a failed login it is oidcauth's error code
// (invalid_state, invalid_id_token, idp_error, ...).
//
// # Traces
//
// Each call to the identity provider or the authorizer is a client span
// named after the call ("oidcauth.token", "oidcauth.userinfo",
// "oidcauth.refresh", "oidcauth.discovery", "oidcauth.introspection",
// "oidcauth.authorize"), ended with an error status and error.type when it
// fails. Its context reaches the HTTP or gRPC client, so the spans of
// otelhttp or otelgrpc instrumentation nest under it. When the request's
// context holds a recording span (the app's otelhttp handler, say), what
// happened is added to it as span events ("oidcauth.login_failed",
// "oidcauth.decision" with the policy path, ...).
//
// No attribute holds a token, code, cookie, secret, identity or resource
// value, nor an error's message: only the fixed values above and, on span
// events of decisions, the policy path.
package otelauth

import (
	"context"
	"errors"
	"maps"
	"net"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/oauth2"
	grpccodes "google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/oidcauth/oidcauth"
)

// ScopeName is the instrumentation scope of the meter and tracer that New
// uses.
const ScopeName = "github.com/oidcauth/oidcauth/otelauth"

// The attributes of the metrics and spans.
const (
	// OutcomeKey is what became of a login, session lookup, refresh,
	// back-channel logout or decision.
	OutcomeKey = attribute.Key("oidcauth.outcome")
	// StoreKey names the session store: cookie, redis, gorilla, bearer or
	// custom.
	StoreKey = attribute.Key("oidcauth.session.store")
	// CachedKey tells whether a decision came from oidcauth's cache.
	CachedKey = attribute.Key("oidcauth.decision.cached")
	// OperationKey names a call to the identity provider or the
	// authorizer (an oidcauth.Op).
	OperationKey = attribute.Key("oidcauth.operation")
	// PolicyPathKey is the policy path of a decision, on span events only
	// (its values are as many as the app's routes, or more).
	PolicyPathKey = attribute.Key("oidcauth.policy.path")
	// ErrorTypeKey is OpenTelemetry's error.type: the class of a failure.
	ErrorTypeKey = attribute.Key("error.type")
)

// Option configures New.
type Option func(*config)

type config struct {
	mp metric.MeterProvider
	tp trace.TracerProvider
}

// WithMeterProvider makes New create its instruments with mp rather than
// the global otel.GetMeterProvider().
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(c *config) { c.mp = mp }
}

// WithTracerProvider makes New trace with tp rather than the global
// otel.GetTracerProvider().
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *config) { c.tp = tp }
}

// Histogram buckets, in seconds: requests over the network, and decisions
// (mostly cache hits, of a few microseconds).
var (
	requestBuckets  = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}
	decisionBuckets = []float64{0.00001, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}
)

// observer is the oidcauth.Observer that New returns.
type observer struct {
	tracer trace.Tracer

	loginStarted     metric.Int64Counter
	loginCompleted   metric.Int64Counter
	loginDuration    metric.Float64Histogram
	sessionLoaded    metric.Int64Counter
	refreshes        metric.Int64Counter
	logouts          metric.Int64Counter
	decisions        metric.Int64Counter
	decisionDuration metric.Float64Histogram
	idpDuration      metric.Float64Histogram
	authzDuration    metric.Float64Histogram

	ops    map[oidcauth.Op]*opInfo // the known calls; read-only after New
	events attrCache[eventKey]
	fails  attrCache[failKey]

	// The attributes of the events of every request, for the values
	// oidcauth sends, found without hashing.
	sessionAttrs  [len(sessionStores)][len(sessionOutcomes)]*attrs
	decisionAttrs [len(decisionOutcomes)][2]*attrs
}

// The values of the events of every request that oidcauth sends.
var (
	sessionStores    = [...]string{"cookie", "redis", "gorilla", "bearer", "custom"}
	sessionOutcomes  = [...]string{"user", "anonymous", "invalid", "error"}
	decisionOutcomes = [...]string{"allowed", "denied", "error"}
)

// index returns the index of v in values, or -1.
func index(values []string, v string) int {
	for i, s := range values {
		if s == v {
			return i
		}
	}
	return -1
}

// opInfo is what Start needs about a call, worked out once.
type opInfo struct {
	span  string
	start []trace.SpanStartOption
	hist  metric.Float64Histogram
	ok    *attrs // the attributes of a success
}

// eventKey is what sets the attributes of an Event's measurements.
type eventKey struct {
	kind           oidcauth.EventKind
	outcome, store string
	cached         bool
}

// failKey is what sets the attributes of a failed call's duration.
type failKey struct {
	op      oidcauth.Op
	errType string
}

var eventNames = func() (names [16]string) {
	for k := range names {
		names[k] = "oidcauth." + oidcauth.EventKind(k).String()
	}
	return names
}()

// New returns an oidcauth.Observer that records metrics and spans with
// OpenTelemetry, through the global meter and tracer providers unless
// WithMeterProvider or WithTracerProvider say otherwise. It creates its
// instruments once, here; recording an Event allocates nothing. Give it to
// oidcauth.WithObserver and, where needed, AuthorizerConfig.Observer.
func New(opts ...Option) oidcauth.Observer {
	c := config{}
	for _, opt := range opts {
		opt(&c)
	}
	if c.mp == nil {
		c.mp = otel.GetMeterProvider()
	}
	if c.tp == nil {
		c.tp = otel.GetTracerProvider()
	}
	m := c.mp.Meter(ScopeName)
	o := &observer{tracer: c.tp.Tracer(ScopeName)}

	counter := func(name, unit, desc string) metric.Int64Counter {
		i, err := m.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		if err != nil {
			otel.Handle(err) // i is still usable
		}
		return i
	}
	histogram := func(name, desc string, buckets []float64) metric.Float64Histogram {
		i, err := m.Float64Histogram(name, metric.WithUnit("s"), metric.WithDescription(desc),
			metric.WithExplicitBucketBoundaries(buckets...))
		if err != nil {
			otel.Handle(err)
		}
		return i
	}
	o.loginStarted = counter("oidcauth.login.started", "{login}", "Logins begun: browsers sent to the identity provider.")
	o.loginCompleted = counter("oidcauth.login.completed", "{login}", "Login callbacks, by outcome and, for failures, error type.")
	o.loginDuration = histogram("oidcauth.login.duration", "Duration of login callbacks (code redemption, ID token checks, userinfo, session).", requestBuckets)
	o.sessionLoaded = counter("oidcauth.session.loaded", "{request}", "Requests whose session was looked up, by store and outcome.")
	o.refreshes = counter("oidcauth.refresh.completed", "{refresh}", "Token refreshes, by outcome.")
	o.logouts = counter("oidcauth.backchannel_logout.received", "{logout}", "Back-channel logout tokens received, by outcome.")
	o.decisions = counter("oidcauth.authorizer.decisions", "{decision}", "Authorization decisions, by outcome and whether cached.")
	o.decisionDuration = histogram("oidcauth.authorizer.decision.duration", "Duration of authorization decisions, cache hits included.", decisionBuckets)
	o.idpDuration = histogram("oidcauth.idp.request.duration", "Duration of calls to the identity provider, by operation.", requestBuckets)
	o.authzDuration = histogram("oidcauth.authorizer.request.duration", "Duration of calls to the authorizer (decision cache misses).", requestBuckets)

	o.events.build = o.eventAttrs
	o.fails.build = o.failAttrs
	for i, store := range sessionStores {
		for j, outcome := range sessionOutcomes {
			o.sessionAttrs[i][j] = o.events.get(eventKey{kind: oidcauth.EventSessionLoaded, outcome: outcome, store: store})
		}
	}
	for i, outcome := range decisionOutcomes {
		for j, cached := range []bool{false, true} {
			o.decisionAttrs[i][j] = o.events.get(eventKey{kind: oidcauth.EventDecision, outcome: outcome, cached: cached})
		}
	}
	o.ops = make(map[oidcauth.Op]*opInfo)
	for _, op := range []oidcauth.Op{oidcauth.OpDiscovery, oidcauth.OpToken, oidcauth.OpUserinfo,
		oidcauth.OpRefresh, oidcauth.OpIntrospection, oidcauth.OpAuthorize} {
		o.ops[op] = o.newOpInfo(op)
	}
	return o
}

func (o *observer) newOpInfo(op oidcauth.Op) *opInfo {
	info := &opInfo{
		span: "oidcauth." + string(op),
		start: []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(OperationKey.String(string(op)))},
		hist: o.idpDuration,
	}
	if op == oidcauth.OpAuthorize {
		info.hist = o.authzDuration
		info.ok = newAttrs()
	} else {
		info.ok = newAttrs(OperationKey.String(string(op)))
	}
	return info
}

// Event records e: it adds to the counters and histograms of its kind
// and, when ctx holds a recording span, adds e to it as a span event.
func (o *observer) Event(ctx context.Context, e oidcauth.Event) {
	var a *attrs
	switch e.Kind {
	case oidcauth.EventLoginStarted:
		o.loginStarted.Add(ctx, 1)
	case oidcauth.EventLoginSucceeded:
		a = o.events.get(eventKey{kind: e.Kind})
		o.loginCompleted.Add(ctx, 1, a.add...)
		o.loginDuration.Record(ctx, e.Duration.Seconds(), a.rec...)
	case oidcauth.EventLoginFailed:
		a = o.events.get(eventKey{kind: e.Kind, outcome: e.Outcome})
		o.loginCompleted.Add(ctx, 1, a.add...)
		o.loginDuration.Record(ctx, e.Duration.Seconds(), a.rec...)
	case oidcauth.EventSessionLoaded:
		if i, j := index(sessionStores[:], e.Store), index(sessionOutcomes[:], e.Outcome); i >= 0 && j >= 0 {
			a = o.sessionAttrs[i][j]
		} else {
			a = o.events.get(eventKey{kind: e.Kind, outcome: e.Outcome, store: e.Store})
		}
		o.sessionLoaded.Add(ctx, 1, a.add...)
	case oidcauth.EventRefresh:
		a = o.events.get(eventKey{kind: e.Kind, outcome: e.Outcome})
		o.refreshes.Add(ctx, 1, a.add...)
	case oidcauth.EventBackchannelLogout:
		a = o.events.get(eventKey{kind: e.Kind, outcome: e.Outcome})
		o.logouts.Add(ctx, 1, a.add...)
	case oidcauth.EventDecision:
		if i := index(decisionOutcomes[:], e.Outcome); i >= 0 {
			a = o.decisionAttrs[i][b2i(e.Cached)]
		} else {
			a = o.events.get(eventKey{kind: e.Kind, outcome: e.Outcome, cached: e.Cached})
		}
		o.decisions.Add(ctx, 1, a.add...)
		o.decisionDuration.Record(ctx, e.Duration.Seconds(), a.rec...)
	default:
		return // a kind this version does not know
	}
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		o.spanEvent(span, e, a)
	}
}

// spanEvent adds e to span; only spans that record pay for it.
func (o *observer) spanEvent(span trace.Span, e oidcauth.Event, a *attrs) {
	kvs := make([]attribute.KeyValue, 0, 4)
	if a != nil {
		kvs = append(kvs, a.kvs...)
	}
	if e.Kind == oidcauth.EventDecision && e.PolicyPath != "" {
		kvs = append(kvs, PolicyPathKey.String(e.PolicyPath))
	}
	span.AddEvent(eventNames[int(e.Kind)%len(eventNames)], trace.WithAttributes(kvs...))
}

// eventAttrs returns the attributes of the measurements of an Event.
func (o *observer) eventAttrs(k eventKey) []attribute.KeyValue {
	switch k.kind {
	case oidcauth.EventLoginSucceeded:
		return []attribute.KeyValue{OutcomeKey.String("success")}
	case oidcauth.EventLoginFailed:
		return []attribute.KeyValue{OutcomeKey.String("failure"), ErrorTypeKey.String(orOther(k.outcome))}
	case oidcauth.EventSessionLoaded:
		return []attribute.KeyValue{StoreKey.String(k.store), OutcomeKey.String(k.outcome)}
	case oidcauth.EventDecision:
		return []attribute.KeyValue{OutcomeKey.String(k.outcome), CachedKey.Bool(k.cached)}
	}
	return []attribute.KeyValue{OutcomeKey.String(k.outcome)}
}

// failAttrs returns the attributes of a failed call's duration.
func (o *observer) failAttrs(k failKey) []attribute.KeyValue {
	if k.op == oidcauth.OpAuthorize {
		return []attribute.KeyValue{ErrorTypeKey.String(k.errType)}
	}
	return []attribute.KeyValue{OperationKey.String(string(k.op)), ErrorTypeKey.String(k.errType)}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func orOther(s string) string {
	if s == "" {
		return "_OTHER"
	}
	return s
}

// Start opens a client span for the call, named "oidcauth." + op, in ctx,
// and returns the context holding it (for the HTTP or gRPC client) and
// the function that ends it: that records the call's duration and, for
// an error, sets the span's status and the error type (never the error's
// message, which may quote what the IdP or authorizer sent).
func (o *observer) Start(ctx context.Context, op oidcauth.Op) (context.Context, func(error)) {
	info := o.ops[op]
	if info == nil {
		info = o.newOpInfo(op) // an Op this version does not know
	}
	ctx, span := o.tracer.Start(ctx, info.span, info.start...)
	start := time.Now()
	ended := false
	return ctx, func(err error) {
		if ended {
			return
		}
		ended = true
		d := time.Since(start).Seconds()
		if err == nil {
			info.hist.Record(ctx, d, info.ok.rec...)
			span.End()
			return
		}
		et := errorType(err)
		info.hist.Record(ctx, d, o.fails.get(failKey{op, et}).rec...)
		span.SetAttributes(ErrorTypeKey.String(et))
		span.SetStatus(codes.Error, et)
		span.End()
	}
}

// errorType classifies err into one of a few values, safe as an attribute:
// it never quotes the error's message.
func errorType(err error) string {
	var grpcErr interface{ GRPCStatus() *status.Status }
	var retrieve *oauth2.RetrieveError
	var netErr net.Error
	var urlErr *url.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.As(err, &grpcErr):
		switch c := grpcErr.GRPCStatus().Code(); c {
		case grpccodes.DeadlineExceeded:
			return "timeout"
		case grpccodes.Canceled:
			return "canceled"
		default:
			return c.String()
		}
	case errors.As(err, &retrieve) && retrieve.Response != nil:
		return strconv.Itoa(retrieve.Response.StatusCode)
	case errors.As(err, &netErr) && netErr.Timeout():
		return "timeout"
	case errors.As(err, &urlErr), errors.As(err, &netErr):
		return "transport"
	}
	return "_OTHER"
}

// attrs is one attribute set, ready to pass to Add and Record without
// allocating.
type attrs struct {
	kvs []attribute.KeyValue
	add []metric.AddOption
	rec []metric.RecordOption
}

func newAttrs(kvs ...attribute.KeyValue) *attrs {
	a := &attrs{kvs: kvs}
	if len(kvs) > 0 {
		opt := metric.WithAttributeSet(attribute.NewSet(kvs...))
		a.add, a.rec = []metric.AddOption{opt}, []metric.RecordOption{opt}
	}
	return a
}

// maxCached bounds an attrCache: the values come from oidcauth and are
// few, but a new version of it, or a wrapper, could send more.
const maxCached = 256

// attrCache keeps the attribute sets of the keys seen, in a map that is
// copied on write: a lookup takes no lock and allocates nothing.
type attrCache[K comparable] struct {
	m     atomic.Pointer[map[K]*attrs]
	mu    sync.Mutex
	build func(K) []attribute.KeyValue
}

func (c *attrCache[K]) get(k K) *attrs {
	if m := c.m.Load(); m != nil {
		if a, ok := (*m)[k]; ok {
			return a
		}
	}
	return c.add(k)
}

func (c *attrCache[K]) add(k K) *attrs {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.m.Load()
	if old != nil {
		if a, ok := (*old)[k]; ok {
			return a
		}
	}
	a := newAttrs(c.build(k)...)
	if old != nil && len(*old) >= maxCached {
		return a // not kept: allocates on every use, but bounded memory
	}
	m := make(map[K]*attrs)
	if old != nil {
		m = maps.Clone(*old)
	}
	m[k] = a
	c.m.Store(&m)
	return a
}
