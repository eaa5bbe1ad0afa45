// Command topaz is the oidcauth demo with Topaz authorization: OpenID
// Connect login as in examples/basic, and documents that a Topaz
// authorizer lets users read and write.
//
// Configure login with the OIDC_* and SESSION_* variables and ADDR (listen
// address, default ":8000"), exactly as examples/basic; with OIDC_ISSUER
// unset it starts the development identity provider on loopback. Configure
// the authorizer with the TOPAZ_* variables: TOPAZ_AUTHORIZER_ADDR (default
// localhost:8282), TOPAZ_NO_TLS=true for plain gRPC, TOPAZ_CA_CERT,
// TOPAZ_INSECURE, TOPAZ_API_KEY, TOPAZ_TENANT_ID, TOPAZ_POLICY_ROOT (default
// "docs") and TOPAZ_DECISION_CACHE_TTL. See README.md for running Topaz
// with this example's policy (policy/) and directory (directory/).
//
// Routes: GET / (public), GET /me (the user as JSON, or 401), /login,
// /auth/callback, /logout, and
//
//	GET /documents/{id}  policy <root>.GET.documents.__id, resource {"id": id}
//	PUT /documents/{id}  <root>.check: relation can_write on document id
//
//	go run ./examples/topaz
package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/oidcauth/oidcauth"
	"github.com/oidcauth/oidcauth/internal/devidp"
)

// defaultPolicyRoot is the package root of policy/.
const defaultPolicyRoot = "docs"

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	slog.SetDefault(log)
	if err := run(); err != nil {
		log.Error("topaz: " + err.Error())
		os.Exit(1)
	}
}

func run() error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	tc, err := oidcauth.TopazConfigFromEnv()
	if err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	if tc.PolicyRoot == "" {
		tc.PolicyRoot = defaultPolicyRoot
	}

	addr := envOr("ADDR", ":8000")
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	defer ln.Close()

	var cfg oidcauth.Config
	if os.Getenv("OIDC_ISSUER") == "" {
		idp, devCfg, err := startDevProvider(ln.Addr())
		if err != nil {
			return err
		}
		defer idp.Close()
		cfg = devCfg
	} else if cfg, err = oidcauth.ConfigFromEnv(); err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}

	startCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	auth, err := oidcauth.New(startCtx, cfg)
	if err != nil {
		return err
	}

	// The go-aserto client connects lazily: while Topaz is down the
	// document routes answer 503, never allow.
	client, err := tc.Connect()
	if err != nil {
		return err
	}
	defer client.Close()
	az, err := oidcauth.NewAuthorizer(client, oidcauth.AuthorizerConfig{
		PolicyRoot: tc.PolicyRoot,
		Auth:       auth,
		CacheTTL:   tc.DecisionCacheTTL,
	})
	if err != nil {
		return err
	}

	srv := &http.Server{
		Handler:           auth.Handler(routes(auth, az)),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	slog.Info("topaz: listening", "addr", ln.Addr().String(), "open", appURL(ln.Addr()), "authorizer", tc)
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// routes is the demo app: exactly these routes; anything else is 404 (or
// 405 for another method on them).
func routes(auth *oidcauth.Auth, az *oidcauth.Authorizer) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		u, err := auth.User(r)
		if err != nil {
			http.Error(w, "sessions are unavailable", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_ = homePage.Execute(w, u)
	})
	mux.HandleFunc("GET /me", func(w http.ResponseWriter, r *http.Request) {
		u, err := auth.User(r)
		switch {
		case err != nil:
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "session_store_unavailable"})
		case u == nil:
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "unauthenticated"})
		default:
			writeJSON(w, http.StatusOK, map[string]string{"sub": u.Subject, "email": u.Email, "name": u.Name})
		}
	})
	// Policy <root>.GET.documents.__id, resource {"id": ...}: the path is
	// derived from the route's pattern.
	mux.Handle("GET /documents/{id}", az.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"id": r.PathValue("id"), "action": "read", "by": subject(r)})
	})))
	// ReBAC: may the user can_write this document? Asks <root>.check.
	mux.Handle("PUT /documents/{id}", az.RequireRelation("document", "can_write", func(r *http.Request) string {
		return r.PathValue("id")
	})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"id": r.PathValue("id"), "action": "write", "by": subject(r)})
	})))
	return mux
}

// subject is the signed-in user's subject, or "" for an anonymous request
// that a policy allowed.
func subject(r *http.Request) string {
	if u, ok := oidcauth.UserFrom(r.Context()); ok {
		return u.Subject
	}
	return ""
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// startDevProvider starts the built-in development identity provider and
// returns a configuration for this app against it (as examples/basic).
func startDevProvider(app net.Addr) (*devidp.Provider, oidcauth.Config, error) {
	base := appURL(app)
	secret := envOr("SESSION_SECRET", randomSecret())
	client := devidp.Client{
		ID:                     "oidcauth-demo",
		Secret:                 randomSecret(),
		RedirectURIs:           []string{base + "auth/callback"},
		PostLogoutRedirectURIs: []string{base},
	}
	idp, err := devidp.Listen("127.0.0.1:0", devidp.Options{Clients: []devidp.Client{client}})
	if err != nil {
		return nil, oidcauth.Config{}, err
	}
	slog.Warn("topaz: OIDC_ISSUER is not set, so a DEVELOPMENT identity provider was started on " + idp.Issuer() +
		". It logs in anyone who clicks a demo user: never use it in production.")
	cfg := oidcauth.Config{
		Issuer:                idp.Issuer(),
		ClientID:              client.ID,
		ClientSecret:          client.Secret,
		RedirectURI:           client.RedirectURIs[0],
		PostLogoutRedirectURI: base,
		SessionSecret:         secret,
	}
	fmt.Fprintf(os.Stderr, "\n  oidcauth + Topaz demo: open %s and log in as alice, bob or carol.\n\n", base)
	return idp, cfg, nil
}

// appURL is the URL a person on this machine opens for the app.
func appURL(a net.Addr) string {
	host, port, _ := net.SplitHostPort(a.String())
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port) + "/"
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func randomSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

var homePage = template.Must(template.New("home").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>oidcauth + Topaz demo</title>
<meta name="viewport" content="width=device-width,initial-scale=1">
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem;color:#1d2430}a,button{font:inherit;color:#0b5cad}code{background:#f2f4f7;padding:.1rem .3rem;border-radius:4px}</style>
</head><body>
<h1>oidcauth + Topaz demo</h1>
{{if .}}<p>Signed in as <strong id="user-name">{{.Name}}</strong> (<code>{{.Subject}}</code>).
<form method="post" action="/logout" style="display:inline"><button type="submit">Log out</button></form></p>
{{else}}<p>You are not signed in. <a href="/login">Log in</a> as alice, bob or carol.</p>{{end}}
<p>Topaz decides: <a href="/documents/1">document 1</a>, <a href="/documents/2">document 2</a>
(<code>PUT /documents/{id}</code> writes). Alice reads and writes everything, carol owns document 1, bob gets 403.</p>
</body></html>
`))
