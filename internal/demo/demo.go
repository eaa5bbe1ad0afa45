// Package demo is what the example apps share: configuration from the
// environment or, with OIDC_ISSUER unset, against a freshly started
// development identity provider; serving with sane timeouts and a graceful
// stop; and the /me route of the examples' contract.
package demo

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"time"

	"github.com/oidcauth/oidcauth"
	"github.com/oidcauth/oidcauth/internal/devidp"
)

// Config returns the app's configuration. With OIDC_ISSUER set it is
// ConfigFromEnv's. Otherwise it starts the development provider on
// loopback, points the OIDC_* values at it and reads everything else
// (SESSION_*, REDIS_URL, ...) from the environment as usual; stop ends the
// provider. app is the address the app listens on; hello is printed for the
// person who started it.
func Config(app net.Addr, hello string) (cfg oidcauth.Config, stop func(), err error) {
	if os.Getenv("OIDC_ISSUER") != "" {
		cfg, err = oidcauth.ConfigFromEnv()
		if err != nil {
			return cfg, nil, fmt.Errorf("configuration:\n%w", err)
		}
		return cfg, func() {}, nil
	}
	base := AppURL(app)
	client := devidp.Client{
		ID:                     "oidcauth-demo",
		Secret:                 randomSecret(),
		RedirectURIs:           []string{base + "auth/callback"},
		PostLogoutRedirectURIs: []string{base},
		BackchannelLogoutURI:   base + "backchannel-logout",
	}
	idp, err := devidp.Listen("127.0.0.1:0", devidp.Options{Clients: []devidp.Client{client}})
	if err != nil {
		return cfg, nil, err
	}
	slog.Warn("OIDC_ISSUER is not set, so a DEVELOPMENT identity provider was started on " + idp.Issuer() +
		". It logs in anyone who clicks a demo user: never use it in production.")
	for k, v := range map[string]string{
		"OIDC_ISSUER":                   idp.Issuer(),
		"OIDC_CLIENT_ID":                client.ID,
		"OIDC_CLIENT_SECRET":            client.Secret,
		"OIDC_REDIRECT_URI":             client.RedirectURIs[0],
		"OIDC_POST_LOGOUT_REDIRECT_URI": base,
		"SESSION_SECRET":                Env("SESSION_SECRET", randomSecret()),
	} {
		os.Setenv(k, v)
	}
	if cfg, err = oidcauth.ConfigFromEnv(); err != nil {
		idp.Close()
		return cfg, nil, fmt.Errorf("configuration:\n%w", err)
	}
	fmt.Fprintf(os.Stderr, "\n  %s: open %s and log in as a demo user.\n\n", hello, base)
	return cfg, func() { idp.Close() }, nil
}

// Serve serves h on ln until ctx ends, then shuts down gracefully. With
// DEBUG_ADDR set it also serves runtime figures on that loopback address;
// see ServeDebug.
func Serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	if addr := os.Getenv("DEBUG_ADDR"); addr != "" {
		stop, err := ServeDebug(addr)
		if err != nil {
			return fmt.Errorf("DEBUG_ADDR: %w", err)
		}
		defer stop()
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	slog.Info(filepath.Base(os.Args[0])+": listening", "addr", ln.Addr().String(), "open", AppURL(ln.Addr()))
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// ServeDebug serves, on addr (a loopback address such as 127.0.0.1:0, and
// nothing else), a separate listener for tools such as bench/soak:
// GET /debug/runtime is {"goroutines","heap_alloc","heap_objects","num_gc"}
// measured after a garbage collection, GET /debug/goroutines is every
// goroutine's stack, and GET /debug/heap a heap profile (go tool pprof). It logs its URL ("debug listener" debug_url=...); stop
// closes it.
func ServeDebug(addr string) (stop func(), err error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("%q is not a loopback address: the debug listener serves this machine only", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	if !ln.Addr().(*net.TCPAddr).IP.IsLoopback() {
		ln.Close()
		return nil, fmt.Errorf("%q resolved to %s, not a loopback address", addr, ln.Addr())
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /debug/runtime", func(w http.ResponseWriter, r *http.Request) {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		WriteJSON(w, http.StatusOK, map[string]uint64{
			"goroutines": uint64(runtime.NumGoroutine()), "heap_alloc": m.HeapAlloc,
			"heap_objects": m.HeapObjects, "num_gc": uint64(m.NumGC),
		})
	})
	mux.HandleFunc("GET /debug/goroutines", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_ = pprof.Lookup("goroutine").WriteTo(w, 2)
	})
	mux.HandleFunc("GET /debug/heap", func(w http.ResponseWriter, r *http.Request) {
		runtime.GC()
		w.Header().Set("Content-Type", "application/octet-stream")
		_ = pprof.Lookup("heap").WriteTo(w, 0)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	slog.Info("debug listener (runtime figures, loopback only)", "debug_url", "http://"+ln.Addr().String()+"/debug/runtime")
	return func() { _ = srv.Close() }, nil
}

// Me is GET /me of the examples' contract: 200 {"sub","email","name"} with
// a session, 401 {"error":"unauthenticated"} without, 503 when the session
// store is down.
func Me(auth *oidcauth.Auth) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		u, err := auth.User(r)
		switch {
		case err != nil:
			WriteJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "session_store_unavailable"})
		case u == nil:
			WriteJSON(w, http.StatusUnauthorized, map[string]string{"error": "unauthenticated"})
		default:
			WriteJSON(w, http.StatusOK, map[string]string{"sub": u.Subject, "email": u.Email, "name": u.Name})
		}
	}
}

// WriteJSON writes v as an uncacheable JSON response.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// AppURL is the URL a person on this machine opens for an app on a.
func AppURL(a net.Addr) string {
	host, port, _ := net.SplitHostPort(a.String())
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port) + "/"
}

// Env returns the variable name, or def when it is unset or empty.
func Env(name, def string) string {
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
