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

	ln, err := net.Listen("tcp", demo.Env("ADDR", ":8000"))
	if err != nil {
		return err
	}
	defer ln.Close()
	cfg, stopIdP, err := demo.Config(ln.Addr(), "oidcauth demo")
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
	return demo.Serve(ctx, ln, auth.Handler(routes(auth)))
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
	mux.HandleFunc("GET /me", demo.Me(auth))
	return mux
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
