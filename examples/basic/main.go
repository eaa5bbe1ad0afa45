// Command basic is the oidcauth demo: a public home page, a private page,
// and /me, behind OpenID Connect login.
//
// Configure it with the OIDC_* and SESSION_* variables (see the README) and
// ADDR (listen address, default ":8000"). With OIDC_ISSUER unset it needs no
// setup at all: it starts a development identity provider on loopback and
// configures itself against it.
//
//	go run ./examples/basic
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

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	slog.SetDefault(log)
	if err := run(); err != nil {
		log.Error("basic: " + err.Error())
		os.Exit(1)
	}
}

func run() error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

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

	srv := &http.Server{
		Handler:           auth.Handler(routes(auth)),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	slog.Info("basic: listening", "addr", ln.Addr().String(), "open", appURL(ln.Addr()))
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// routes is the demo app: exactly these routes; anything else is 404 (or
// 405 for another method on them).
func routes(auth *oidcauth.Auth) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		u, err := auth.User(r)
		if err != nil {
			http.Error(w, "sessions are unavailable", http.StatusServiceUnavailable)
			return
		}
		render(w, homePage, u)
	})
	mux.Handle("GET /private", auth.RequireUser(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, _ := oidcauth.UserFrom(r.Context())
		render(w, privatePage, u)
	})))
	mux.HandleFunc("GET /me", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		u, err := auth.User(r)
		switch {
		case err != nil:
			w.WriteHeader(http.StatusServiceUnavailable)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": "session_store_unavailable"})
		case u == nil:
			w.WriteHeader(http.StatusUnauthorized)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": "unauthenticated"})
		default:
			_ = json.NewEncoder(w).Encode(map[string]string{"sub": u.Subject, "email": u.Email, "name": u.Name})
		}
	})
	return mux
}

// startDevProvider starts the built-in development identity provider and
// returns this app's configuration against it: the OIDC_* values point at
// the provider, everything else (SESSION_*, REDIS_URL, ...) still comes from
// the environment.
func startDevProvider(app net.Addr) (*devidp.Provider, oidcauth.Config, error) {
	base := appURL(app)
	client := devidp.Client{
		ID:                     "oidcauth-demo",
		Secret:                 randomSecret(),
		RedirectURIs:           []string{base + "auth/callback"},
		PostLogoutRedirectURIs: []string{base},
		BackchannelLogoutURI:   base + "backchannel-logout",
	}
	idp, err := devidp.Listen("127.0.0.1:0", devidp.Options{Clients: []devidp.Client{client}})
	if err != nil {
		return nil, oidcauth.Config{}, err
	}
	slog.Warn("basic: OIDC_ISSUER is not set, so a DEVELOPMENT identity provider was started on " + idp.Issuer() +
		". It logs in anyone who clicks a demo user: never use it in production.")
	for k, v := range map[string]string{
		"OIDC_ISSUER":                   idp.Issuer(),
		"OIDC_CLIENT_ID":                client.ID,
		"OIDC_CLIENT_SECRET":            client.Secret,
		"OIDC_REDIRECT_URI":             client.RedirectURIs[0],
		"OIDC_POST_LOGOUT_REDIRECT_URI": base,
		"SESSION_SECRET":                envOr("SESSION_SECRET", randomSecret()),
	} {
		os.Setenv(k, v)
	}
	cfg, err := oidcauth.ConfigFromEnv()
	if err != nil {
		idp.Close()
		return nil, cfg, fmt.Errorf("configuration:\n%w", err)
	}
	fmt.Fprintf(os.Stderr, "\n  oidcauth demo: open %s and log in as a demo user.\n\n", base)
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

func render(w http.ResponseWriter, t *template.Template, u *oidcauth.User) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_ = t.Execute(w, u)
}

const layout = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>oidcauth demo</title>
<meta name="viewport" content="width=device-width,initial-scale=1">
<style>
body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem;color:#1d2430}
header{display:flex;justify-content:space-between;align-items:center;border-bottom:1px solid #dde3ea;padding-bottom:.75rem}
a,button{font:inherit;color:#0b5cad}
button{background:none;border:1px solid #0b5cad;border-radius:6px;padding:.3rem .8rem;cursor:pointer}
.card{border:1px solid #dde3ea;border-radius:10px;padding:1rem 1.25rem;margin-top:1.5rem}
code{background:#f2f4f7;padding:.1rem .3rem;border-radius:4px}
</style></head><body>
<header><strong>oidcauth demo</strong>
<nav>{{if .}}<form method="post" action="/logout" style="display:inline"><button type="submit">Log out</button></form>{{else}}<a href="/login">Log in</a>{{end}}</nav>
</header>
{{template "body" .}}
</body></html>`

var homePage = template.Must(template.Must(template.New("home").Parse(layout)).Parse(`{{define "body"}}
<div class="card">{{if .}}
<p>Signed in as <strong id="user-name">{{.Name}}</strong>{{with .Email}} ({{.}}){{end}}.</p>
<p>See your <a href="/private">private page</a> or <a href="/me">/me</a> as JSON.</p>
{{else}}
<p>You are not signed in. <a href="/login">Log in</a>, or open the <a href="/private">private page</a> to be asked to.</p>
{{end}}</div>{{end}}`))

var privatePage = template.Must(template.Must(template.New("private").Parse(layout)).Parse(`{{define "body"}}
<div class="card"><h1>Private page</h1>
<p>Hello, <strong id="user-name">{{.Name}}</strong>. Only signed-in users see this.</p>
<p>Subject: <code>{{.Subject}}</code>{{with .PreferredUsername}}, username: <code>{{.}}</code>{{end}}</p>
<p><a href="/">Home</a></p></div>{{end}}`))
