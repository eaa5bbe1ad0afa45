// Package interop proves oidcauth against real OpenID Providers in a real
// browser: the certified panva/oidc-provider (run by Node from
// integration/testdata/op) and zitadel's OP library (run in-process), with
// the examples/basic app built and run as a binary and headless Chromium
// driven by chromedp. Everything it starts listens on loopback, on ports
// chosen at run time, and is stopped by pid when the tests end.
//
// Run it with `make integration` (or `make test`), which installs Chromium
// and the Node packages first. A plain `go test ./interop/` skips when
// chromium, node or the Node packages are missing; with OIDCAUTH_STRICT=1 it
// fails instead. On failure, screenshots, page HTML and process logs are
// saved under $OIDCAUTH_ARTIFACTS/interop (default: a temporary directory,
// named in the test log).
package interop
