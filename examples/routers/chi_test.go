package routers_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/go-chi/chi/v5"

	"github.com/oidcauth/oidcauth"
	"github.com/oidcauth/oidcauth/oidcauthtest"
)

// chi takes oidcauth's middleware as it is. Handler goes first with Use:
// chi runs it for every request, so it serves /login, the callback and
// /logout although no chi route matches them. RequireUser guards a Group,
// or one route With it; chi's URL parameters work behind it.
func Example_chi() {
	runTest(func(t testing.TB) {
		auth := oidcauthtest.NewAuth(t) // in production: oidcauth.New(ctx, cfg)

		r := chi.NewRouter()
		r.Use(auth.Handler)
		r.Get("/", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, "home")
		})
		r.Group(func(r chi.Router) {
			r.Use(auth.RequireUser)
			r.Get("/docs/{id}", func(w http.ResponseWriter, r *http.Request) {
				u, _ := oidcauth.UserFrom(r.Context())
				fmt.Fprintf(w, "doc %s for %s", chi.URLParam(r, "id"), u.PreferredUsername)
			})
		})
		r.With(auth.RequireUser).Get("/me", func(w http.ResponseWriter, r *http.Request) {
			u, _ := oidcauth.UserFrom(r.Context())
			fmt.Fprint(w, u.Email)
		})

		srv := httptest.NewServer(r) // http.ListenAndServe(addr, r)
		t.Cleanup(srv.Close)
		bob := oidcauthtest.Client(t, auth, srv, "bob")
		anonymous := oidcauthtest.Client(t, auth, srv, "")
		for _, path := range []string{"/", "/docs/7", "/me"} {
			fmt.Printf("%s\n\tanonymous: %s\n\tbob:       %s\n", path, get(t, anonymous, srv.URL+path), get(t, bob, srv.URL+path))
		}
		fmt.Println("/login", get(t, anonymous, srv.URL+"/login"))
		fmt.Println("/logout", get(t, bob, srv.URL+"/logout"))
		fmt.Println("/me", get(t, bob, srv.URL+"/me"))
	})
	// Output:
	// /
	// 	anonymous: 200 home
	// 	bob:       200 home
	// /docs/7
	// 	anonymous: 401 {"error":"unauthenticated"}
	// 	bob:       200 doc 7 for bob
	// /me
	// 	anonymous: 401 {"error":"unauthenticated"}
	// 	bob:       200 bob@example.com
	// /login 302 → the IdP's /authorize
	// /logout 302 → the IdP's /end-session
	// /me 401 {"error":"unauthenticated"}
}
