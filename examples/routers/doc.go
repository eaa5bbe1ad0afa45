// Package routers shows oidcauth with Go 1.22 ServeMux patterns and with
// the chi router, in runnable examples (see the _test.go files). It is a
// module of its own so that chi never becomes a dependency of oidcauth.
//
// Both routers take oidcauth's middleware as it is: Auth.Handler and
// Auth.RequireUser are func(http.Handler) http.Handler.
package routers
