package topaz

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oidcauth/oidcauth"
	"github.com/oidcauth/oidcauth/internal/testenv"
)

// The example's policy and directory, and the tests' additions.
var standInOptions = Options{
	PolicyDirs: []string{"../../examples/topaz/policy", "testdata"},
	DataDirs:   []string{"../../examples/topaz/directory", "testdata"},
}

// issuer is a minimal OpenID Provider: enough discovery for oidcauth.New,
// and the JWKS of the ID tokens the tests mint, which the stand-in
// verifies as topazd would.
type issuer struct {
	srv *httptest.Server
	key *rsa.PrivateKey
}

var (
	issuerOnce sync.Once
	theIssuer  *issuer
)

func testIssuer(t testing.TB) *issuer {
	t.Helper()
	issuerOnce.Do(func() {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		iss := &issuer{key: key}
		mux := http.NewServeMux()
		mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
			base := iss.srv.URL
			_ = json.NewEncoder(w).Encode(map[string]any{
				"issuer":                                base,
				"authorization_endpoint":                base + "/authorize",
				"token_endpoint":                        base + "/token",
				"jwks_uri":                              base + "/jwks",
				"id_token_signing_alg_values_supported": []string{"RS256"},
				"code_challenge_methods_supported":      []string{"S256"},
			})
		})
		mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
			_ = json.NewEncoder(w).Encode(map[string]any{"keys": []map[string]string{{
				"kty": "RSA", "kid": "k1", "alg": "RS256", "use": "sig",
				"n": base64.RawURLEncoding.EncodeToString(key.N.Bytes()),
				"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(key.E)).Bytes()),
			}}})
		})
		iss.srv = httptest.NewServer(mux)
		theIssuer = iss
	})
	return theIssuer
}

// token mints an RS256 ID token for sub, valid until exp.
func (i *issuer) token(sub string, exp time.Time) string {
	enc := func(v any) string {
		b, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	signed := enc(map[string]string{"alg": "RS256", "kid": "k1", "typ": "JWT"}) + "." +
		enc(map[string]any{"iss": i.srv.URL, "sub": sub, "aud": "topaz-test", "iat": time.Now().Unix(), "exp": exp.Unix()})
	digest := sha256.Sum256([]byte(signed))
	sig, err := rsa.SignPKCS1v15(rand.Reader, i.key, crypto.SHA256, digest[:])
	if err != nil {
		panic(err)
	}
	return signed + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// sessions is a SessionStore standing in for a login: X-Test-User names
// the signed-in subject (its ID token minted by the issuer, expired with
// X-Test-Expired), X-Test-Store: down makes the store fail.
type sessions struct {
	iss    *issuer
	tokens *sync.Map // sub + expired → token: signing is slow
}

func (s sessions) Load(r *http.Request) (*oidcauth.Session, error) {
	if r.Header.Get("X-Test-Store") == "down" {
		return nil, errors.New("session store down")
	}
	sub := r.Header.Get("X-Test-User")
	if sub == "" {
		return nil, nil
	}
	expired := r.Header.Get("X-Test-Expired") != ""
	tok, ok := s.tokens.Load(sub + "/" + r.Header.Get("X-Test-Expired"))
	if !ok {
		exp := time.Now().Add(5 * time.Minute)
		if expired {
			exp = time.Now().Add(-time.Minute)
		}
		tok, _ = s.tokens.LoadOrStore(sub+"/"+r.Header.Get("X-Test-Expired"), s.iss.token(sub, exp))
	}
	return &oidcauth.Session{
		User:      oidcauth.User{Subject: sub, Issuer: s.iss.srv.URL},
		IDToken:   tok.(string),
		ExpiresAt: time.Now().Add(time.Hour),
	}, nil
}
func (sessions) Save(http.ResponseWriter, *http.Request, *oidcauth.Session) error { return nil }
func (sessions) Delete(http.ResponseWriter, *http.Request) error                  { return nil }

// env is the app behind oidcauth and the authorizer, asking the stand-in
// through go-aserto's client.
type env struct {
	t      testing.TB
	topaz  *Server
	auth   *oidcauth.Auth
	az     *oidcauth.Authorizer
	app    http.Handler
	logs   *testenv.SyncBuffer
	served atomic.Int64
}

func newEnv(t testing.TB, edit func(*oidcauth.AuthorizerConfig)) *env {
	t.Helper()
	topaz, err := Start(standInOptions)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(topaz.Stop)
	return newEnvAt(t, topaz, topaz.Addr(), edit)
}

func newEnvAt(t testing.TB, topaz *Server, addr string, edit func(*oidcauth.AuthorizerConfig)) *env {
	t.Helper()
	e := &env{t: t, topaz: topaz, logs: new(testenv.SyncBuffer)}
	iss := testIssuer(t)
	var err error
	log := slog.New(slog.NewTextHandler(e.logs, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e.auth, err = oidcauth.New(ctx, oidcauth.Config{
		Issuer: iss.srv.URL, ClientID: "topaz-test", ClientSecret: "topaz-test-secret",
		RedirectURI: "http://127.0.0.1/auth/callback", SessionSecret: "a-test-secret-of-at-least-32-bytes!!",
	}, oidcauth.WithSessionStore(sessions{iss, new(sync.Map)}), oidcauth.WithLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	// The real go-aserto client, configured as TOPAZ_* would.
	client, err := oidcauth.TopazConfig{Address: addr, NoTLS: true}.Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	cfg := oidcauth.AuthorizerConfig{PolicyRoot: "docs", Auth: e.auth, Timeout: 5 * time.Second}
	if edit != nil {
		edit(&cfg)
	}
	e.az, err = oidcauth.NewAuthorizer(client, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.served.Add(1)
		io.WriteString(w, "ok")
	})
	mux := http.NewServeMux()
	mux.Handle("GET /documents/{id}", e.az.Middleware(ok))
	mux.Handle("PUT /documents/{id}", e.az.RequireRelation("document", "can_write", func(r *http.Request) string { return r.PathValue("id") })(ok))
	mux.Handle("GET /orgs/{org}/docs/{id}", e.az.Middleware(ok))
	mux.Handle("GET /whoami", e.az.Middleware(ok))
	e.app = e.auth.Handler(mux)
	return e
}

// do sends method target as user ("" for anonymous) with header pairs.
func (e *env) do(method, target, user string, header ...string) *httptest.ResponseRecorder {
	e.t.Helper()
	r := httptest.NewRequest(method, target, nil)
	if user != "" {
		r.Header.Set("X-Test-User", user)
	}
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	e.app.ServeHTTP(rec, r)
	return rec
}

func (e *env) expect(rec *httptest.ResponseRecorder, status int) {
	e.t.Helper()
	if rec.Code != status {
		e.t.Fatalf("status %d, want %d; body %q; logs:\n%s", rec.Code, status, rec.Body.String(), e.logs)
	}
}

func TestTopazReadPolicy(t *testing.T) {
	e := newEnv(t, nil)
	e.expect(e.do("GET", "/documents/1", "user-alice"), 200) // a viewer reads all
	e.expect(e.do("GET", "/documents/2", "user-alice"), 200)
	e.expect(e.do("GET", "/documents/1", "user-bob"), 403) // bob reads nothing
	e.expect(e.do("GET", "/documents/2", "user-bob"), 403)
	if got := e.topaz.Paths()[0]; got != "docs.GET.documents.__id" {
		t.Errorf("policy path %q", got)
	}
	if e.served.Load() != 2 {
		t.Errorf("the app served %d requests, want 2", e.served.Load())
	}
}

func TestTopazAnonymous(t *testing.T) {
	e := newEnv(t, nil)
	rec := e.do("GET", "/documents/1", "", "Accept", "text/html")
	e.expect(rec, 302)
	if loc := rec.Header().Get("Location"); loc != "/login?next=%2Fdocuments%2F1" {
		t.Errorf("Location %q", loc)
	}
	rec = e.do("GET", "/documents/1", "")
	e.expect(rec, 401)
	if !strings.Contains(rec.Body.String(), `"unauthenticated"`) {
		t.Errorf("body %q", rec.Body.String())
	}
	if e.topaz.Calls() == 0 {
		t.Error("the anonymous request was not asked about: the policy decides, NONE included")
	}
}

func TestTopazUnknownUser(t *testing.T) {
	e := newEnv(t, nil)
	rec := e.do("GET", "/documents/1", "user-mallory")
	e.expect(rec, 403)
	if !strings.Contains(e.logs.String(), "does not know the identity") {
		t.Errorf("the NotFound cause is not logged:\n%s", e.logs)
	}
}

func TestTopazStopped(t *testing.T) {
	e := newEnv(t, nil)
	e.expect(e.do("GET", "/documents/1", "user-alice"), 200)
	e.topaz.Stop()
	start := time.Now()
	rec := e.do("GET", "/documents/2", "user-alice") // not cached
	e.expect(rec, 503)
	if !strings.Contains(rec.Body.String(), "authorizer_unavailable") {
		t.Errorf("body %q", rec.Body.String())
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("took %s to fail", d)
	}
	if e.served.Load() != 1 {
		t.Errorf("the app served %d requests, want 1", e.served.Load())
	}
}

func TestTopazNeverReachable(t *testing.T) {
	ln := httptest.NewServer(http.NotFoundHandler()) // a port that speaks no gRPC
	addr := ln.Listener.Addr().String()
	ln.Close() // ...and now nothing at all
	e := newEnvAt(t, nil, addr, func(c *oidcauth.AuthorizerConfig) { c.Timeout = time.Second })
	e.expect(e.do("GET", "/documents/1", "user-alice"), 503)
}

func TestTopazSlowerThanTimeout(t *testing.T) {
	e := newEnv(t, func(c *oidcauth.AuthorizerConfig) { c.Timeout = 100 * time.Millisecond })
	e.topaz.SetDelay(2 * time.Second)
	start := time.Now()
	e.expect(e.do("GET", "/documents/1", "user-alice"), 503)
	if d := time.Since(start); d >= 2*time.Second {
		t.Errorf("waited %s for a 100ms timeout", d)
	}
	if !strings.Contains(e.logs.String(), "did not answer within 100ms") {
		t.Errorf("the timeout is not logged:\n%s", e.logs)
	}
	e.topaz.SetDelay(0)
	e.expect(e.do("GET", "/documents/1", "user-alice"), 200) // the timeout was not cached
}

func TestTopazCacheHit(t *testing.T) {
	e := newEnv(t, nil)
	e.expect(e.do("GET", "/documents/1", "user-alice"), 200)
	e.expect(e.do("GET", "/documents/1", "user-alice"), 200)
	e.expect(e.do("GET", "/documents/1", "user-bob"), 403)
	e.expect(e.do("GET", "/documents/1", "user-bob"), 403)
	if n := e.topaz.Calls(); n != 2 {
		t.Fatalf("%d gRPC calls, want 2: the repeats come from the cache", n)
	}
}

func TestTopazResourcesDoNotShareCache(t *testing.T) {
	e := newEnv(t, nil)
	// carol owns document 1 in the directory, and nothing else.
	e.expect(e.do("GET", "/documents/1", "user-carol"), 200)
	e.expect(e.do("GET", "/documents/2", "user-carol"), 403)
	if n := e.topaz.Calls(); n != 2 {
		t.Fatalf("%d gRPC calls, want one per document", n)
	}
}

func TestTopazNoCache(t *testing.T) {
	e := newEnv(t, func(c *oidcauth.AuthorizerConfig) { c.CacheTTL = oidcauth.NoDecisionCache })
	for range 3 {
		e.expect(e.do("GET", "/documents/1", "user-alice"), 200)
	}
	if n := e.topaz.Calls(); n != 3 {
		t.Fatalf("%d gRPC calls with the cache off, want 3", n)
	}
}

func TestTopazConcurrentMissesShareOneCall(t *testing.T) {
	e := newEnv(t, nil)
	e.topaz.SetDelay(300 * time.Millisecond)
	const n = 10
	var wg sync.WaitGroup
	codes := make(chan int, n)
	for range n {
		wg.Go(func() { codes <- e.do("GET", "/documents/1", "user-alice").Code })
	}
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != 200 {
			t.Errorf("status %d", c)
		}
	}
	if c := e.topaz.Calls(); c != 1 {
		t.Errorf("%d gRPC calls for %d concurrent identical requests, want 1", c, n)
	}
}

func TestTopazRelation(t *testing.T) {
	e := newEnv(t, nil)
	e.expect(e.do("PUT", "/documents/2", "user-alice"), 200) // editors write all
	e.expect(e.do("PUT", "/documents/1", "user-carol"), 200) // the owner, by the manifest's can_write
	e.expect(e.do("PUT", "/documents/2", "user-carol"), 403)
	e.expect(e.do("PUT", "/documents/1", "user-bob"), 403)
	e.expect(e.do("PUT", "/documents/1", ""), 401)
	for _, p := range e.topaz.Paths() {
		if p != "docs.check" {
			t.Errorf("ReBAC asked %q, want docs.check", p)
		}
	}
	// Check, from a handler filtering a list, shares the cache.
	calls := e.topaz.Calls()
	ok, err := e.az.Check(context.Background(), oidcauth.Identity{Type: oidcauth.IdentitySubject, Value: "user-carol"}, "document", "1", "can_write")
	if !ok || err != nil || e.topaz.Calls() != calls {
		t.Errorf("Check = %v, %v with %d new calls", ok, err, e.topaz.Calls()-calls)
	}
	ok, err = e.az.Check(context.Background(), oidcauth.Identity{Type: oidcauth.IdentitySubject, Value: "user-carol"}, "document", "1", "can_read")
	if !ok || err != nil {
		t.Errorf("Check can_read = %v, %v; the owner can read", ok, err)
	}
}

func TestTopazSeveralPathValues(t *testing.T) {
	e := newEnv(t, nil)
	e.expect(e.do("GET", "/orgs/acme/docs/7", "user-erin"), 200)
	e.expect(e.do("GET", "/orgs/globex/docs/7", "user-erin"), 403)
	e.expect(e.do("GET", "/orgs/globex/docs/7", "user-frank"), 200)
	for _, p := range e.topaz.Paths() {
		if p != "docs.GET.orgs.__org.docs.__id" {
			t.Errorf("policy path %q", p)
		}
	}
}

func TestTopazInput(t *testing.T) {
	// testdata's docs.GET.whoami allows only if input is what topazd
	// builds: identity, user, policy and resource.
	e := newEnv(t, nil)
	e.expect(e.do("GET", "/whoami", "user-alice"), 200)
	e.expect(e.do("GET", "/whoami", ""), 401)
}

func TestTopazJWTIdentity(t *testing.T) {
	e := newEnv(t, func(c *oidcauth.AuthorizerConfig) { c.Identity = c.Auth.IDTokenIdentity })
	e.expect(e.do("GET", "/documents/1", "user-alice"), 200)
	e.expect(e.do("GET", "/documents/1", "user-bob"), 403)
	// An expired ID token is refused by the authorizer: 403, never access.
	e.expect(e.do("GET", "/documents/1", "user-alice", "X-Test-Expired", "1"), 403)
	if strings.Contains(e.logs.String(), "eyJ") {
		t.Errorf("a token was logged:\n%s", e.logs)
	}
}

func TestTopazSessionStoreDown(t *testing.T) {
	e := newEnv(t, nil)
	rec := e.do("GET", "/documents/1", "user-alice", "X-Test-Store", "down")
	e.expect(rec, 503)
	if !strings.Contains(rec.Body.String(), "session_store_unavailable") {
		t.Errorf("body %q", rec.Body.String())
	}
	if e.topaz.Calls() != 0 {
		t.Error("asked the authorizer without knowing the user")
	}
}

func TestTopazAllowed(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	carol := oidcauth.Identity{Type: oidcauth.IdentitySubject, Value: "user-carol"}
	var readable []string
	for _, id := range []string{"1", "2", "3"} {
		ok, err := e.az.Allowed(ctx, carol, "docs.GET.documents.__id", map[string]any{"id": id})
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			readable = append(readable, id)
		}
	}
	if strings.Join(readable, ",") != "1" {
		t.Errorf("carol can read %v, want [1]", readable)
	}
	ok, err := e.az.Allowed(ctx, oidcauth.Identity{Type: oidcauth.IdentitySubject, Value: "user-mallory"}, "docs.GET.documents.__id", map[string]any{"id": "1"})
	if ok || err != nil {
		t.Errorf("unknown user: %v, %v; want false, nil", ok, err)
	}
	e.topaz.Stop()
	if _, err := e.az.Allowed(ctx, carol, "docs.GET.documents.__id", map[string]any{"id": "9"}); err == nil {
		t.Error("no error with the authorizer stopped")
	}
}

// benchEnv is an env whose request has already been through a first
// decision.
func benchRequest(b *testing.B, e *env) (*httptest.ResponseRecorder, *http.Request) {
	r := httptest.NewRequest("GET", "/documents/1", nil)
	r.Header.Set("X-Test-User", "user-alice")
	rec := httptest.NewRecorder()
	e.app.ServeHTTP(rec, r)
	if rec.Code != 200 {
		b.Fatalf("status %d: %s", rec.Code, e.logs)
	}
	return rec, r
}

func BenchmarkTopazCachedDecision(b *testing.B) {
	e := newEnv(b, nil)
	_, r := benchRequest(b, e)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		rec := httptest.NewRecorder()
		e.app.ServeHTTP(rec, r)
	}
	b.StopTimer()
	if e.topaz.Calls() != 1 {
		b.Fatalf("%d gRPC calls, want 1", e.topaz.Calls())
	}
}

func BenchmarkTopazMiss(b *testing.B) {
	e := newEnv(b, func(c *oidcauth.AuthorizerConfig) { c.CacheTTL = oidcauth.NoDecisionCache })
	_, r := benchRequest(b, e)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		rec := httptest.NewRecorder()
		e.app.ServeHTTP(rec, r)
	}
}
