package oidcauth

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/oidcauth/oidcauth/internal/testenv"
)

// The hot path: one request through Handler (+ RequireUser + identity)
// compared with the bare handler. Run with make bench.

var benchSink Identity

func benchApp(a *Auth) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /private", a.RequireUser(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		benchSink = a.Identity(r)
		io.WriteString(w, "ok")
	})))
	mux.HandleFunc("GET /public", func(w http.ResponseWriter, r *http.Request) {
		if u, _ := a.User(r); u != nil { // a public page that greets users
			io.WriteString(w, "hello ")
		}
		io.WriteString(w, "ok")
	})
	return a.Handler(mux)
}

func bareApp() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /private", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	mux.HandleFunc("GET /public", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	return mux
}

func runBench(b *testing.B, h http.Handler, req *http.Request, wantStatus int) {
	b.Helper()
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != wantStatus {
			b.Fatalf("status %d", rec.Code)
		}
	}
}

// authedRequest is GET /private with alice's session cookies.
func authedRequest(h *harness) *http.Request {
	h.login("alice")
	req := httptest.NewRequest("GET", "/private", nil)
	for _, c := range h.sessionCookies() {
		req.AddCookie(c)
	}
	return req
}

// BenchmarkRequest: bare is the limit; cookie and redis are one
// authenticated request through Handler + RequireUser + Identity; the
// anonymous pair is a public page without and with the middleware.
func BenchmarkRequest(b *testing.B) {
	h := newHarness(b)
	authed := authedRequest(h)
	anon := httptest.NewRequest("GET", "/public", nil)
	app := benchApp(h.auth)
	b.Run("bare", func(b *testing.B) { runBench(b, bareApp(), authed, 200) })
	b.Run("cookie", func(b *testing.B) { runBench(b, app, authed, 200) })
	b.Run("redis", func(b *testing.B) {
		hr := redisHarness(b, testenv.StartRedis(b))
		runBench(b, benchApp(hr.auth), authedRequest(hr), 200)
	})
	b.Run("anonymous-bare", func(b *testing.B) { runBench(b, bareApp(), anon, 200) })
	b.Run("anonymous", func(b *testing.B) { runBench(b, app, anon, 200) })
}
