package routers_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// runTest runs test as a test would run. Examples have no *testing.T, so
// it passes a stand-in that runs the cleanups at the end and prints a
// fatal error; in your tests, pass your *testing.T to oidcauthtest.
func runTest(test func(t testing.TB)) {
	f := new(fakeT)
	done := make(chan struct{})
	go func() {
		defer close(done)
		test(f)
	}()
	<-done
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
	if f.fatal != "" {
		fmt.Println("FAIL:", f.fatal)
	}
}

// fakeT implements the methods of testing.TB that oidcauthtest and these
// examples call; the embedded nil TB makes it a testing.TB.
type fakeT struct {
	testing.TB
	mu       sync.Mutex
	cleanups []func()
	fatal    string
}

func (f *fakeT) Helper() {}

func (f *fakeT) Cleanup(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cleanups = append(f.cleanups, fn)
}

func (f *fakeT) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.fatal = fmt.Sprintf(format, args...)
	f.mu.Unlock()
	runtime.Goexit()
}

// do serves GET target with the given cookies (nil: anonymous) and
// returns the status with the body or, for a redirect, where it goes.
func do(h http.Handler, target string, cookies []*http.Cookie) string {
	req := httptest.NewRequest("GET", target, nil)
	for _, c := range cookies {
		req.AddCookie(c)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return result(rec.Result())
}

// get is do over HTTP, with client.
func get(t testing.TB, client *http.Client, url string) string {
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	return result(resp)
}

func result(resp *http.Response) string {
	if loc := resp.Header.Get("Location"); loc != "" {
		if u, err := url.Parse(loc); err == nil && u.Host != "" {
			loc = "the IdP's " + u.Path // random port, state, nonce, PKCE challenge
		}
		return fmt.Sprint(resp.StatusCode, " → ", loc)
	}
	body, _ := io.ReadAll(resp.Body)
	return fmt.Sprint(resp.StatusCode, " ", strings.TrimSpace(string(body)))
}
