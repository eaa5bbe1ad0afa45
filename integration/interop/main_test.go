package interop

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// The run's shared pieces, started on first use (so that `go test -run
// TestZitadel` starts no Node) and stopped by TestMain:
//
//   - one headless Chromium (sharedBrowser);
//   - the certified OP with its one static client, and the examples/basic
//     app registered as that client (sharedCertified).
//
// Tests that need an OP or an app of their own (other settings, several
// instances) start them with newOP and newApp, which stop them when the
// test ends.

var suite struct {
	dir string // binaries and logs of this run

	mu       sync.Mutex
	stops    []func(failed bool) error // in start order; run in reverse
	browser  lazy[*Browser]
	cert     lazy[*Certified]
	startCtx context.Context
}

// lazy is a value made once on first use.
type lazy[T any] struct {
	once sync.Once
	v    T
	err  error
}

func (l *lazy[T]) get(make func() (T, error)) (T, error) {
	l.once.Do(func() { l.v, l.err = make() })
	return l.v, l.err
}

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "oidcauth-interop-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "interop:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	suite.dir = dir
	var cancel context.CancelFunc
	suite.startCtx, cancel = context.WithCancel(context.Background())
	defer cancel()

	code := m.Run()

	suite.mu.Lock()
	stops := suite.stops
	suite.mu.Unlock()
	for i := len(stops) - 1; i >= 0; i-- {
		if err := stops[i](code != 0); err != nil {
			fmt.Fprintln(os.Stderr, "interop:", err)
			code = 1
		}
	}
	if artifacts.dir != "" { // something was saved
		fmt.Fprintln(os.Stderr, "interop: artifacts (screenshots, page HTML, logs) in", artifacts.dir)
	}
	return code
}

// atExit registers stop to run when the tests end, with whether any
// failed.
func atExit(stop func(failed bool) error) {
	suite.mu.Lock()
	defer suite.mu.Unlock()
	suite.stops = append(suite.stops, stop)
}

// sharedBrowser returns the run's Chromium, starting it on first use.
func sharedBrowser(t testing.TB) *Browser {
	t.Helper()
	b, err := suite.browser.get(func() (*Browser, error) {
		start := time.Now()
		b, err := startBrowser(suite.dir)
		if err != nil {
			return nil, err
		}
		logf("chromium ready in %v", since(start))
		atExit(func(failed bool) error {
			b.stop()
			if failed {
				return saveFile("TestMain", b.logFile.Name())
			}
			return nil
		})
		return b, nil
	})
	requireReady(t, err)
	return b
}

// Certified is the certified OP (oidc-provider) with the examples/basic
// app registered at it as its one static client.
type Certified struct {
	OP     *OP
	App    *App
	Client Client
}

// sharedCertified returns the run's certified OP and its app, starting
// them on first use.
func sharedCertified(t testing.TB) *Certified {
	t.Helper()
	c, err := suite.cert.get(func() (*Certified, error) {
		ctx, cancel := context.WithTimeout(suite.startCtx, 2*time.Minute)
		defer cancel()
		port, err := reservePort()
		if err != nil {
			return nil, err
		}
		defer port.release()
		client := appClient(port.Base())
		client.ID, client.Secret = "oidcauth-interop", awkwardSecret()
		start := time.Now()
		op, err := startOP(ctx, "oidc-provider", suite.dir, OPOptions{Clients: []Client{client}})
		if err != nil {
			return nil, err
		}
		logf("oidc-provider (pid %d) ready at %s in %v", op.proc.pid(), op.Issuer, since(start))
		atExit(func(failed bool) error { return stopAndSave(op.proc, failed) })
		start = time.Now()
		bin, err := buildApp(ctx, suite.dir)
		if err != nil {
			return nil, err
		}
		logf("examples/basic built in %v (race detector: %v)", since(start), raceEnabled)
		start = time.Now()
		app, err := startApp(ctx, bin, "basic-oidc-provider", suite.dir, AppOptions{
			Port: port, Issuer: op.Issuer, ClientID: client.ID, ClientSecret: client.Secret,
		})
		if err != nil {
			return nil, err
		}
		logf("examples/basic (pid %d) ready at %s in %v", app.proc.pid(), app.Base, since(start))
		atExit(func(failed bool) error {
			race := app.checkRace()
			if err := stopAndSave(app.proc, failed || race != nil); err != nil {
				return err
			}
			return race
		})
		return &Certified{OP: op, App: app, Client: client}, nil
	})
	requireReady(t, err)
	return c
}

// stopAndSave stops p by pid and, when something failed, saves its log as
// an artifact.
func stopAndSave(p *process, failed bool) error {
	err := p.stop(5 * time.Second)
	if failed {
		if path, serr := p.saveLog("TestMain"); serr == nil {
			fmt.Fprintf(os.Stderr, "interop: %s log: %s\n", p.name, path)
		}
	}
	if err != nil {
		return fmt.Errorf("%s (pid %d) ended badly: %v", p.name, p.pid(), err)
	}
	return nil
}

// logf reports on the shared set-up, which belongs to no one test.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "interop: "+format+"\n", args...)
}

func since(t time.Time) time.Duration { return time.Since(t).Round(time.Millisecond) }

// awkwardSecret is a client secret with the characters that client
// authentication must form-encode (RFC 6749 2.3.1) in HTTP Basic.
func awkwardSecret() string { return randomToken() + "+/=:~%&" }

func saveFile(testName, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	p, err := saveArtifact(testName, filepath.Base(path), b)
	if err == nil {
		fmt.Fprintf(os.Stderr, "interop: saved %s\n", p)
	}
	return err
}

// newOP starts an oidc-provider of the test's own (other clients, a short
// access-token lifetime, ...) and stops it when the test ends, saving its
// log if the test failed.
func newOP(t testing.TB, opts OPOptions) *OP {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	op, err := startOP(ctx, "oidc-provider-"+unsafeName.ReplaceAllString(t.Name(), "_"), t.TempDir(), opts)
	requireReady(t, err)
	t.Logf("oidc-provider (pid %d) ready at %s in %v", op.proc.pid(), op.Issuer, since(start))
	t.Cleanup(func() { stopForTest(t, op.proc) })
	return op
}

// newApp starts an examples/basic of the test's own and stops it when the
// test ends, saving its log if the test failed. Fill opts.Port when the
// client registered at the OP names it (see reservePort).
func newApp(t testing.TB, name string, opts AppOptions) *App {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bin, err := buildApp(ctx, suite.dir)
	requireReady(t, err)
	start := time.Now()
	app, err := startApp(ctx, bin, name, t.TempDir(), opts)
	requireReady(t, err)
	t.Logf("%s (pid %d) ready at %s in %v", name, app.proc.pid(), app.Base, since(start))
	t.Cleanup(func() {
		if err := app.checkRace(); err != nil {
			t.Error(err)
		}
		stopForTest(t, app.proc)
	})
	return app
}

func stopForTest(t testing.TB, p *process) {
	if err := p.stop(5 * time.Second); err != nil {
		t.Errorf("%s (pid %d) ended badly: %v", p.name, p.pid(), err)
	}
	if t.Failed() {
		if path, err := p.saveLog(t.Name()); err == nil {
			t.Logf("%s log: %s", p.name, path)
		}
	}
}
