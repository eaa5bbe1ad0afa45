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
		demo.Render(w, demo.HomePage, u)
	})
	mux.Handle("GET /private", auth.RequireUser(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, _ := oidcauth.UserFrom(r.Context())
		demo.Render(w, demo.PrivatePage, u)
	})))
	mux.HandleFunc("GET /me", demo.Me(auth))
	return mux
}
