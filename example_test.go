package oidcauth_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	"github.com/oidcauth/oidcauth"
	"github.com/oidcauth/oidcauth/internal/devidp"
)

// issuer is the examples' identity provider: the development provider,
// started by TestMain. In an application it is your IdP's issuer URL.
var issuer string

func TestMain(m *testing.M) {
	idp, err := devidp.Listen("127.0.0.1:0", devidp.Options{
		Clients: []devidp.Client{{ID: "my-app", Secret: "my-client-secret", RedirectURIs: []string{"https://app.example.com/auth/callback"}}},
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		log.Fatal(err)
	}
	issuer = idp.Issuer()
	code := m.Run()
	idp.Close()
	os.Exit(code)
}

func exampleConfig() oidcauth.Config {
	return oidcauth.Config{
		Issuer:        issuer,
		ClientID:      "my-app",
		ClientSecret:  "my-client-secret",
		RedirectURI:   "https://app.example.com/auth/callback",
		SessionSecret: "a-random-secret-of-at-least-32-bytes!",
	}
}

func ExampleNew() {
	// Usually: cfg, err := oidcauth.ConfigFromEnv()
	cfg := oidcauth.Config{
		Issuer:        issuer, // e.g. https://id.example.com/realms/main
		ClientID:      "my-app",
		ClientSecret:  "my-client-secret",
		RedirectURI:   "https://app.example.com/auth/callback",
		SessionSecret: "a-random-secret-of-at-least-32-bytes!",
	}
	auth, err := oidcauth.New(context.Background(), cfg)
	if err != nil {
		log.Fatal(err)
	}
	_ = auth // mount auth.Handler(...) on your server
	fmt.Println("ready")
	// Output: ready
}

func ExampleAuth_Handler() {
	auth, err := oidcauth.New(context.Background(), exampleConfig())
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "public home")
	})
	// Handler serves /login, the callback and /logout, and makes the user
	// available to everything else.
	handler := auth.Handler(mux) // e.g. http.ListenAndServe(":8000", handler)

	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, httptest.NewRequest("GET", "/login", nil))
	fmt.Println(rec.Code, "to the IdP")
	// Output: 302 to the IdP
}

func ExampleAuth_RequireUser() {
	auth, err := oidcauth.New(context.Background(), exampleConfig())
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /private", auth.RequireUser(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "secret")
	})))
	handler := auth.Handler(mux)

	// A browser without a session is sent to log in; an API client gets 401.
	browser := httptest.NewRequest("GET", "/private", nil)
	browser.Header.Set("Accept", "text/html")
	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, browser)
	fmt.Println(rec.Code, rec.Header().Get("Location"))

	rec = httptest.NewRecorder()
	handler.ServeHTTP(rec, httptest.NewRequest("GET", "/private", nil))
	fmt.Print(rec.Code, " ", rec.Body.String())
	// Output:
	// 302 /login?next=%2Fprivate
	// 401 {"error":"unauthenticated"}
}

func ExampleUserFrom() {
	auth, err := oidcauth.New(context.Background(), exampleConfig())
	if err != nil {
		log.Fatal(err)
	}
	hello := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, ok := oidcauth.UserFrom(r.Context()); ok {
			fmt.Fprintf(w, "hello, %s", u.Name)
			return
		}
		fmt.Fprint(w, "hello, stranger")
	})
	rec := httptest.NewRecorder()
	auth.Handler(hello).ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	fmt.Println(rec.Body.String())
	// Output: hello, stranger
}
