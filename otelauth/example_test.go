package otelauth_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/oidcauth/oidcauth"
	"github.com/oidcauth/oidcauth/oidcauthtest"
	"github.com/oidcauth/oidcauth/otelauth"
)

// The observer goes to the Auth and to the Authorizer; the audit log of
// decisions is the Authorizer's own. The app's OpenTelemetry setup (an SDK
// with, say, a Prometheus or OTLP exporter) sets the global providers that
// otelauth.New uses; here an in-memory reader shows what was recorded.
func Example() {
	reader := sdkmetric.NewManualReader()
	otel.SetMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))

	obs := otelauth.New()

	auth, err := oidcauth.New(context.Background(), oidcauth.Config{
		Issuer:        issuer(), // e.g. https://id.example.com/realms/main
		ClientID:      "my-app",
		ClientSecret:  "my-client-secret",
		RedirectURI:   "https://app.example.com/auth/callback",
		SessionSecret: "a-random-secret-of-at-least-32-bytes!",
	}, oidcauth.WithObserver(obs))
	if err != nil {
		log.Fatal(err)
	}

	// In an app: client, err := oidcauth.TopazConfig{...}.Connect(ctx).
	// Here, a fake Topaz whose policy lets anyone read documents.
	topaz := oidcauthtest.NewAuthorizer(func(_ oidcauth.Identity, path string, _ map[string]any) bool {
		return path == "docs.GET.documents.__id"
	})
	az, err := oidcauth.NewAuthorizer(topaz, oidcauth.AuthorizerConfig{
		PolicyRoot: "docs",
		Auth:       auth,
		Observer:   obs, // Auth's observer by default: set it to send decisions elsewhere
		AuditLog:   slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{ReplaceAttr: noTime})),
	})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /documents/{id}", az.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "document ", r.PathValue("id"))
	})))
	app := auth.Handler(mux)

	for range 2 { // the second decision comes from the cache
		rec := httptest.NewRecorder()
		app.ServeHTTP(rec, httptest.NewRequest("GET", "/documents/42", nil))
		fmt.Println(rec.Code, rec.Body)
	}
	printMetrics(reader, "oidcauth.authorizer.", "oidcauth.idp.")
	// Output:
	// level=INFO msg="oidcauth: authorization decision" identity_type=NONE identity="" policy=docs.GET.documents.__id decision=allowed outcome=allowed cached=false
	// 200 document 42
	// level=INFO msg="oidcauth: authorization decision" identity_type=NONE identity="" policy=docs.GET.documents.__id decision=allowed outcome=allowed cached=true
	// 200 document 42
	// oidcauth.authorizer.decision.duration{oidcauth.decision.cached=false,oidcauth.outcome=allowed} 1
	// oidcauth.authorizer.decision.duration{oidcauth.decision.cached=true,oidcauth.outcome=allowed} 1
	// oidcauth.authorizer.decisions{oidcauth.decision.cached=false,oidcauth.outcome=allowed} 1
	// oidcauth.authorizer.decisions{oidcauth.decision.cached=true,oidcauth.outcome=allowed} 1
	// oidcauth.authorizer.request.duration{} 1
	// oidcauth.idp.request.duration{oidcauth.operation=discovery} 1
}

// issuer starts a stand-in for the identity provider that serves only
// its discovery document: enough for oidcauth.New. (Tests of an app use
// oidcauthtest, whose provider logs users in.)
func issuer() string {
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"issuer": %q, "authorization_endpoint": "%[1]s/authorize", "token_endpoint": "%[1]s/token", "jwks_uri": "%[1]s/jwks"}`,
			"http://"+r.Host)
	}))
	return idp.URL // left running: the example's process ends
}

// noTime drops the time from the audit log, for a stable output.
func noTime(_ []string, a slog.Attr) slog.Attr {
	if a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}

// printMetrics prints the data points of the metrics whose names start
// with one of prefixes: a counter's sum, a histogram's count.
func printMetrics(reader *sdkmetric.ManualReader, prefixes ...string) {
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		log.Fatal(err)
	}
	var lines []string
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if !slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(m.Name, p) }) {
				continue
			}
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					lines = append(lines, fmt.Sprintf("%s{%s} %d", m.Name, p.Attributes.Encoded(attribute.DefaultEncoder()), p.Value))
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					lines = append(lines, fmt.Sprintf("%s{%s} %d", m.Name, p.Attributes.Encoded(attribute.DefaultEncoder()), p.Count))
				}
			}
		}
	}
	slices.Sort(lines)
	for _, l := range lines {
		fmt.Println(l)
	}
}
