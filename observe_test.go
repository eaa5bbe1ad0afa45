package oidcauth

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oidcauth/oidcauth/internal/devidp"
)

// recorder is an Observer that remembers what it was told.
type recorder struct {
	mu     sync.Mutex
	events []Event
	ops    []string // "op:ok" or "op:error"
}

func (r *recorder) Event(_ context.Context, e Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) Start(ctx context.Context, op Op) (context.Context, func(error)) {
	return ctx, func(err error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		result := "ok"
		if err != nil {
			result = "error"
		}
		r.ops = append(r.ops, string(op)+":"+result)
	}
}

// kinds lists the recorded events as "kind/outcome/store".
func (r *recorder) kinds() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.events {
		out = append(out, strings.TrimRight(fmt.Sprintf("%s/%s/%s", e.Kind, e.Outcome, e.Store), "/"))
	}
	return out
}

func (r *recorder) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events, r.ops = nil, nil
}

func TestObserverSeesLoginsSessionsAndIdPCalls(t *testing.T) {
	rec := &recorder{}
	h := newHarness(t, harnessOption{config: offlineAccess, opts: []Option{WithObserver(rec)}})
	h.login("alice")
	h.mustBe("user-alice")
	want := []string{"login_started", "login_succeeded", "session_loaded/user/cookie"}
	if got := rec.kinds(); !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}
	if !slices.Contains(rec.ops, "token:ok") || !slices.Equal(rec.ops[:1], []string{"discovery:ok"}) {
		t.Fatalf("timed calls: %v", rec.ops)
	}
	for _, e := range rec.events {
		if e.Kind == EventLoginSucceeded && e.Duration <= 0 {
			t.Error("the login's duration was not measured")
		}
	}

	// A failed login says why; an anonymous request says so.
	rec.reset()
	h.client = newBrowser()
	h.idp.SetMisbehavior(devidp.Misbehavior{WrongAudience: true})
	h.login("alice")
	h.idp.SetMisbehavior(devidp.Misbehavior{})
	h.get("/me", "Cookie", "oidcauth=forged")
	want = []string{"login_started", "login_failed/invalid_id_token", "session_loaded/anonymous/cookie"}
	if got := rec.kinds(); !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}

	// Refresh and back-channel logout.
	h.client = newBrowser()
	h.login("bob")
	sess := sessionOf(t, h)
	rec.reset()
	h.auth.now = func() time.Time { return sess.AccessTokenExpiry }
	if _, err := h.auth.Token(httptest.NewRecorder(), reqWithCookies(h)); err != nil {
		t.Fatal(err)
	}
	h.auth.now = time.Now
	postLogoutToken(t, h, "garbage")
	postLogoutToken(t, h, h.idp.SignJWT(nil, logoutClaims(h, "", sess.SID)))
	want = []string{"session_loaded/user/cookie", "refresh/success", "backchannel_logout/invalid", "backchannel_logout/success"}
	if got := rec.kinds(); !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}
	if !slices.Contains(rec.ops, "refresh:ok") {
		t.Fatalf("refresh not timed: %v", rec.ops)
	}
}

func TestObserverAndAuditLogSeeDecisions(t *testing.T) {
	rec := &recorder{}
	audit := new(bytes.Buffer)
	at := newAzTest(t, allowUsers("user-alice"), func(c *AuthorizerConfig) {
		c.Observer = rec
		c.AuditLog = slog.New(slog.NewTextHandler(audit, nil))
	})
	at.want(at.do("GET", "/documents/1", "user-alice"), http.StatusOK)
	at.want(at.do("GET", "/documents/1", "user-alice"), http.StatusOK)
	at.want(at.do("GET", "/documents/1", "user-bob"), http.StatusForbidden)
	var got []string
	for _, e := range rec.events {
		if e.Kind == EventDecision {
			got = append(got, fmt.Sprintf("%s cached=%v %s", e.Outcome, e.Cached, e.PolicyPath))
		}
	}
	want := []string{"allowed cached=false docs.GET.documents.__id", "allowed cached=true docs.GET.documents.__id", "denied cached=false docs.GET.documents.__id"}
	if !slices.Equal(got, want) {
		t.Fatalf("decisions %q, want %q", got, want)
	}
	if n := slices.Index(rec.ops, "authorize:ok"); n < 0 || strings.Count(strings.Join(rec.ops, ","), "authorize:") != 2 {
		t.Fatalf("authorizer calls timed: %v (cache hits make none)", rec.ops)
	}
	lines := strings.Split(strings.TrimSpace(audit.String()), "\n")
	if len(lines) != 3 || !strings.Contains(lines[2], "identity=user-bob") || !strings.Contains(lines[2], "outcome=denied") ||
		!strings.Contains(lines[1], "cached=true") || !strings.Contains(lines[0], "policy=docs.GET.documents.__id") {
		t.Fatalf("audit log:\n%s", audit)
	}
}

func TestNoObserverCostsNothing(t *testing.T) {
	at := newAzTest(t, allowUsers("user-alice"), nil)
	q := question{id: Identity{IdentitySubject, "user-alice"}, path: "docs.p", pairs: []kv{{"id", "1"}}}
	if _, err := at.az.decideAndRecord(context.Background(), &q); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = at.az.decideAndRecord(context.Background(), &q) }); n != 0 {
		t.Errorf("an unobserved cache hit allocates %.0f times", n)
	}
}

// TestOneSessionLoadPerRequest: an anonymous request through an
// Authorizer loads (and reports) its session once, not once for the
// identity and again for the store check.
func TestOneSessionLoadPerRequest(t *testing.T) {
	rec := &recorder{}
	h := newHarness(t, harnessOption{opts: []Option{WithObserver(rec)}})
	az, err := NewAuthorizer(allowUsers("user-alice"), AuthorizerConfig{PolicyRoot: "docs", Auth: h.auth})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /documents/{id}", az.Middleware(http.NotFoundHandler()))
	app := h.auth.Handler(mux)
	rec.reset()
	w := httptest.NewRecorder()
	app.ServeHTTP(w, httptest.NewRequest("GET", "/documents/1", nil))
	if w.Code != http.StatusUnauthorized {
		t.Fatalf("anonymous: %d", w.Code)
	}
	n := 0
	for _, k := range rec.kinds() {
		if strings.HasPrefix(k, "session_loaded") {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d session loads for one request: %v", n, rec.kinds())
	}
}
