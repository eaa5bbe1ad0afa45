package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/oidcauth/oidcauth/internal/testenv"
)

// The wrk check must fail a run on a wrong body or status, on every wrk
// thread, and pass a right one: otherwise a broken session could pass as
// speed.
func TestWrkCheckScript(t *testing.T) {
	wrk := testenv.RequireBinary(t, "wrk")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Header.Get("Cookie") != "s=1":
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error":"unauthenticated"}`)
		case r.URL.Path == "/me":
			io.WriteString(w, `{"email":"alice@example.com","name":"Alice Liddell","sub":"user-alice"}`+"\n")
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	dir := t.TempDir()
	n := 0
	script := func(needle, cookie string) string {
		n++
		path, err := writeScript(dir, "s"+strconv.Itoa(n), needle, cookie)
		if err != nil {
			t.Fatal(err)
		}
		return path
	}
	alice, bob := `"sub":"user-alice"`, `"sub":"user-bob"`
	cfg := &config{wrk: wrk, threads: 2, connections: 4}
	for _, c := range []struct {
		name, path, script string
		ok                 bool
	}{
		{"right user", "/me", script(alice, "s=1"), true},
		{"no session", "/me", script(alice, ""), false},
		{"wrong user", "/me", script(bob, "s=1"), false},
		{"not found", "/other", script(alice, "s=1"), false},
	} {
		r, out, err := runWrk(context.Background(), cfg, srv.URL+c.path, c.script, time.Second)
		if err != nil {
			t.Fatalf("%s: %v\n%s", c.name, err, out)
		}
		if r.requests == 0 || r.p50 <= 0 || r.p99 < r.p50 || r.elapsed < time.Second/2 {
			t.Errorf("%s: implausible result %+v", c.name, r)
		}
		problem := r.problem()
		if ok := problem == ""; ok != c.ok {
			t.Errorf("%s: problem %q, want ok=%v", c.name, problem, c.ok)
		}
		if !c.ok && r.failures != r.requests {
			t.Errorf("%s: %d failures out of %d requests", c.name, r.failures, r.requests)
		}
	}
}

func TestCPUTicksAndMedian(t *testing.T) {
	if runtime.GOOS == "linux" {
		if _, err := cpuTicks(os.Getpid()); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}
