package otelauth_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	metricnoop "go.opentelemetry.io/otel/metric/noop"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/oidcauth/oidcauth"
	"github.com/oidcauth/oidcauth/oidcauthtest"
	"github.com/oidcauth/oidcauth/otelauth"
)

// observers are what the benchmarks compare: no observer, otelauth on
// OpenTelemetry's no-op providers (New() in an app without an SDK), and
// otelauth on the SDK with an in-memory reader.
var observers = []struct {
	name string
	new  func(testing.TB) oidcauth.Observer
}{
	{"observer=none", func(testing.TB) oidcauth.Observer { return nil }},
	{"observer=otel-noop", func(testing.TB) oidcauth.Observer {
		return otelauth.New(otelauth.WithMeterProvider(metricnoop.NewMeterProvider()),
			otelauth.WithTracerProvider(tracenoop.NewTracerProvider()))
	}},
	{"observer=otel-sdk", func(tb testing.TB) oidcauth.Observer { return newTelemetry(tb).obs }},
}

// sink is a ResponseWriter that keeps nothing.
type sink struct{ h http.Header }

func (s *sink) Header() http.Header         { return s.h }
func (s *sink) Write(p []byte) (int, error) { return len(p), nil }
func (s *sink) WriteHeader(int)             {}

// BenchmarkRequest serves one authenticated request: a cookie session,
// loaded and checked by RequireUser, whose user the handler reads.
func BenchmarkRequest(b *testing.B) {
	for _, o := range observers {
		b.Run(o.name, func(b *testing.B) {
			var opts []oidcauthtest.Option
			if obs := o.new(b); obs != nil {
				opts = append(opts, oidcauthtest.WithOptions(oidcauth.WithObserver(obs)))
			}
			auth := oidcauthtest.NewAuth(b, opts...)
			app := auth.Handler(auth.RequireUser(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				u, _ := oidcauth.UserFrom(r.Context())
				w.Write([]byte(u.Subject))
			})))
			req := httptest.NewRequest(http.MethodGet, "/private", nil)
			for _, c := range oidcauthtest.Login(b, auth, "alice") {
				req.AddCookie(c)
			}
			rec := httptest.NewRecorder()
			if app.ServeHTTP(rec, req); rec.Code != http.StatusOK {
				b.Fatalf("the request answered %d", rec.Code)
			}
			w := &sink{h: make(http.Header)}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				app.ServeHTTP(w, req)
			}
		})
	}
}

// BenchmarkDecision asks the authorizer a question whose answer is
// cached: the hot path of an authorized request.
func BenchmarkDecision(b *testing.B) {
	topaz := oidcauthtest.NewAuthorizer(func(oidcauth.Identity, string, map[string]any) bool { return true })
	id := oidcauth.Identity{Type: oidcauth.IdentitySubject, Value: "user-alice"}
	for _, o := range observers {
		b.Run(o.name, func(b *testing.B) {
			az, err := oidcauth.NewAuthorizer(topaz, oidcauth.AuthorizerConfig{
				PolicyRoot: "docs", Identity: func(*http.Request) oidcauth.Identity { return id }, Observer: o.new(b),
			})
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			if ok, err := az.Allowed(ctx, id, "docs.GET.documents", nil); !ok || err != nil {
				b.Fatal(ok, err)
			}
			b.ReportAllocs()
			for b.Loop() {
				_, _ = az.Allowed(ctx, id, "docs.GET.documents", nil)
			}
		})
	}
}

// BenchmarkEvent is the observer alone, on the events of every request:
// a session loaded, a cached decision.
func BenchmarkEvent(b *testing.B) {
	ctx := context.Background()
	for _, o := range observers[1:] {
		obs := o.new(b)
		for _, e := range []oidcauth.Event{
			{Kind: oidcauth.EventSessionLoaded, Store: "cookie", Outcome: "user"},
			{Kind: oidcauth.EventDecision, Outcome: "allowed", Cached: true, PolicyPath: "docs.GET.documents.__id", Duration: time.Microsecond},
		} {
			b.Run(o.name+"/"+e.Kind.String(), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					obs.Event(ctx, e)
				}
			})
		}
	}
}
