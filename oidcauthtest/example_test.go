package oidcauthtest_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/oidcauth/oidcauth"
	"github.com/oidcauth/oidcauth/oidcauthtest"
)

// routes is the application under test: a public home page, a dashboard
// for signed-in users and a JSON API endpoint.
func routes(auth *oidcauth.Auth) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "home")
	})
	mux.Handle("GET /dashboard", auth.RequireUser(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, _ := oidcauth.UserFrom(r.Context())
		fmt.Fprintf(w, "dashboard of %s", u.Name)
	})))
	mux.Handle("GET /api/whoami", auth.RequireUser(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, _ := oidcauth.UserFrom(r.Context())
		fmt.Fprint(w, u.Subject)
	})))
	return mux
}

// A handler test as Alice: NewRequest logs her in and returns a request
// carrying her session.
func Example() {
	runTest(func(t testing.TB) { // in your code: func TestDashboard(t *testing.T) {
		auth := oidcauthtest.NewAuth(t)
		app := auth.Handler(routes(auth))

		rec := httptest.NewRecorder()
		app.ServeHTTP(rec, oidcauthtest.NewRequest(t, auth, "alice", "GET", "/dashboard", nil))
		fmt.Println(rec.Code, rec.Body)

		// Anonymous: an API client gets 401, a browser is sent to log in.
		rec = httptest.NewRecorder()
		app.ServeHTTP(rec, httptest.NewRequest("GET", "/dashboard", nil))
		fmt.Println(rec.Code, strings.TrimSpace(rec.Body.String()))
	})
	// Output:
	// 200 dashboard of Alice Liddell
	// 401 {"error":"unauthenticated"}
}

// An end-to-end test over HTTP: Client returns a client whose cookie jar
// holds Bob's session for the test server.
func ExampleClient() {
	runTest(func(t testing.TB) {
		auth := oidcauthtest.NewAuth(t)
		srv := httptest.NewServer(auth.Handler(routes(auth)))
		t.Cleanup(srv.Close)

		bob := oidcauthtest.Client(t, auth, srv, "bob")
		fmt.Println(get(t, bob, srv.URL+"/dashboard"))
		get(t, bob, srv.URL+"/logout") // the jar drops the session cookie
		fmt.Println(get(t, bob, srv.URL+"/dashboard"))
	})
	// Output:
	// 200 dashboard of Bob Builder
	// 401 {"error":"unauthenticated"}
}

// get returns the status and body of GET url.
func get(t testing.TB, c *http.Client, url string) string {
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return fmt.Sprint(resp.StatusCode, " ", strings.TrimSpace(string(body)))
}

// An API that takes bearer tokens (Config.APIAudience): BearerToken is an
// access token of the user for it.
func ExampleBearerToken() {
	runTest(func(t testing.TB) {
		auth := oidcauthtest.NewAuth(t, oidcauthtest.WithConfig(func(c *oidcauth.Config) {
			c.APIAudience = "https://api.example.com"
		}))
		app := auth.Handler(routes(auth))

		req := httptest.NewRequest("GET", "/api/whoami", nil)
		req.Header.Set("Authorization", "Bearer "+oidcauthtest.BearerToken(t, auth, "carol"))
		rec := httptest.NewRecorder()
		app.ServeHTTP(rec, req)
		fmt.Println(rec.Code, rec.Body)
	})
	// Output: 200 user-carol
}

// Your own users, with extra claims.
func ExampleWithUsers() {
	runTest(func(t testing.TB) {
		idp := oidcauthtest.NewProvider(t, oidcauthtest.WithUsers(oidcauthtest.User{
			Subject:  "f6b1c0de",
			Username: "dana",
			Name:     "Dana Scully",
			Email:    "dana@example.com",
			Claims:   map[string]any{"groups": []string{"x-files"}},
		}))
		auth := oidcauthtest.NewAuth(t, oidcauthtest.WithProvider(idp))
		rec := httptest.NewRecorder()
		auth.Handler(routes(auth)).ServeHTTP(rec, oidcauthtest.NewRequest(t, auth, "dana", "GET", "/dashboard", nil))
		fmt.Println(rec.Body)
	})
	// Output: dashboard of Dana Scully
}

// How the app copes when the identity provider refuses a login.
func ExampleProvider_Misbehave() {
	runTest(func(t testing.TB) {
		idp := oidcauthtest.NewProvider(t)
		auth := oidcauthtest.NewAuth(t, oidcauthtest.WithProvider(idp))

		idp.Misbehave(oidcauthtest.Misbehavior{LoginError: "access_denied"})
		resp := oidcauthtest.TryLogin(t, auth, "alice")
		var body struct{ Error string }
		_ = json.NewDecoder(resp.Body).Decode(&body)
		fmt.Println(resp.StatusCode, body.Error)

		idp.Misbehave(oidcauthtest.Misbehavior{TokenStatus: http.StatusServiceUnavailable})
		fmt.Println(oidcauthtest.TryLogin(t, auth, "alice").StatusCode)

		idp.Misbehave(oidcauthtest.Misbehavior{}) // behave again
		fmt.Println(oidcauthtest.TryLogin(t, auth, "alice").StatusCode)
	})
	// Output:
	// 400 idp_error
	// 502
	// 302
}

// The user logs out at the identity provider, which tells the app through
// back-channel logout: their session here ends too.
func ExampleLogoutToken() {
	runTest(func(t testing.TB) {
		auth := oidcauthtest.NewAuth(t)
		app := auth.Handler(routes(auth))
		session := oidcauthtest.Login(t, auth, "alice")

		form := url.Values{"logout_token": {oidcauthtest.LogoutToken(t, auth, "alice")}}
		req := httptest.NewRequest("POST", "/backchannel-logout", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		rec := httptest.NewRecorder()
		app.ServeHTTP(rec, req)
		fmt.Println(rec.Code)

		req = httptest.NewRequest("GET", "/dashboard", nil)
		for _, c := range session {
			req.AddCookie(c)
		}
		rec = httptest.NewRecorder()
		app.ServeHTTP(rec, req)
		fmt.Println(rec.Code)
	})
	// Output:
	// 200
	// 401
}

// runTest runs test as a test would run: examples have no *testing.T, so
// it passes a stand-in that runs the cleanups at the end and prints a
// fatal error. In your tests, call the kit with your *testing.T.
func runTest(test func(t testing.TB)) {
	if msg := runFake(test); msg != "" {
		fmt.Println("FAIL:", msg)
	}
}

// A test of an app's authorization wiring without a Topaz: the fake
// authorizer's policy is a Go function.
func ExampleNewAuthorizer() {
	runTest(func(t testing.TB) {
		auth := oidcauthtest.NewAuth(t)
		fake := oidcauthtest.NewAuthorizer(func(id oidcauth.Identity, path string, resource map[string]any) bool {
			return id.Value == "user-alice" && path == "docs.GET.documents.__id"
		})
		az, err := oidcauth.NewAuthorizer(fake, oidcauth.AuthorizerConfig{PolicyRoot: "docs", Auth: auth})
		if err != nil {
			t.Fatal(err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /documents/{id}", az.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, "document ", r.PathValue("id"))
		})))
		app := auth.Handler(mux)

		for _, user := range []string{"alice", "bob"} {
			rec := httptest.NewRecorder()
			app.ServeHTTP(rec, oidcauthtest.NewRequest(t, auth, user, "GET", "/documents/42", nil))
			fmt.Println(user, rec.Code)
		}
	})
	// Output:
	// alice 200
	// bob 403
}
