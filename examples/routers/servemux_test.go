package routers_test

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/oidcauth/oidcauth"
	"github.com/oidcauth/oidcauth/oidcauthtest"
)

// Go 1.22 ServeMux patterns: RequireUser wraps the routes that need a
// user (path values still work behind it), and Handler wraps the whole
// mux to serve /login, the callback and /logout.
func Example_serveMux() {
	runTest(func(t testing.TB) {
		auth := oidcauthtest.NewAuth(t) // in production: oidcauth.New(ctx, cfg)

		mux := http.NewServeMux()
		mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, "home")
		})
		mux.Handle("GET /docs/{id}", auth.RequireUser(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			u, _ := oidcauth.UserFrom(r.Context())
			fmt.Fprintf(w, "doc %s for %s", r.PathValue("id"), u.PreferredUsername)
		})))
		// A whole subtree behind one RequireUser.
		admin := http.NewServeMux()
		admin.HandleFunc("GET /admin/users", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, "user list")
		})
		mux.Handle("/admin/", auth.RequireUser(admin))
		app := auth.Handler(mux) // http.ListenAndServe(addr, app)

		alice := oidcauthtest.Login(t, auth, "alice")
		for _, target := range []string{"/", "/docs/42", "/admin/users"} {
			fmt.Printf("%s\n\tanonymous: %s\n\talice:     %s\n", target, do(app, target, nil), do(app, target, alice))
		}
		fmt.Println("/login", do(app, "/login", nil))
	})
	// Output:
	// /
	// 	anonymous: 200 home
	// 	alice:     200 home
	// /docs/42
	// 	anonymous: 401 {"error":"unauthenticated"}
	// 	alice:     200 doc 42 for alice
	// /admin/users
	// 	anonymous: 401 {"error":"unauthenticated"}
	// 	alice:     200 user list
	// /login 302 → the IdP's /authorize
}
