// Command bare is the baseline of the load run (make load): examples/basic's
// routes with the same response bodies and headers, and no authentication
// at all. GET /me and GET /private answer as the demo user chosen with
// -user (alice by default), GET / is the anonymous home page.
//
//	go run ./bench/bare -addr 127.0.0.1:8001
//
// It serves through internal/demo, as examples/basic does (same server
// timeouts, same /me writer), and logs `bare: listening addr=... open=...`
// the same way, which is how bench/load finds its port.
package main

import (
	"context"
	"flag"
	"fmt"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/oidcauth/oidcauth/internal/demo"
	"github.com/oidcauth/oidcauth/internal/devidp"
)

// user has the fields of oidcauth.User that the pages show.
type user struct {
	Subject, Email, Name, PreferredUsername string
}

func main() {
	addr := flag.String("addr", demo.Env("ADDR", "127.0.0.1:0"), "listen address (env ADDR)")
	username := flag.String("user", "alice", "the demo user /me and /private answer as")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	slog.SetDefault(log)
	if err := run(*addr, *username); err != nil {
		log.Error("bare: " + err.Error())
		os.Exit(1)
	}
}

func run(addr, username string) error {
	u, err := demoUser(username)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	defer ln.Close()
	return demo.Serve(ctx, ln, routes(u))
}

// demoUser is the development provider's demo user with that login name,
// so that the bodies are those examples/basic serves once logged in.
func demoUser(username string) (*user, error) {
	for _, d := range devidp.DemoUsers() {
		if d.PreferredUsername == username {
			return &user{Subject: d.Subject, Email: d.Email, Name: d.Name, PreferredUsername: d.PreferredUsername}, nil
		}
	}
	return nil, fmt.Errorf("no demo user %q", username)
}

// routes mirrors examples/basic's routes, handler for handler, minus
// oidcauth: the same status, headers and bodies for a signed-in user on
// /me and /private and for an anonymous one on /.
func routes(u *user) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		render(w, homePage, nil)
	})
	mux.HandleFunc("GET /private", func(w http.ResponseWriter, r *http.Request) {
		render(w, privatePage, u)
	})
	mux.HandleFunc("GET /me", func(w http.ResponseWriter, r *http.Request) {
		demo.WriteJSON(w, http.StatusOK, map[string]string{"sub": u.Subject, "email": u.Email, "name": u.Name})
	})
	return mux
}

func render(w http.ResponseWriter, t *template.Template, u *user) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_ = t.Execute(w, u)
}

// The templates are examples/basic's, verbatim.

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
