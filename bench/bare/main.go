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
		demo.Render(w, demo.HomePage, nil)
	})
	mux.HandleFunc("GET /private", func(w http.ResponseWriter, r *http.Request) {
		demo.Render(w, demo.PrivatePage, u)
	})
	mux.HandleFunc("GET /me", func(w http.ResponseWriter, r *http.Request) {
		demo.WriteJSON(w, http.StatusOK, map[string]string{"sub": u.Subject, "email": u.Email, "name": u.Name})
	})
	return mux
}
