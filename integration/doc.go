// Package integration holds oidcauth's heavy tests, in a module of their
// own so that their dependencies (chromedp, OPA, OpenID Provider libraries)
// never enter the library's users' dependency graphs: interop against real
// OpenID Providers in headless Chromium, Redis, and Topaz authorization
// through the real go-aserto client.
package integration
