package oidcauth

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	aserto "github.com/aserto-dev/go-aserto"
	authorizer "github.com/aserto-dev/go-authorizer/aserto/authorizer/v2"
	"github.com/aserto-dev/go-authorizer/aserto/authorizer/v2/api"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/oidcauth/oidcauth/internal/devidp"
)

// fakeTopaz is a func-based AuthorizerClient that records its calls.
type fakeTopaz struct {
	mu    sync.Mutex
	reqs  []*authorizer.IsRequest
	calls atomic.Int64
	is    func(ctx context.Context, req *authorizer.IsRequest) (*authorizer.IsResponse, error)
}

func (f *fakeTopaz) Is(ctx context.Context, req *authorizer.IsRequest, _ ...grpc.CallOption) (*authorizer.IsResponse, error) {
	f.calls.Add(1)
	f.mu.Lock()
	f.reqs = append(f.reqs, req)
	f.mu.Unlock()
	return f.is(ctx, req)
}

func (f *fakeTopaz) last() *authorizer.IsRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.reqs) == 0 {
		return nil
	}
	return f.reqs[len(f.reqs)-1]
}

func decision(allowed bool) *authorizer.IsResponse {
	return &authorizer.IsResponse{Decisions: []*authorizer.Decision{{Decision: "allowed", Is: allowed}}}
}

// allowUsers allows the listed subjects and denies everyone else.
func allowUsers(subs ...string) *fakeTopaz {
	return &fakeTopaz{is: func(_ context.Context, req *authorizer.IsRequest) (*authorizer.IsResponse, error) {
		for _, s := range subs {
			if req.GetIdentityContext().GetIdentity() == s {
				return decision(true), nil
			}
		}
		return decision(false), nil
	}}
}

// testSessions is a SessionStore for authorization tests: the X-Test-User
// header names the signed-in subject, X-Test-Store: down makes it fail.
type testSessions struct{}

func (testSessions) Load(r *http.Request) (*Session, error) {
	if r.Header.Get("X-Test-Store") == "down" {
		return nil, errors.New("session store down")
	}
	sub := r.Header.Get("X-Test-User")
	if sub == "" {
		return nil, nil
	}
	return &Session{User: User{Subject: sub}, IDToken: "id-token-of-" + sub, ExpiresAt: time.Now().Add(time.Hour)}, nil
}
func (testSessions) Save(http.ResponseWriter, *http.Request, *Session) error { return nil }
func (testSessions) Delete(http.ResponseWriter, *http.Request) error         { return nil }

var (
	azAuthOnce sync.Once
	azAuth     *Auth
	azAuthErr  error
)

// testAuth is an Auth against the development provider, with sessions from
// testSessions. It is shared: New needs a provider, and RSA keys are slow.
func testAuth(t testing.TB) *Auth {
	t.Helper()
	azAuthOnce.Do(func() {
		var idp *devidp.Provider
		idp, azAuthErr = devidp.Listen("127.0.0.1:0", devidp.Options{
			Clients: []devidp.Client{{ID: "az-test", Secret: "az-secret", RedirectURIs: []string{"https://app.test/auth/callback"}}},
			Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
		if azAuthErr != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		azAuth, azAuthErr = New(ctx, Config{
			Issuer: idp.Issuer(), ClientID: "az-test", ClientSecret: "az-secret",
			RedirectURI: "https://app.test/auth/callback", SessionSecret: testSecret,
		}, WithSessionStore(testSessions{}), WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	})
	if azAuthErr != nil {
		t.Fatal(azAuthErr)
	}
	return azAuth
}

type azTest struct {
	t    *testing.T
	az   *Authorizer
	fake *fakeTopaz
	mux  *http.ServeMux
	logs *bytes.Buffer
	hits atomic.Int64 // requests that reached the app
}

// newAzTest builds an Authorizer over fake and an app with the routes the
// tests use.
func newAzTest(t *testing.T, fake *fakeTopaz, edit func(*AuthorizerConfig)) *azTest {
	t.Helper()
	at := &azTest{t: t, fake: fake, logs: new(bytes.Buffer)}
	cfg := AuthorizerConfig{
		PolicyRoot: "docs",
		Auth:       testAuth(t),
		Logger:     slog.New(slog.NewTextHandler(at.logs, nil)),
	}
	if edit != nil {
		edit(&cfg)
	}
	az, err := NewAuthorizer(fake, cfg)
	if err != nil {
		t.Fatal(err)
	}
	at.az = az
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		at.hits.Add(1)
		io.WriteString(w, "ok")
	})
	at.mux = http.NewServeMux()
	at.mux.Handle("GET /documents/{id}", az.Middleware(app))
	at.mux.Handle("GET /orgs/{org}/docs/{id}", az.Middleware(app))
	at.mux.Handle("PUT /documents/{id}", az.RequireRelation("document", "can_write", func(r *http.Request) string { return r.PathValue("id") })(app))
	at.mux.Handle("GET /reports", az.RequirePolicy("docs.reports.view")(app))
	at.mux.Handle("PUT /nothing", az.RequireRelation("document", "can_write", func(*http.Request) string { return "" })(app))
	return at
}

// do sends method target as user ("" for anonymous), with header pairs.
func (at *azTest) do(method, target, user string, header ...string) *httptest.ResponseRecorder {
	at.t.Helper()
	r := httptest.NewRequest(method, target, nil)
	if user != "" {
		r.Header.Set("X-Test-User", user)
	}
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	testAuth(at.t).Handler(at.mux).ServeHTTP(rec, r)
	return rec
}

func (at *azTest) want(rec *httptest.ResponseRecorder, status int) {
	at.t.Helper()
	if rec.Code != status {
		at.t.Fatalf("status %d, want %d; body %q; logs:\n%s", rec.Code, status, rec.Body.String(), at.logs)
	}
}

func structMap(t *testing.T, req *authorizer.IsRequest) map[string]any {
	t.Helper()
	b, err := req.GetResourceContext().MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestAuthorizerPolicyPath(t *testing.T) {
	for _, tc := range []struct {
		pattern, urlPath, method string
		want                     string
		names                    []string
	}{
		{pattern: "GET /documents/{id}", want: "docs.GET.documents.__id", names: []string{"id"}},
		{pattern: "GET /orgs/{org}/docs/{id}", want: "docs.GET.orgs.__org.docs.__id", names: []string{"id", "org"}},
		{pattern: "GET /files/{path...}", want: "docs.GET.files.__path", names: []string{"path"}},
		{pattern: "GET /{$}", want: "docs.GET"},
		{pattern: "GET /", want: "docs.GET"},
		{pattern: "GET /documents/{$}", want: "docs.GET.documents"},
		{pattern: "/reports", method: "POST", want: "docs.POST.reports"},
		{pattern: "/reports/{id}", method: "DELETE", want: "docs.DELETE.reports.__id", names: []string{"id"}},
		{pattern: "GET example.com/a/{id}", want: "docs.GET.a.__id", names: []string{"id"}},
		{pattern: "DELETE \t /x", want: "docs.DELETE.x"},
		{pattern: "GET /api/v1/user-profiles/{id}", want: "docs.GET.api.v1.user_profiles.__id", names: []string{"id"}},
		{pattern: "GET /2024/report.pdf", want: "docs.GET._2024.report_pdf"},
		{urlPath: "/documents/42", method: "GET", want: "docs.GET.documents._42"},
		{urlPath: "/a/{b}//c/", method: "PATCH", want: "docs.PATCH.a._b_.c"},
		{urlPath: "/", method: "GET", want: "docs.GET"},
	} {
		rt := parseRoute("docs", tc.pattern, tc.urlPath)
		if got := rt.policyPath(tc.method); got != tc.want {
			t.Errorf("%q %q: policy path %q, want %q", tc.pattern, tc.urlPath, got, tc.want)
		}
		if fmt.Sprint(rt.names) != fmt.Sprint(tc.names) {
			t.Errorf("%q: path values %v, want %v", tc.pattern, rt.names, tc.names)
		}
	}
}

func TestAuthorizerAutoPolicyAndResource(t *testing.T) {
	fake := allowUsers("user-alice")
	at := newAzTest(t, fake, nil)

	at.want(at.do("GET", "/orgs/acme/docs/7", "user-alice"), 200)
	req := fake.last()
	if got := req.GetPolicyContext().GetPath(); got != "docs.GET.orgs.__org.docs.__id" {
		t.Errorf("policy path %q", got)
	}
	if got := req.GetPolicyContext().GetDecisions(); len(got) != 1 || got[0] != "allowed" {
		t.Errorf("decisions %v", got)
	}
	if id := req.GetIdentityContext(); id.GetType() != api.IdentityType_IDENTITY_TYPE_SUB || id.GetIdentity() != "user-alice" {
		t.Errorf("identity %v", id)
	}
	if got := structMap(t, req); fmt.Sprint(got) != fmt.Sprint(map[string]any{"id": "7", "org": "acme"}) {
		t.Errorf("resource %v", got)
	}

	at.want(at.do("GET", "/reports", "user-alice"), 200)
	if got := fake.last().GetPolicyContext().GetPath(); got != "docs.reports.view" {
		t.Errorf("RequirePolicy path %q", got)
	}
	if got := structMap(t, fake.last()); len(got) != 0 {
		t.Errorf("RequirePolicy resource %v, want {}", got)
	}
}

func TestAuthorizerRelation(t *testing.T) {
	fake := &fakeTopaz{is: func(_ context.Context, req *authorizer.IsRequest) (*authorizer.IsResponse, error) {
		f := req.GetResourceContext().GetFields()
		return decision(req.GetIdentityContext().GetIdentity() == "user-alice" && f["object_id"].GetStringValue() == "1"), nil
	}}
	at := newAzTest(t, fake, nil)
	at.want(at.do("PUT", "/documents/1", "user-alice"), 200)
	req := fake.last()
	if got := req.GetPolicyContext().GetPath(); got != "docs.check" {
		t.Errorf("policy path %q, want docs.check", got)
	}
	want := map[string]any{"object_type": "document", "object_id": "1", "relation": "can_write", "subject_type": "user"}
	if got := structMap(t, req); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("resource %v, want %v", got, want)
	}
	at.want(at.do("PUT", "/documents/2", "user-alice"), 403)
	at.want(at.do("PUT", "/documents/1", "user-bob"), 403)
	before := fake.calls.Load()
	fake.is = func(context.Context, *authorizer.IsRequest) (*authorizer.IsResponse, error) {
		return decision(true), nil
	}
	at.want(at.do("PUT", "/nothing", "user-alice"), 403)
	at.want(at.do("PUT", "/nothing", ""), 401)
	if fake.calls.Load() != before {
		t.Error("asked about an empty object id; it is denied without asking")
	}
	fake.is = func(_ context.Context, req *authorizer.IsRequest) (*authorizer.IsResponse, error) {
		f := req.GetResourceContext().GetFields()
		return decision(req.GetIdentityContext().GetIdentity() == "user-alice" && f["object_id"].GetStringValue() == "1"), nil
	}

	// Check, the same question from a handler, shares the cache.
	before = fake.calls.Load()
	ok, err := at.az.Check(context.Background(), Identity{IdentitySubject, "user-alice"}, "document", "1", "can_write")
	if !ok || err != nil || fake.calls.Load() != before {
		t.Errorf("Check = %v, %v with %d new calls; want true from the cache", ok, err, fake.calls.Load()-before)
	}
	if ok, err := at.az.Check(context.Background(), Identity{IdentitySubject, "user-alice"}, "document", "", "can_write"); ok || err != nil || fake.calls.Load() != before {
		t.Errorf("Check with no object = %v, %v; want false without asking", ok, err)
	}
}

func TestAuthorizerOutcomes(t *testing.T) {
	deny := func(context.Context, *authorizer.IsRequest) (*authorizer.IsResponse, error) {
		return decision(false), nil
	}
	for _, tc := range []struct {
		name     string
		is       func(context.Context, *authorizer.IsRequest) (*authorizer.IsResponse, error)
		user     string
		header   []string
		status   int
		location string
		code     string
	}{
		{name: "allowed", is: func(context.Context, *authorizer.IsRequest) (*authorizer.IsResponse, error) {
			return decision(true), nil
		}, user: "user-alice", status: 200},
		{name: "denied user", is: deny, user: "user-bob", status: 403, code: "forbidden"},
		{name: "denied anonymous API", is: deny, status: 401, code: "unauthenticated"},
		{name: "denied anonymous browser", is: deny, header: []string{"Accept", "text/html"}, status: 302, location: "/login?next=%2Fdocuments%2F1"},
		{name: "unknown identity", user: "user-mallory", status: 403, code: "forbidden",
			is: func(context.Context, *authorizer.IsRequest) (*authorizer.IsResponse, error) {
				return nil, status.Error(codes.NotFound, "failed to resolve identity context")
			}},
		{name: "unavailable", user: "user-alice", status: 503, code: "authorizer_unavailable",
			is: func(context.Context, *authorizer.IsRequest) (*authorizer.IsResponse, error) {
				return nil, status.Error(codes.Unavailable, "connection refused")
			}},
		{name: "failing", user: "user-alice", status: 503, code: "authorizer_unavailable",
			is: func(context.Context, *authorizer.IsRequest) (*authorizer.IsResponse, error) {
				return nil, status.Error(codes.InvalidArgument, "undefined results")
			}},
		{name: "plain error", user: "user-alice", status: 503, code: "authorizer_unavailable",
			is: func(context.Context, *authorizer.IsRequest) (*authorizer.IsResponse, error) {
				return nil, errors.New("boom")
			}},
		{name: "answer without the decision", user: "user-alice", status: 503, code: "authorizer_unavailable",
			is: func(context.Context, *authorizer.IsRequest) (*authorizer.IsResponse, error) {
				return &authorizer.IsResponse{Decisions: []*authorizer.Decision{{Decision: "visible", Is: true}}}, nil
			}},
		{name: "allowed with an error", user: "user-alice", status: 503, code: "authorizer_unavailable",
			is: func(context.Context, *authorizer.IsRequest) (*authorizer.IsResponse, error) {
				return decision(true), status.Error(codes.Internal, "half an answer")
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			at := newAzTest(t, &fakeTopaz{is: tc.is}, nil)
			rec := at.do("GET", "/documents/1", tc.user, tc.header...)
			at.want(rec, tc.status)
			if tc.location != "" && rec.Header().Get("Location") != tc.location {
				t.Errorf("Location %q, want %q", rec.Header().Get("Location"), tc.location)
			}
			if tc.code != "" {
				var body map[string]string
				_ = json.Unmarshal(rec.Body.Bytes(), &body)
				if body["error"] != tc.code {
					t.Errorf("body %q, want error %q", rec.Body.String(), tc.code)
				}
			}
			if reached := at.hits.Load() > 0; reached != (tc.status == 200) {
				t.Errorf("app reached: %v with status %d", reached, tc.status)
			}
		})
	}
}

func TestAuthorizerTimeout(t *testing.T) {
	var deadline atomic.Bool
	fake := &fakeTopaz{is: func(ctx context.Context, _ *authorizer.IsRequest) (*authorizer.IsResponse, error) {
		_, ok := ctx.Deadline()
		deadline.Store(ok)
		select {
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		case <-time.After(10 * time.Second):
			return decision(true), nil
		}
	}}
	at := newAzTest(t, fake, func(c *AuthorizerConfig) { c.Timeout = 50 * time.Millisecond })
	start := time.Now()
	at.want(at.do("GET", "/documents/1", "user-alice"), 503)
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %s with a 50ms timeout", d)
	}
	if !deadline.Load() {
		t.Error("the authorizer call had no deadline")
	}
	if !strings.Contains(at.logs.String(), "did not answer within 50ms") {
		t.Errorf("logs do not name the timeout:\n%s", at.logs)
	}
}

func TestAuthorizerSessionStoreDown(t *testing.T) {
	for name, edit := range map[string]func(*AuthorizerConfig){
		"default identity":        nil,
		"Identity: auth.Identity": func(c *AuthorizerConfig) { c.Identity = c.Auth.Identity },
		"JWT identity":            func(c *AuthorizerConfig) { c.Identity = c.Auth.IDTokenIdentity },
	} {
		t.Run(name, func(t *testing.T) {
			fake := &fakeTopaz{is: func(context.Context, *authorizer.IsRequest) (*authorizer.IsResponse, error) {
				return decision(true), nil
			}}
			at := newAzTest(t, fake, edit)
			rec := at.do("GET", "/documents/1", "user-alice", "X-Test-Store", "down")
			at.want(rec, 503)
			if !strings.Contains(rec.Body.String(), "session_store_unavailable") {
				t.Errorf("body %q", rec.Body.String())
			}
			if fake.calls.Load() != 0 || at.hits.Load() != 0 {
				t.Errorf("%d authorizer calls, %d app hits; want none", fake.calls.Load(), at.hits.Load())
			}
		})
	}
}

// The DESIGN's shape, Identity: auth.Identity without Auth, behind the
// Auth's Handler: a store failure is still a 503, a denial without a user
// still a login.
func TestAuthorizerIdentityWithoutAuthConfig(t *testing.T) {
	fake := &fakeTopaz{is: func(context.Context, *authorizer.IsRequest) (*authorizer.IsResponse, error) {
		return decision(false), nil
	}}
	at := newAzTest(t, fake, func(c *AuthorizerConfig) { c.Identity, c.Auth = c.Auth.Identity, nil })
	at.want(at.do("GET", "/documents/1", "user-alice", "X-Test-Store", "down"), 503)
	if fake.calls.Load() != 0 {
		t.Error("asked the authorizer with the session store down")
	}
	rec := at.do("GET", "/documents/1", "", "Accept", "text/html")
	at.want(rec, 302)
	if loc := rec.Header().Get("Location"); loc != "/login?next=%2Fdocuments%2F1" {
		t.Errorf("Location %q", loc)
	}
}

func TestAuthorizerIdentityKinds(t *testing.T) {
	allow := func(context.Context, *authorizer.IsRequest) (*authorizer.IsResponse, error) {
		return decision(true), nil
	}
	for _, tc := range []struct {
		name     string
		identity func(a *Auth) IdentityProvider
		user     string
		wantType api.IdentityType
		wantID   string
		status   int
	}{
		{"SUB by default", nil, "user-alice", api.IdentityType_IDENTITY_TYPE_SUB, "user-alice", 200},
		{"NONE when anonymous", nil, "", api.IdentityType_IDENTITY_TYPE_NONE, "", 200},
		{"JWT", func(a *Auth) IdentityProvider { return a.IDTokenIdentity }, "user-alice", api.IdentityType_IDENTITY_TYPE_JWT, "id-token-of-user-alice", 200},
		{"JWT anonymous", func(a *Auth) IdentityProvider { return a.IDTokenIdentity }, "", api.IdentityType_IDENTITY_TYPE_NONE, "", 200},
		{"MANUAL", func(*Auth) IdentityProvider {
			return func(r *http.Request) Identity { return Identity{IdentityManual, "svc-" + r.Header.Get("X-Test-User")} }
		}, "robot", api.IdentityType_IDENTITY_TYPE_MANUAL, "svc-robot", 200},
		{"unknown type", func(*Auth) IdentityProvider {
			return func(*http.Request) Identity { return Identity{Type: 9, Value: "x"} }
		}, "user-alice", 0, "", 500},
		{"SUB without a value", func(*Auth) IdentityProvider {
			return func(*http.Request) Identity { return Identity{Type: IdentitySubject} }
		}, "user-alice", 0, "", 500},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := &fakeTopaz{is: allow}
			at := newAzTest(t, fake, func(c *AuthorizerConfig) {
				if tc.identity != nil {
					c.Identity = tc.identity(c.Auth)
				}
			})
			at.want(at.do("GET", "/documents/1", tc.user), tc.status)
			if tc.status != 200 {
				if fake.calls.Load() != 0 {
					t.Error("asked the authorizer about a malformed identity")
				}
				return
			}
			id := fake.last().GetIdentityContext()
			if id.GetType() != tc.wantType || id.GetIdentity() != tc.wantID {
				t.Errorf("identity %v %q, want %v %q", id.GetType(), id.GetIdentity(), tc.wantType, tc.wantID)
			}
		})
	}
}

func TestAuthorizerNeverLogsTokens(t *testing.T) {
	fake := &fakeTopaz{is: func(context.Context, *authorizer.IsRequest) (*authorizer.IsResponse, error) {
		return nil, status.Error(codes.Unavailable, "down")
	}}
	at := newAzTest(t, fake, func(c *AuthorizerConfig) { c.Identity = c.Auth.IDTokenIdentity })
	at.want(at.do("GET", "/documents/1", "user-alice"), 503)
	fake.is = func(context.Context, *authorizer.IsRequest) (*authorizer.IsResponse, error) {
		return decision(false), nil
	}
	at.want(at.do("GET", "/documents/2", "user-alice"), 403)
	logs := at.logs.String()
	if strings.Contains(logs, "id-token-of") {
		t.Errorf("a token was logged:\n%s", logs)
	}
	if !strings.Contains(logs, "identity_type=JWT") || !strings.Contains(logs, "policy=docs.GET.documents.__id") {
		t.Errorf("logs lack the identity type or policy:\n%s", logs)
	}
}

func TestAuthorizerCache(t *testing.T) {
	fake := allowUsers("user-alice")
	at := newAzTest(t, fake, nil)
	at.want(at.do("GET", "/documents/1", "user-alice"), 200)
	at.want(at.do("GET", "/documents/1", "user-alice"), 200)
	if n := fake.calls.Load(); n != 1 {
		t.Fatalf("%d calls for the same question twice, want 1", n)
	}
	at.want(at.do("GET", "/documents/1", "user-bob"), 403)
	at.want(at.do("GET", "/documents/1", "user-bob"), 403) // denials are cached too
	at.want(at.do("GET", "/documents/2", "user-alice"), 200)
	at.want(at.do("GET", "/orgs/a/docs/1", "user-alice"), 200)
	if n := fake.calls.Load(); n != 4 {
		t.Fatalf("%d calls, want 4: one per user, resource and policy", n)
	}
	// Allowed shares the cache with the middleware.
	ok, err := at.az.Allowed(context.Background(), Identity{IdentitySubject, "user-alice"}, "docs.GET.documents.__id", map[string]any{"id": "1"})
	if !ok || err != nil {
		t.Fatalf("Allowed = %v, %v", ok, err)
	}
	if n := fake.calls.Load(); n != 5 {
		// A map-built resource keys differently from path values; it is
		// asked once and then cached.
		t.Fatalf("%d calls, want 5", n)
	}
	if ok, _ := at.az.Allowed(context.Background(), Identity{IdentitySubject, "user-alice"}, "docs.GET.documents.__id", map[string]any{"id": "1"}); !ok || fake.calls.Load() != 5 {
		t.Fatalf("Allowed twice made %d calls, want 5", fake.calls.Load())
	}
}

func TestAuthorizerCacheKeysDiffer(t *testing.T) {
	base := question{id: Identity{IdentitySubject, "alice"}, path: "docs.GET.documents.__id", pairs: []kv{{"id", "1"}}}
	variants := map[string]question{
		"base":          base,
		"identity type": {id: Identity{IdentityManual, "alice"}, path: base.path, pairs: base.pairs},
		"identity":      {id: Identity{IdentitySubject, "alicf"}, path: base.path, pairs: base.pairs},
		"path":          {id: base.id, path: "docs.PUT.documents.__id", pairs: base.pairs},
		"resource":      {id: base.id, path: base.path, pairs: []kv{{"id", "2"}}},
		"resource key":  {id: base.id, path: base.path, pairs: []kv{{"ic", "1"}}},
		"no resource":   {id: base.id, path: base.path},
		"custom":        {id: base.id, path: base.path, custom: []byte(`{"id":"1"}`)},
		"shifted":       {id: Identity{IdentitySubject, "alicedocs.GET.documents.__id"}, path: "", pairs: base.pairs},
		"split pair":    {id: base.id, path: base.path, pairs: []kv{{"i", "d1"}}},
	}
	seen := map[string]string{}
	for name, q := range variants {
		k := string(q.appendKey(nil, "allowed"))
		if other, dup := seen[k]; dup {
			t.Errorf("%s and %s share a cache key", name, other)
		}
		seen[k] = name
	}
	if string(base.appendKey(nil, "allowed")) == string(base.appendKey(nil, "visible")) {
		t.Error("decisions share a cache key")
	}
}

// fakeClock is a settable clock for cache expiry.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestAuthorizerCacheTTL(t *testing.T) {
	fake := allowUsers("user-alice")
	at := newAzTest(t, fake, func(c *AuthorizerConfig) { c.CacheTTL = time.Minute })
	clock := &fakeClock{t: time.Now()}
	at.az.cache.now = clock.now
	at.want(at.do("GET", "/documents/1", "user-alice"), 200)
	clock.add(time.Minute - time.Nanosecond)
	at.want(at.do("GET", "/documents/1", "user-alice"), 200)
	if n := fake.calls.Load(); n != 1 {
		t.Fatalf("%d calls within the TTL, want 1", n)
	}
	clock.add(time.Nanosecond)
	at.want(at.do("GET", "/documents/1", "user-alice"), 200)
	if n := fake.calls.Load(); n != 2 {
		t.Fatalf("%d calls once the TTL passed, want 2", n)
	}
	if at.az.cache.count() != 1 {
		t.Errorf("%d entries, want the renewed one", at.az.cache.count())
	}
}

func TestAuthorizerCacheDefaults(t *testing.T) {
	az, err := NewAuthorizer(allowUsers(), AuthorizerConfig{PolicyRoot: "docs", Auth: testAuth(t)})
	if err != nil {
		t.Fatal(err)
	}
	if az.cache.ttl != 30*time.Second || az.cache.size != 10_000 || az.timeout != 5*time.Second || az.decision != "allowed" {
		t.Errorf("defaults: ttl %s size %d timeout %s decision %q", az.cache.ttl, az.cache.size, az.timeout, az.decision)
	}
}

func TestAuthorizerCacheDisabled(t *testing.T) {
	fake := allowUsers("user-alice")
	at := newAzTest(t, fake, func(c *AuthorizerConfig) { c.CacheTTL = NoDecisionCache })
	for range 3 {
		at.want(at.do("GET", "/documents/1", "user-alice"), 200)
	}
	if n := fake.calls.Load(); n != 3 {
		t.Fatalf("%d calls with the cache off, want 3", n)
	}
	if at.az.cache.count() != 0 {
		t.Errorf("%d entries kept with the cache off", at.az.cache.count())
	}
}

func TestAuthorizerCacheLRU(t *testing.T) {
	fake := allowUsers("user-alice")
	at := newAzTest(t, fake, func(c *AuthorizerConfig) { c.CacheSize = 2 })
	get := func(doc string) { at.want(at.do("GET", "/documents/"+doc, "user-alice"), 200) }
	get("a")
	get("b")
	get("a") // hit: a is now the most recently used
	get("c") // evicts b
	if n := fake.calls.Load(); n != 3 {
		t.Fatalf("%d calls, want 3", n)
	}
	get("a")
	if n := fake.calls.Load(); n != 3 {
		t.Fatalf("a was evicted (%d calls); the least recently used should go", n)
	}
	get("b")
	if n := fake.calls.Load(); n != 4 {
		t.Fatalf("b was still cached (%d calls) in a cache of 2", n)
	}
	if at.az.cache.count() != 2 {
		t.Errorf("%d entries, want at most 2", at.az.cache.count())
	}
}

func TestAuthorizerErrorsNotCached(t *testing.T) {
	var fail atomic.Bool
	fail.Store(true)
	fake := &fakeTopaz{is: func(context.Context, *authorizer.IsRequest) (*authorizer.IsResponse, error) {
		if fail.Load() {
			return nil, status.Error(codes.Unavailable, "down")
		}
		return decision(true), nil
	}}
	at := newAzTest(t, fake, nil)
	at.want(at.do("GET", "/documents/1", "user-alice"), 503)
	fail.Store(false)
	at.want(at.do("GET", "/documents/1", "user-alice"), 200)
	if n := fake.calls.Load(); n != 2 {
		t.Fatalf("%d calls, want 2: a failure must not be cached", n)
	}
}

// joined is the number of callers waiting on another's call.
func (c *decisionCache) joined() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, f := range c.flights {
		n += f.shared
	}
	return n
}

func TestAuthorizerSharesConcurrentMisses(t *testing.T) {
	release := make(chan struct{})
	fake := &fakeTopaz{is: func(context.Context, *authorizer.IsRequest) (*authorizer.IsResponse, error) {
		<-release
		return decision(true), nil
	}}
	// The cache is off, so only sharing can keep this to one call.
	at := newAzTest(t, fake, func(c *AuthorizerConfig) { c.CacheTTL = NoDecisionCache })
	const n = 20
	codes := make(chan int, n)
	for range n {
		go func() { codes <- at.do("GET", "/documents/1", "user-alice").Code }()
	}
	waitFor(t, func() bool { return at.az.cache.joined() == n-1 })
	close(release)
	for range n {
		if c := <-codes; c != 200 {
			t.Errorf("status %d", c)
		}
	}
	if c := fake.calls.Load(); c != 1 {
		t.Fatalf("%d calls for %d concurrent identical requests, want 1", c, n)
	}
}

func TestAuthorizerCallerLeavingDoesNotFailOthers(t *testing.T) {
	release := make(chan struct{})
	var canceled atomic.Bool
	fake := &fakeTopaz{is: func(ctx context.Context, _ *authorizer.IsRequest) (*authorizer.IsResponse, error) {
		<-release
		canceled.Store(ctx.Err() != nil)
		if ctx.Err() != nil {
			return nil, status.FromContextError(ctx.Err()).Err()
		}
		return decision(true), nil
	}}
	at := newAzTest(t, fake, nil)
	q := func() *question {
		return &question{id: Identity{IdentitySubject, "user-alice"}, path: "docs.x", pairs: []kv{{"id", "1"}}}
	}
	leaderCtx, cancel := context.WithCancel(context.Background())
	leader := make(chan error, 1)
	go func() { _, _, err := at.az.decide(leaderCtx, q()); leader <- err }()
	waitFor(t, func() bool { return fake.calls.Load() == 1 })
	other := make(chan bool, 1)
	go func() { ok, _, _ := at.az.decide(context.Background(), q()); other <- ok }()
	waitFor(t, func() bool { return at.az.cache.joined() == 1 })
	cancel()
	if err := <-leader; !errors.Is(err, context.Canceled) {
		t.Fatalf("leader: %v, want its own cancellation", err)
	}
	close(release)
	if ok := <-other; !ok {
		t.Fatal("the other caller failed when the first one left")
	}
	if canceled.Load() {
		t.Error("the shared call was canceled with its first caller")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestAuthorizerHitAllocatesNothing(t *testing.T) {
	at := newAzTest(t, allowUsers("user-alice"), nil)
	q := question{id: Identity{IdentitySubject, "user-alice"}, path: "docs.GET.documents.__id", pairs: []kv{{"id", "1"}}}
	if ok, _, err := at.az.decide(context.Background(), &q); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if n := testing.AllocsPerRun(100, func() { _, _, _ = at.az.decide(context.Background(), &q) }); n != 0 {
		t.Errorf("a cache hit allocates %.0f times", n)
	}
	// The whole middleware, for a request whose session is loaded.
	h := at.az.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	r := benchRequest(t, testAuth(t), "user-alice")
	w := &discardWriter{h: http.Header{}}
	h.ServeHTTP(w, r)
	if n := testing.AllocsPerRun(100, func() { h.ServeHTTP(w, r) }); n != 0 {
		t.Errorf("the middleware allocates %.0f times on a cache hit", n)
	}
}

func TestAuthorizerAllowed(t *testing.T) {
	fake := &fakeTopaz{is: func(_ context.Context, req *authorizer.IsRequest) (*authorizer.IsResponse, error) {
		switch req.GetIdentityContext().GetIdentity() {
		case "user-mallory":
			return nil, status.Error(codes.NotFound, "failed to resolve identity context")
		case "user-down":
			return nil, status.Error(codes.Unavailable, "down")
		}
		return decision(req.GetResourceContext().GetFields()["shared"].GetBoolValue()), nil
	}}
	at := newAzTest(t, fake, nil)
	ctx := context.Background()
	alice := Identity{IdentitySubject, "user-alice"}
	if ok, err := at.az.Allowed(ctx, alice, "docs.list", map[string]any{"shared": true, "n": []int{1, 2}}); !ok || err != nil {
		t.Errorf("Allowed = %v, %v; want true", ok, err)
	}
	if got := structMap(t, fake.last()); fmt.Sprint(got) != fmt.Sprint(map[string]any{"n": []any{1.0, 2.0}, "shared": true}) {
		t.Errorf("resource %v", got)
	}
	if ok, err := at.az.Allowed(ctx, alice, "docs.list", nil); ok || err != nil {
		t.Errorf("Allowed = %v, %v; want false", ok, err)
	}
	if ok, err := at.az.Allowed(ctx, Identity{IdentitySubject, "user-mallory"}, "docs.list", nil); ok || err != nil {
		t.Errorf("unknown identity: Allowed = %v, %v; want false, nil", ok, err)
	}
	ok, err := at.az.Allowed(ctx, Identity{IdentitySubject, "user-down"}, "docs.list", nil)
	var e *Error
	if ok || !errors.As(err, &e) || e.Status != 503 {
		t.Errorf("authorizer down: Allowed = %v, %v; want false and a 503 *Error", ok, err)
	}
	if _, err := at.az.Allowed(ctx, alice, "docs.list", map[string]any{"f": func() {}}); !errors.As(err, &e) || e.Status != 500 {
		t.Errorf("unencodable resource: %v, want a 500 *Error", err)
	}
}

func TestAuthorizerCustomMappers(t *testing.T) {
	fake := allowUsers("user-alice")
	at := newAzTest(t, fake, func(c *AuthorizerConfig) {
		c.PolicyPath = func(r *http.Request) string { return "custom." + r.PathValue("id") }
		c.ResourceContext = func(r *http.Request) map[string]any { return map[string]any{"doc": r.PathValue("id"), "n": 1} }
		c.Decision = "can_read"
	})
	fake.is = func(_ context.Context, req *authorizer.IsRequest) (*authorizer.IsResponse, error) {
		return &authorizer.IsResponse{Decisions: []*authorizer.Decision{{Decision: "can_read", Is: true}}}, nil
	}
	at.want(at.do("GET", "/documents/x1", "user-alice"), 200)
	req := fake.last()
	if req.GetPolicyContext().GetPath() != "custom.x1" || req.GetPolicyContext().GetDecisions()[0] != "can_read" {
		t.Errorf("policy %v", req.GetPolicyContext())
	}
	if got := structMap(t, req); fmt.Sprint(got) != fmt.Sprint(map[string]any{"doc": "x1", "n": 1.0}) {
		t.Errorf("resource %v", got)
	}
}

func TestAuthorizerWithoutAuth(t *testing.T) {
	fake := &fakeTopaz{is: func(context.Context, *authorizer.IsRequest) (*authorizer.IsResponse, error) {
		return decision(false), nil
	}}
	var logs bytes.Buffer
	az, err := NewAuthorizer(fake, AuthorizerConfig{
		PolicyRoot: "api",
		Identity: func(r *http.Request) Identity {
			if k := r.Header.Get("X-Key"); k != "" {
				return Identity{IdentityManual, k}
			}
			return Identity{}
		},
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	h := az.Middleware(http.NotFoundHandler())
	rec := httptest.NewRecorder()
	r := httptest.NewRequest("GET", "/things", nil)
	r.Header.Set("Accept", "text/html")
	h.ServeHTTP(rec, r)
	if rec.Code != 401 || !strings.Contains(rec.Body.String(), "unauthenticated") {
		t.Errorf("anonymous without Auth: %d %q, want 401", rec.Code, rec.Body.String())
	}
	if got := fake.last().GetPolicyContext().GetPath(); got != "api.GET.things" {
		t.Errorf("policy path without a pattern: %q", got)
	}
	rec = httptest.NewRecorder()
	r = httptest.NewRequest("GET", "/things", nil)
	r.Header.Set("X-Key", "k1")
	h.ServeHTTP(rec, r)
	if rec.Code != 403 {
		t.Errorf("denied MANUAL: %d, want 403", rec.Code)
	}
}

func TestNewAuthorizerValidation(t *testing.T) {
	auth := testAuth(t)
	for name, tc := range map[string]struct {
		client AuthorizerClient
		cfg    AuthorizerConfig
		want   string
	}{
		"no client":     {nil, AuthorizerConfig{PolicyRoot: "docs", Auth: auth}, "needs a client"},
		"no root":       {allowUsers(), AuthorizerConfig{Auth: auth}, "TOPAZ_POLICY_ROOT: is required"},
		"bad root":      {allowUsers(), AuthorizerConfig{PolicyRoot: "my-app", Auth: auth}, `TOPAZ_POLICY_ROOT: "my-app" is not a policy path`},
		"empty part":    {allowUsers(), AuthorizerConfig{PolicyRoot: "a..b", Auth: auth}, "is not a policy path"},
		"bad decision":  {allowUsers(), AuthorizerConfig{PolicyRoot: "docs", Auth: auth, Decision: "is allowed"}, "is not a Rego rule name"},
		"no identity":   {allowUsers(), AuthorizerConfig{PolicyRoot: "docs"}, "needs Auth or an Identity"},
		"negative size": {allowUsers(), AuthorizerConfig{PolicyRoot: "docs", Auth: auth, CacheSize: -1}, "CacheSize"},
		"negative time": {allowUsers(), AuthorizerConfig{PolicyRoot: "docs", Auth: auth, Timeout: -1}, "Timeout"},
	} {
		if _, err := NewAuthorizer(tc.client, tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
	if _, err := NewAuthorizer(allowUsers(), AuthorizerConfig{PolicyRoot: "acme.docs_v2", Auth: auth}); err != nil {
		t.Errorf("dotted root: %v", err)
	}
}

var topazVars = []string{"TOPAZ_AUTHORIZER_ADDR", "TOPAZ_NO_TLS", "TOPAZ_INSECURE", "TOPAZ_CA_CERT",
	"TOPAZ_API_KEY", "TOPAZ_TENANT_ID", "TOPAZ_POLICY_ROOT", "TOPAZ_DECISION_CACHE_TTL"}

func setTopazEnv(t *testing.T, env map[string]string) {
	t.Helper()
	for _, v := range topazVars {
		t.Setenv(v, env[v])
	}
}

// writeCA writes a self-signed CA certificate and returns its path.
func writeCA(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestTopazConfigFromEnv(t *testing.T) {
	setTopazEnv(t, nil)
	c, err := TopazConfigFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if c != (TopazConfig{}) {
		t.Errorf("unset environment gave %+v", c)
	}
	o, err := aserto.NewConnectionOptions(c.ConnectionOptions()...)
	if err != nil || o.Address != "localhost:8282" || o.NoTLS || o.Insecure || o.Creds != nil {
		t.Errorf("default connection options %+v, %v", o, err)
	}

	ca := writeCA(t)
	setTopazEnv(t, map[string]string{
		"TOPAZ_AUTHORIZER_ADDR": "topaz.internal:9292", "TOPAZ_CA_CERT": ca, "TOPAZ_API_KEY": "s3cr3t-key",
		"TOPAZ_TENANT_ID": "tenant-1", "TOPAZ_POLICY_ROOT": "acme.docs", "TOPAZ_DECISION_CACHE_TTL": "1m",
		"TOPAZ_NO_TLS": "false", "TOPAZ_INSECURE": "0",
	})
	c, err = TopazConfigFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	want := TopazConfig{Address: "topaz.internal:9292", CACertPath: ca, APIKey: "s3cr3t-key", TenantID: "tenant-1", PolicyRoot: "acme.docs", DecisionCacheTTL: time.Minute}
	if c != want {
		t.Errorf("got %#v", c)
	}
	o, err = aserto.NewConnectionOptions(c.ConnectionOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	if o.Address != "topaz.internal:9292" || o.CACertPath != ca || o.Headers[TenantHeader] != "tenant-1" || o.Creds == nil {
		t.Errorf("connection options %+v", o)
	}
	md, _ := o.Creds.GetRequestMetadata(context.Background())
	if md["authorization"] != "basic s3cr3t-key" {
		t.Errorf("credentials metadata %v", md)
	}
	for _, s := range []string{c.String(), fmt.Sprintf("%v %+v %#v %s", c, c, c, c)} {
		if strings.Contains(s, "s3cr3t") || !strings.Contains(s, "[redacted]") {
			t.Errorf("the API key shows: %s", s)
		}
	}
	var logs bytes.Buffer
	slog.New(slog.NewTextHandler(&logs, nil)).Info("topaz", "config", c)
	if strings.Contains(logs.String(), "s3cr3t") {
		t.Errorf("the API key is logged: %s", logs.String())
	}

	setTopazEnv(t, map[string]string{"TOPAZ_NO_TLS": "true", "TOPAZ_DECISION_CACHE_TTL": "0", "TOPAZ_AUTHORIZER_ADDR": "127.0.0.1:8282"})
	c, err = TopazConfigFromEnv()
	if err != nil || !c.NoTLS || c.DecisionCacheTTL != NoDecisionCache {
		t.Errorf("TOPAZ_NO_TLS=true, TTL 0: %+v, %v", c, err)
	}
	client, err := c.Connect()
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	client.Close()
}

func TestTopazConfigFromEnvErrors(t *testing.T) {
	setTopazEnv(t, map[string]string{
		"TOPAZ_AUTHORIZER_ADDR":    "localhost",
		"TOPAZ_NO_TLS":             "yes please",
		"TOPAZ_INSECURE":           "maybe",
		"TOPAZ_API_KEY":            "key with spaces s3cr3t",
		"TOPAZ_TENANT_ID":          "a tenant",
		"TOPAZ_POLICY_ROOT":        "my-app",
		"TOPAZ_DECISION_CACHE_TTL": "30",
		"TOPAZ_CA_CERT":            filepath.Join(t.TempDir(), "missing.crt"),
	})
	_, err := TopazConfigFromEnv()
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	for _, v := range []string{"TOPAZ_AUTHORIZER_ADDR", "TOPAZ_NO_TLS", "TOPAZ_INSECURE", "TOPAZ_API_KEY", "TOPAZ_TENANT_ID",
		"TOPAZ_POLICY_ROOT", "TOPAZ_DECISION_CACHE_TTL", "TOPAZ_CA_CERT"} {
		if !strings.Contains(msg, v+":") {
			t.Errorf("no error names %s:\n%s", v, msg)
		}
	}
	if strings.Contains(msg, "s3cr3t") {
		t.Errorf("the API key is echoed:\n%s", msg)
	}
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Errorf("%T is not a *ConfigError", err)
	}

	for name, env := range map[string]map[string]string{
		"no TLS and insecure":  {"TOPAZ_NO_TLS": "true", "TOPAZ_INSECURE": "true"},
		"no TLS and a CA":      {"TOPAZ_NO_TLS": "true", "TOPAZ_CA_CERT": writeCA(t)},
		"insecure and a CA":    {"TOPAZ_INSECURE": "true", "TOPAZ_CA_CERT": writeCA(t)},
		"negative TTL":         {"TOPAZ_DECISION_CACHE_TTL": "-1s"},
		"not a PEM":            {"TOPAZ_CA_CERT": os.Args[0]},
		"address with a space": {"TOPAZ_AUTHORIZER_ADDR": "local host:1"},
	} {
		setTopazEnv(t, env)
		if _, err := TopazConfigFromEnv(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	for name, env := range map[string]map[string]string{
		"dns URI":     {"TOPAZ_AUTHORIZER_ADDR": "dns:///topaz.internal:8282"},
		"unix socket": {"TOPAZ_AUTHORIZER_ADDR": "unix:///run/topaz.sock", "TOPAZ_NO_TLS": "true"},
		"insecure":    {"TOPAZ_INSECURE": "TRUE"},
	} {
		setTopazEnv(t, env)
		if _, err := TopazConfigFromEnv(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// discardWriter is a ResponseWriter that keeps nothing.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(int)             {}

// benchRequest is a request through Auth.Handler's state, as the
// middleware sees it behind the mux, with its session already loaded.
func benchRequest(b testing.TB, auth *Auth, user string) *http.Request {
	r := httptest.NewRequest("GET", "/documents/42", nil)
	r.Header.Set("X-Test-User", user)
	r.Pattern = "GET /documents/{id}"
	r.SetPathValue("id", "42")
	_, r = auth.state(r)
	if _, err := auth.User(r); err != nil {
		b.Fatal(err)
	}
	return r
}

func BenchmarkAuthorizerCachedDecision(b *testing.B) {
	auth := testAuth(b)
	fake := allowUsers("user-alice")
	az, err := NewAuthorizer(fake, AuthorizerConfig{PolicyRoot: "docs", Auth: auth})
	if err != nil {
		b.Fatal(err)
	}
	h := az.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	r := benchRequest(b, auth, "user-alice")
	w := &discardWriter{h: http.Header{}}
	h.ServeHTTP(w, r)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		h.ServeHTTP(w, r)
	}
	b.StopTimer()
	if fake.calls.Load() != 1 {
		b.Fatalf("%d calls, want 1", fake.calls.Load())
	}
}

func BenchmarkAuthorizerMiss(b *testing.B) {
	auth := testAuth(b)
	fake := allowUsers("user-alice")
	az, err := NewAuthorizer(fake, AuthorizerConfig{PolicyRoot: "docs", Auth: auth, CacheTTL: NoDecisionCache})
	if err != nil {
		b.Fatal(err)
	}
	h := az.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	r := benchRequest(b, auth, "user-alice")
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		h.ServeHTTP(w, r)
	}
}
