package interop

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The app under test is the real examples/basic, built once per run and
// started as a binary with OIDC_* variables: the strongest contract test,
// since users start from it. It serves GET / (public), GET /private (login
// required), GET /me ({"sub","email","name"} or 401) and oidcauth's
// /login, /auth/callback and /logout.

var appBinary struct {
	once sync.Once
	path string
	err  error
}

// buildApp builds examples/basic into dir, with the race detector when
// this test binary has it, so that a data race in the library during a
// real browser flow shows up (see checkRace).
func buildApp(ctx context.Context, dir string) (string, error) {
	appBinary.once.Do(func() {
		root, err := filepath.Abs("../..")
		if err != nil {
			appBinary.err = err
			return
		}
		if b, err := os.ReadFile(filepath.Join(root, "go.mod")); err != nil || !strings.Contains(string(b), "module github.com/oidcauth/oidcauth\n") {
			appBinary.err = fmt.Errorf("%s is not the oidcauth module's root", root)
			return
		}
		goBin, err := lookPath("go")
		if err != nil {
			appBinary.err = err
			return
		}
		out := filepath.Join(dir, "basic")
		args := []string{"build", "-o", out}
		if raceEnabled {
			args = append(args, "-race")
		}
		cmd := exec.CommandContext(ctx, goBin, append(args, "./examples/basic")...)
		cmd.Dir = root
		if b, err := cmd.CombinedOutput(); err != nil {
			appBinary.err = fmt.Errorf("go build ./examples/basic: %v\n%s", err, b)
			return
		}
		appBinary.path = out
	})
	return appBinary.path, appBinary.err
}

// AppOptions configure one examples/basic process.
type AppOptions struct {
	// Port to listen on, 127.0.0.1 only; nil picks a free one. The
	// client's URIs at the OP name it, so callers reserve it first
	// (reservePort), register the client, then start the app.
	Port *Port
	// Issuer, ClientID, ClientSecret: the OP and this app's client there.
	Issuer, ClientID, ClientSecret string
	// SessionSecret defaults to a random one; instances that must share
	// sessions (Redis) share it.
	SessionSecret string
	// Env adds variables, e.g. OIDC_USERINFO=true, OIDC_SCOPES=...,
	// REDIS_URL=... .
	Env []string
}

// App is a running examples/basic.
type App struct {
	// Base is the app's URL, http://127.0.0.1:PORT, without a trailing
	// slash.
	Base string
	proc *process
}

// startApp starts the examples/basic binary at bin with opts and waits
// until it serves its home page.
func startApp(ctx context.Context, bin, name, logDir string, opts AppOptions) (*App, error) {
	port := opts.Port
	if port == nil {
		var err error
		if port, err = reservePort(); err != nil {
			return nil, err
		}
	}
	base := port.Base()
	secret := opts.SessionSecret
	if secret == "" {
		secret = randomToken()
	}
	env := []string{
		"ADDR=127.0.0.1:" + strconv.Itoa(port.Num),
		"OIDC_ISSUER=" + opts.Issuer,
		"OIDC_CLIENT_ID=" + opts.ClientID,
		"OIDC_CLIENT_SECRET=" + opts.ClientSecret,
		"OIDC_REDIRECT_URI=" + base + "/auth/callback",
		"OIDC_POST_LOGOUT_REDIRECT_URI=" + base + "/",
		"SESSION_SECRET=" + secret,
		// A race report fails the test (checkRace), it must not kill the app.
		"GORACE=halt_on_error=0",
	}
	cmd := exec.Command(bin)
	cmd.Env = environ(append(env, opts.Env...)...)
	port.release()
	proc, err := startProcess(name, cmd, logDir, nil)
	if err != nil {
		return nil, err
	}
	app := &App{Base: base, proc: proc}
	if err := app.waitReady(ctx); err != nil {
		_ = proc.stop(5 * time.Second)
		return nil, fmt.Errorf("%w\n%s output:\n%s", err, name, proc.output())
	}
	return app, nil
}

// waitReady polls the home page until it answers 200.
func (a *App) waitReady(ctx context.Context) error {
	client := &http.Client{Timeout: 2 * time.Second}
	var last error
	for {
		if done, err := a.proc.exited(); done {
			return fmt.Errorf("%s exited while starting: %v", a.proc.name, err)
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, a.Base+"/", nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("GET / answered %s", resp.Status)
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s never served %s/: %v (%w)", a.proc.name, a.Base, last, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// URL returns the app's URL for path.
func (a *App) URL(path string) string { return a.Base + path }

// Mark returns the current end of the app's log, for WaitLog.
func (a *App) Mark() int { return a.proc.mark() }

// WaitLog waits until the app logs a line containing substr after mark.
func (a *App) WaitLog(ctx context.Context, mark int, substr string) (string, error) {
	return a.proc.waitLine(ctx, mark, substr)
}

// checkRace returns an error when the app's race detector reported a data
// race.
func (a *App) checkRace() error {
	if out := a.proc.output(); strings.Contains(out, "WARNING: DATA RACE") {
		return fmt.Errorf("%s: the race detector found a data race (see its log)", a.proc.name)
	}
	return nil
}
