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
	"github.com/oidcauth/oidcauth/internal/demo"
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

	ln, err := net.Listen("tcp", demo.Env("ADDR", ":8000"))
	if err != nil {
		return err
	}
	defer ln.Close()
	cfg, stopIdP, err := demo.Config(ln.Addr(), "oidcauth + Topaz demo (log in as alice, bob or carol)")
	if err != nil {
		return err
	}
	defer stopIdP()

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

	slog.Info("topaz: authorizer", "config", tc)
	return demo.Serve(ctx, ln, auth.Handler(routes(auth, az)))
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
	mux.HandleFunc("GET /me", demo.Me(auth))
	// Policy <root>.GET.documents.__id, resource {"id": ...}: the path is
	// derived from the route's pattern.
	mux.Handle("GET /documents/{id}", az.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		demo.WriteJSON(w, http.StatusOK, map[string]string{"id": r.PathValue("id"), "action": "read", "by": subject(r)})
	})))
	// ReBAC: may the user can_write this document? Asks <root>.check.
	mux.Handle("PUT /documents/{id}", az.RequireRelation("document", "can_write", func(r *http.Request) string {
		return r.PathValue("id")
	})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		demo.WriteJSON(w, http.StatusOK, map[string]string{"id": r.PathValue("id"), "action": "write", "by": subject(r)})
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
