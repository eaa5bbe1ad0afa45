package otelauth_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	authorizer "github.com/aserto-dev/go-authorizer/aserto/authorizer/v2"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"

	"github.com/oidcauth/oidcauth"
	"github.com/oidcauth/oidcauth/oidcauthtest"
	"github.com/oidcauth/oidcauth/otelauth"
)

// telemetry is an in-memory OpenTelemetry: a manual metric reader and a
// span recorder behind the observer under test.
type telemetry struct {
	reader *sdkmetric.ManualReader
	spans  *tracetest.SpanRecorder
	tp     *sdktrace.TracerProvider
	obs    oidcauth.Observer
}

func newTelemetry(t testing.TB) *telemetry {
	tm := &telemetry{reader: sdkmetric.NewManualReader(), spans: tracetest.NewSpanRecorder()}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(tm.reader))
	tm.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(tm.spans))
	t.Cleanup(func() {
		_ = mp.Shutdown(context.Background())
		_ = tm.tp.Shutdown(context.Background())
	})
	tm.obs = otelauth.New(otelauth.WithMeterProvider(mp), otelauth.WithTracerProvider(tm.tp))
	return tm
}

// metric is one collected instrument: its unit and, per attribute set
// ("k=v,k=v", sorted), the counter's sum or the histogram's count.
type metric struct {
	unit   string
	points map[string]float64
	sums   map[string]float64 // histograms: the sum of the recorded values
}

func (tm *telemetry) collect(t *testing.T) map[string]metric {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := tm.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := make(map[string]metric)
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != otelauth.ScopeName {
			t.Errorf("scope %q", sm.Scope.Name)
		}
		for _, m := range sm.Metrics {
			got := metric{unit: m.Unit, points: make(map[string]float64), sums: make(map[string]float64)}
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				if !d.IsMonotonic {
					t.Errorf("%s is not monotonic", m.Name)
				}
				for _, p := range d.DataPoints {
					got.points[encode(p.Attributes)] = float64(p.Value)
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					got.points[encode(p.Attributes)] = float64(p.Count)
					got.sums[encode(p.Attributes)] = p.Sum
				}
			default:
				t.Errorf("%s: unexpected data %T", m.Name, m.Data)
			}
			out[m.Name] = got
		}
	}
	return out
}

func encode(s attribute.Set) string { return s.Encoded(attribute.DefaultEncoder()) }

// values lists every attribute value, span name, event name and status
// description the telemetry holds, to look for secrets in.
func (tm *telemetry) values(t *testing.T) []string {
	t.Helper()
	var out []string
	kvs := func(kvs []attribute.KeyValue) {
		for _, kv := range kvs {
			out = append(out, string(kv.Key)+"="+kv.Value.String())
		}
	}
	var rm metricdata.ResourceMetrics
	if err := tm.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					kvs(p.Attributes.ToSlice())
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					kvs(p.Attributes.ToSlice())
				}
			}
		}
	}
	for _, s := range tm.spans.Ended() {
		out = append(out, s.Name(), s.Status().Description)
		kvs(s.Attributes())
		for _, e := range s.Events() {
			out = append(out, e.Name)
			kvs(e.Attributes)
		}
	}
	return out
}

// spanNames lists the ended spans as "name" or "name!description" when
// they failed.
func (tm *telemetry) spanNames() []string {
	var out []string
	for _, s := range tm.spans.Ended() {
		if s.Name() == "request" {
			continue
		}
		if s.SpanKind() != trace.SpanKindClient {
			out = append(out, s.Name()+" (not a client span)")
		}
		name := s.Name()
		if s.Status().Code == codes.Error {
			name += "!" + s.Status().Description
		}
		out = append(out, name)
	}
	return out
}

// spy records the span each call to the IdP or the authorizer was made
// in: the context Observer.Start returned.
type spy struct {
	mu    sync.Mutex
	calls map[string][]trace.SpanID // URL path or "authorize"
}

func (s *spy) record(what string, ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.calls == nil {
		s.calls = make(map[string][]trace.SpanID)
	}
	s.calls[what] = append(s.calls[what], trace.SpanContextFromContext(ctx).SpanID())
}

func (s *spy) RoundTrip(r *http.Request) (*http.Response, error) {
	s.record(r.URL.Path, r.Context())
	return http.DefaultTransport.RoundTrip(r)
}

// spyClient is an authorizer client that records its calls' spans.
type spyClient struct {
	oidcauth.AuthorizerClient
	spy *spy
}

func (c spyClient) Is(ctx context.Context, in *authorizer.IsRequest, opts ...grpc.CallOption) (*authorizer.IsResponse, error) {
	c.spy.record("authorize", ctx)
	return c.AuthorizerClient.Is(ctx, in, opts...)
}

func get(h http.Handler, ctx context.Context, target string, cookies []*http.Cookie) *httptest.ResponseRecorder {
	req := httptest.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	for _, c := range cookies {
		req.AddCookie(c)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func postLogout(h http.Handler, token string) int {
	form := url.Values{"logout_token": {token}}
	req := httptest.NewRequest(http.MethodPost, "/backchannel-logout", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code
}

// TestObserver drives a real login, a failed one, a request with the
// session and a token refresh, authorization decisions and a back-channel
// logout through oidcauth, and checks the metrics and spans they leave.
func TestObserver(t *testing.T) {
	tm := newTelemetry(t)
	calls := new(spy)
	// An access token that lives 10 s is renewed by Auth.Token at once.
	p := oidcauthtest.NewProvider(t, oidcauthtest.WithTokenLifetimes(10*time.Second, 0))
	secrets := map[string]string{}
	auth := oidcauthtest.NewAuth(t, oidcauthtest.WithProvider(p),
		oidcauthtest.WithConfig(func(c *oidcauth.Config) {
			c.Scopes = []string{"openid", "email", "profile", "offline_access"}
			secrets["client secret"] = c.ClientSecret
			secrets["session secret"] = c.SessionSecret
		}),
		oidcauthtest.WithOptions(oidcauth.WithObserver(tm.obs),
			oidcauth.WithHTTPClient(&http.Client{Transport: calls, Timeout: 10 * time.Second})))

	// The app: / shows the session's user and renews its access token;
	// /documents/{id} is authorized by a fake Topaz.
	audit := new(bytes.Buffer)
	fake := oidcauthtest.NewAuthorizer(func(id oidcauth.Identity, path string, resource map[string]any) bool {
		return id.Value == "user-alice" && resource["id"] == "1"
	})
	az, err := oidcauth.NewAuthorizer(spyClient{fake, calls}, oidcauth.AuthorizerConfig{
		PolicyRoot: "docs", Auth: auth, AuditLog: slog.New(slog.NewTextHandler(audit, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		sess, err := auth.Session(r)
		if err != nil || sess == nil {
			http.Error(w, "anonymous", http.StatusUnauthorized)
			return
		}
		secrets["ID token"], secrets["access token"], secrets["refresh token"] = sess.IDToken, sess.AccessToken, sess.RefreshToken
		tok, err := auth.Token(w, r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		secrets["renewed access token"] = tok.AccessToken
		fmt.Fprint(w, sess.Subject)
	})
	mux.Handle("GET /documents/{id}", az.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "document ", r.PathValue("id"))
	})))
	app := auth.Handler(mux)

	// A login, then a request with its session, inside a span of the
	// app's (as otelhttp would make), which renews the access token.
	session := oidcauthtest.Login(t, auth, "alice")
	for i, c := range session {
		secrets[fmt.Sprintf("session cookie %d", i)] = c.Value
	}
	ctx, request := tm.tp.Tracer("test").Start(context.Background(), "request")
	if rec := get(app, ctx, "/", session); rec.Code != http.StatusOK || rec.Body.String() != "user-alice" {
		t.Fatalf("GET / as alice: %d %s", rec.Code, rec.Body)
	}
	request.End()
	if secrets["renewed access token"] == secrets["access token"] || secrets["refresh token"] == "" {
		t.Fatal("the access token was not renewed")
	}
	if rec := get(app, context.Background(), "/", nil); rec.Code != http.StatusUnauthorized {
		t.Fatalf("GET / anonymous: %d", rec.Code)
	}

	// Two failed logins: an ID token that does not verify, an IdP down.
	p.Misbehave(oidcauthtest.Misbehavior{InvalidIDToken: true})
	if resp := oidcauthtest.TryLogin(t, auth, "bob"); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("login with a bad ID token: %s", resp.Status)
	}
	p.Misbehave(oidcauthtest.Misbehavior{TokenStatus: http.StatusServiceUnavailable})
	if resp := oidcauthtest.TryLogin(t, auth, "bob"); resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("login with the IdP down: %s", resp.Status)
	}
	p.Misbehave(oidcauthtest.Misbehavior{})

	// Decisions: allowed, allowed from the cache, denied, and an
	// authorizer that is down. The second is in a span of the app's.
	ctx, request = tm.tp.Tracer("test").Start(context.Background(), "request")
	for _, c := range []struct {
		ctx    context.Context
		doc    string
		status int
	}{
		{context.Background(), "1", http.StatusOK},
		{ctx, "1", http.StatusOK},
		{context.Background(), "2", http.StatusForbidden},
		{context.Background(), "3", http.StatusServiceUnavailable},
	} {
		fake.Fail(c.doc == "3")
		if rec := get(app, c.ctx, "/documents/"+c.doc, session); rec.Code != c.status {
			t.Fatalf("GET /documents/%s: %d, want %d", c.doc, rec.Code, c.status)
		}
	}
	request.End()
	fake.Fail(false)
	if n := strings.Count(audit.String(), "authorization decision"); n != 4 {
		t.Errorf("%d lines in the audit log, want 4:\n%s", n, audit)
	}

	// Back-channel logout: garbage, then a real logout token. Alice's
	// session is over.
	if code := postLogout(app, "garbage"); code != http.StatusBadRequest {
		t.Fatalf("a garbage logout token: %d", code)
	}
	secrets["logout token"] = oidcauthtest.LogoutToken(t, auth, "alice")
	if code := postLogout(app, secrets["logout token"]); code != http.StatusOK {
		t.Fatalf("a logout token: %d", code)
	}
	if rec := get(app, context.Background(), "/", session); rec.Code != http.StatusUnauthorized {
		t.Fatalf("GET / after the back-channel logout: %d", rec.Code)
	}

	// The metrics.
	const success, failure = "oidcauth.outcome=success", "oidcauth.outcome=failure"
	want := map[string]metric{
		"oidcauth.login.started": {"{login}", map[string]float64{"": 3}, nil},
		"oidcauth.login.completed": {"{login}", map[string]float64{
			success:                                  1,
			"error.type=invalid_id_token," + failure: 1,
			"error.type=idp_unavailable," + failure:  1,
		}, nil},
		"oidcauth.login.duration": {"s", map[string]float64{
			success:                                  1,
			"error.type=invalid_id_token," + failure: 1,
			"error.type=idp_unavailable," + failure:  1,
		}, nil},
		"oidcauth.session.loaded": {"{request}", map[string]float64{
			"oidcauth.outcome=user,oidcauth.session.store=cookie": 5,
			// One: a request without a session cookie has nothing to load
			// and is not counted.
			"oidcauth.outcome=anonymous,oidcauth.session.store=cookie": 1,
		}, nil},
		"oidcauth.refresh.completed": {"{refresh}", map[string]float64{success: 1}, nil},
		"oidcauth.backchannel_logout.received": {"{logout}", map[string]float64{
			success: 1, "oidcauth.outcome=invalid": 1,
		}, nil},
		"oidcauth.idp.request.duration": {"s", map[string]float64{
			"oidcauth.operation=discovery":            1,
			"oidcauth.operation=token":                2,
			"error.type=503,oidcauth.operation=token": 1,
			"oidcauth.operation=refresh":              1,
		}, nil},
		"oidcauth.authorizer.decisions": {"{decision}", map[string]float64{
			"oidcauth.decision.cached=false,oidcauth.outcome=allowed": 1,
			"oidcauth.decision.cached=true,oidcauth.outcome=allowed":  1,
			"oidcauth.decision.cached=false,oidcauth.outcome=denied":  1,
			"oidcauth.decision.cached=false,oidcauth.outcome=error":   1,
		}, nil},
		"oidcauth.authorizer.decision.duration": {"s", map[string]float64{
			"oidcauth.decision.cached=false,oidcauth.outcome=allowed": 1,
			"oidcauth.decision.cached=true,oidcauth.outcome=allowed":  1,
			"oidcauth.decision.cached=false,oidcauth.outcome=denied":  1,
			"oidcauth.decision.cached=false,oidcauth.outcome=error":   1,
		}, nil},
		"oidcauth.authorizer.request.duration": {"s", map[string]float64{
			"":                       2,
			"error.type=Unavailable": 1,
		}, nil},
	}
	got := tm.collect(t)
	for _, name := range slices.Sorted(maps.Keys(want)) {
		g, w := got[name], want[name]
		if g.unit != w.unit || !maps.Equal(g.points, w.points) {
			t.Errorf("%s:\n got %s %v\nwant %s %v", name, g.unit, g.points, w.unit, w.points)
		}
		for attrs, sum := range g.sums {
			if sum <= 0 || sum > 30 {
				t.Errorf("%s{%s}: %g seconds in all", name, attrs, sum)
			}
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("unexpected metric %s: %v", name, got[name].points)
		}
	}

	// The spans, each the parent of its HTTP or gRPC call.
	wantSpans := []string{"oidcauth.discovery", "oidcauth.token", "oidcauth.refresh", "oidcauth.token",
		"oidcauth.token!503", "oidcauth.authorize", "oidcauth.authorize", "oidcauth.authorize!Unavailable"}
	if got := tm.spanNames(); !slices.Equal(got, wantSpans) {
		t.Errorf("spans %q,\nwant %q", got, wantSpans)
	}
	byName := make(map[string][]sdktrace.ReadOnlySpan)
	for _, s := range tm.spans.Ended() {
		byName[s.Name()] = append(byName[s.Name()], s)
	}
	for name, what := range map[string]string{
		"oidcauth.discovery": "/.well-known/openid-configuration", "oidcauth.token": "/token",
		"oidcauth.refresh": "/token", "oidcauth.authorize": "authorize",
	} {
		for _, s := range byName[name] {
			if !slices.Contains(calls.calls[what], s.SpanContext().SpanID()) {
				t.Errorf("%s: the call to %s was not made in its span", name, what)
			}
		}
	}
	failed := byName["oidcauth.authorize"][2]
	if !slices.Contains(failed.Attributes(), otelauth.ErrorTypeKey.String("Unavailable")) ||
		!slices.Contains(failed.Attributes(), otelauth.OperationKey.String("authorize")) {
		t.Errorf("a failed call's span has attributes %v", failed.Attributes())
	}

	// The app's spans got what happened as events, with the policy path.
	requests := byName["request"]
	if len(requests) != 2 {
		t.Fatalf("%d request spans", len(requests))
	}
	if s := byName["oidcauth.refresh"][0]; s.Parent().SpanID() != requests[0].SpanContext().SpanID() {
		t.Error("the refresh span is not a child of the request's")
	}
	var events []string
	for _, s := range requests {
		for _, e := range s.Events() {
			var kvs []string
			for _, kv := range e.Attributes {
				kvs = append(kvs, string(kv.Key)+"="+kv.Value.String())
			}
			events = append(events, e.Name+" "+strings.Join(kvs, ","))
		}
	}
	wantEvents := []string{
		"oidcauth.session_loaded oidcauth.outcome=user,oidcauth.session.store=cookie",
		"oidcauth.refresh oidcauth.outcome=success",
		"oidcauth.session_loaded oidcauth.outcome=user,oidcauth.session.store=cookie",
		"oidcauth.decision oidcauth.decision.cached=true,oidcauth.outcome=allowed,oidcauth.policy.path=docs.GET.documents.__id",
	}
	if !slices.Equal(events, wantEvents) {
		t.Errorf("span events:\n%s\nwant:\n%s", strings.Join(events, "\n"), strings.Join(wantEvents, "\n"))
	}

	// Nothing secret anywhere.
	values := tm.values(t)
	if len(values) < 50 {
		t.Fatalf("only %d values to check", len(values))
	}
	for what, secret := range secrets {
		if len(secret) < 16 {
			t.Errorf("the %s is %q: too short to look for", what, secret)
			continue
		}
		for _, v := range values {
			if strings.Contains(v, secret) || strings.Contains(v, secret[:16]) {
				t.Errorf("the %s is in the telemetry: %s", what, v)
			}
		}
	}
	for _, v := range values {
		if strings.Contains(v, "user-alice") || strings.Contains(v, "http") {
			t.Errorf("an identity or a URL in the telemetry: %s", v)
		}
	}
}

// TestErrorType checks how failed calls are classified: never with the
// error's message.
func TestErrorType(t *testing.T) {
	tm := newTelemetry(t)
	for _, err := range []error{
		context.DeadlineExceeded,
		fmt.Errorf("oops: %w", context.Canceled),
		&url.Error{Op: "Post", URL: "https://idp/token?secret=s3cr3t", Err: errors.New("connection refused")},
		&url.Error{Op: "Post", URL: "https://idp/token", Err: timeoutError{}},
		errors.New("something else, with a s3cr3t"),
	} {
		_, end := tm.obs.Start(context.Background(), oidcauth.OpToken)
		end(err)
		end(err) // a second end is ignored
	}
	_, end := tm.obs.Start(context.Background(), oidcauth.Op("future"))
	end(nil)
	tm.obs.Event(context.Background(), oidcauth.Event{Kind: 200}) // unknown: ignored
	want := map[string]float64{
		"error.type=timeout,oidcauth.operation=token":   2,
		"error.type=canceled,oidcauth.operation=token":  1,
		"error.type=transport,oidcauth.operation=token": 1,
		"error.type=_OTHER,oidcauth.operation=token":    1,
		"oidcauth.operation=future":                     1,
	}
	if got := tm.collect(t)["oidcauth.idp.request.duration"].points; !maps.Equal(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
	for _, v := range tm.values(t) {
		if strings.Contains(v, "s3cr3t") || strings.Contains(v, "refused") {
			t.Errorf("an error's message in the telemetry: %s", v)
		}
	}
}

type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

// TestEventAllocatesNothing: the events of every request (a session
// loaded, a decision) cost no allocation once their attributes are known.
func TestEventAllocatesNothing(t *testing.T) {
	tm := newTelemetry(t)
	ctx := context.Background()
	for _, e := range []oidcauth.Event{
		{Kind: oidcauth.EventSessionLoaded, Store: "cookie", Outcome: "user"},
		{Kind: oidcauth.EventDecision, Outcome: "allowed", Cached: true, PolicyPath: "docs.GET.x", Duration: time.Microsecond},
		{Kind: oidcauth.EventLoginSucceeded, Duration: time.Second},
		{Kind: oidcauth.EventLoginStarted},
		{Kind: oidcauth.EventRefresh, Outcome: "success"},
	} {
		tm.obs.Event(ctx, e)
		if n := testing.AllocsPerRun(200, func() { tm.obs.Event(ctx, e) }); n != 0 {
			t.Errorf("%s: %.1f allocations", e.Kind, n)
		}
	}
}
