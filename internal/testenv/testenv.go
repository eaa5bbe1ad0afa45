// Package testenv holds what tests need from their surroundings: external
// programs (redis-server, chromium, node) that a plain `go test` may lack.
//
// Outside `make test` a test whose program is missing skips with a clear
// message; under `make test` and CI (OIDCAUTH_STRICT=1) it fails instead,
// so a green CI run always means the test ran.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// Strict reports whether missing test dependencies are failures
// (OIDCAUTH_STRICT=1, set by `make test`).
func Strict() bool { return os.Getenv("OIDCAUTH_STRICT") == "1" }

// Unavailable skips t, or fails it under Strict, because of why.
func Unavailable(t testing.TB, why string) {
	t.Helper()
	if Strict() {
		t.Fatalf("%s (OIDCAUTH_STRICT=1: run `make test`, which installs it, or install it yourself)", why)
	}
	t.Skipf("%s; skipping (run `make test` to install and run it)", why)
}

// RequireBinary returns the path of program, or skips/fails t when it is
// not on the PATH.
func RequireBinary(t testing.TB, program string) string {
	t.Helper()
	p, err := exec.LookPath(program)
	if err != nil {
		Unavailable(t, program+" is not on the PATH")
	}
	return p
}
