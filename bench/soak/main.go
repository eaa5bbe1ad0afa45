// Command soak is oidcauth's bounded soak test (make soak): the real
// examples/basic binary, with its built-in development provider and its
// sessions in a redis-server of the soak's own, under a mixed load on
// loopback for a fixed time.
//
//	go run ./bench/soak [-duration 60s] [-workers 20] [-hostile 0.15]
//
// Each worker is a succession of browsers: it logs in as alice, bob or
// carol through the provider's login form, browses /private, /me and /
// (reloading them), logs out (POST /logout, through the provider's
// end-session endpoint and back), checks that the old cookie is dead, and
// starts again as the next user. A share of its requests are hostile:
// tampered and truncated cookies, replayed callbacks, bad and missing
// states, forged logout tokens, garbage Authorization headers, a
// cross-site logout. Every response is checked: pages and /me must be the
// right user's, hostile requests must get a 4xx and no session.
//
// The app's opt-in debug listener (DEBUG_ADDR, internal/demo) gives its
// goroutines and heap after a GC, at the start and, once the load has
// stopped and idle connections are closed, at the end.
//
// The run fails on any 5xx (no fault is injected, so none is explained),
// any transport error, any panic (or, with -race, data race) in the
// server's log, any page or /me served for the wrong user, any hostile
// request let through, goroutines that do not come back near their start
// (-goroutine-slack), and a heap that does not come back near its start
// plus what the Redis store's load caches may keep by design: recently
// loaded sessions (a logout drops its own) and token-to-key entries, a few
// thousand at most (-heap-slack,
// -heap-per-session, -cached-sessions). Every loop is bounded in time and count; every process it
// starts is stopped by its pid on the way out, also on Ctrl-C.
package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/oidcauth/oidcauth/bench/internal/procs"
	"github.com/oidcauth/oidcauth/internal/devidp"
)

type config struct {
	duration       time.Duration
	workers        int
	hostile        float64
	think          time.Duration
	race           bool
	goroutineSlack int
	heapSlack      int64 // bytes
	heapPerSession int64 // bytes
	cachedSessions int64
	redisServer    string
	logs           string
	goTool         string
	root           string
}

func main() {
	cfg, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(2)
	}
	if err := run(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "soak: FAIL:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (*config, error) {
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	cfg := &config{}
	defDuration := 60 * time.Second
	var envErr error
	if v := os.Getenv("SOAK_DURATION"); v != "" {
		if defDuration, envErr = time.ParseDuration(v); envErr != nil {
			envErr = fmt.Errorf("SOAK_DURATION: %q is not a duration", v)
		}
	}
	var heapSlackMiB, heapPerSessionKiB float64
	fs.DurationVar(&cfg.duration, "duration", defDuration, "how long the load runs (env SOAK_DURATION)")
	fs.IntVar(&cfg.workers, "workers", 20, "simulated users at once")
	fs.Float64Var(&cfg.hostile, "hostile", 0.15, "share of a worker's steps that are hostile requests")
	fs.DurationVar(&cfg.think, "think", 10*time.Millisecond, "mean pause between a worker's requests (uniform in 0..2×)")
	fs.BoolVar(&cfg.race, "race", false, "build the server with -race and fail on any data race it reports")
	fs.IntVar(&cfg.goroutineSlack, "goroutine-slack", 12, "goroutines the server may have at the end beyond its start: idle keep-alive\nconnections between the app and its in-process provider (2 each way, 3 goroutines each)")
	fs.Float64Var(&heapSlackMiB, "heap-slack", 4, "MiB of heap the server may have at the end beyond its start, besides cached sessions\n(connection pools; state kept until it expires: used login states, the provider's grants)")
	fs.Float64Var(&heapPerSessionKiB, "heap-per-session", 8, "KiB of heap allowed for each session the Redis store's load caches may still hold\n(recently loaded sessions and token-to-key entries; a logout drops its session)")
	fs.Int64Var(&cfg.cachedSessions, "cached-sessions", 10_000, "the most sessions the Redis store's load caches hold (redisstore's maxHot, oidcauth's maxVerified)")
	fs.StringVar(&cfg.redisServer, "redis-server", "redis-server", "the redis-server binary")
	fs.StringVar(&cfg.logs, "logs", os.Getenv("SOAK_LOGS"), "keep the server's and Redis's logs in this directory (default: a temporary one, removed)")
	fs.StringVar(&cfg.goTool, "go", envOr("GO", "go"), "the go command that builds the server (env GO)")
	fs.StringVar(&cfg.root, "root", "", "the oidcauth module's directory (default: from the working directory)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	cfg.heapSlack = int64(heapSlackMiB * (1 << 20))
	cfg.heapPerSession = int64(heapPerSessionKiB * (1 << 10))
	var bad []error
	check := func(ok bool, format string, a ...any) {
		if !ok {
			bad = append(bad, fmt.Errorf(format, a...))
		}
	}
	check(cfg.duration >= time.Second && cfg.duration <= time.Hour, "-duration %v: from 1s to 1h", cfg.duration)
	check(cfg.workers >= 1 && cfg.workers <= 500, "-workers %d: from 1 to 500", cfg.workers)
	check(cfg.hostile >= 0 && cfg.hostile <= 1, "-hostile %v: from 0 to 1", cfg.hostile)
	check(cfg.think >= 0 && cfg.think <= time.Second, "-think %v: from 0 to 1s", cfg.think)
	check(cfg.goroutineSlack >= 0, "-goroutine-slack %d: not negative", cfg.goroutineSlack)
	check(cfg.heapSlack >= 0 && cfg.heapPerSession >= 0 && cfg.cachedSessions >= 0, "-heap-slack, -heap-per-session and -cached-sessions: not negative")
	if err := errors.Join(append(bad, envErr)...); err != nil {
		return nil, err
	}
	return cfg, nil
}

// soak is one run: the server under test and what the workers found.
type soak struct {
	cfg      *config
	base     string // the app, "http://127.0.0.1:port/"
	origin   string // the app's origin, for Origin headers
	tr       *http.Transport
	raw      *http.Client // no cookie jar, no redirects
	rec      *recorder
	forgeKey *rsa.PrivateKey // signs forged logout tokens
	users    []devidp.User

	mu       sync.Mutex
	issuer   string // the provider's, learnt from the first login
	clientID string
}

func run(cfg *config) (err error) {
	if _, err := exec.LookPath(cfg.redisServer); err != nil {
		return fmt.Errorf("%s not found (scripts/soak installs Debian's redis-server): %w", cfg.redisServer, err)
	}
	timeout := cfg.duration + 5*time.Minute
	rn, err := procs.Begin("soak", timeout, cfg.logs)
	if err != nil {
		return err
	}
	defer func() { err = rn.End(err) }()
	ctx, tmp, logDir, ps := rn.Ctx, rn.Tmp, rn.LogDir, &rn.Procs

	root := cfg.root
	if root == "" {
		if root, err = moduleRoot(ctx, cfg.goTool); err != nil {
			return err
		}
	}
	buildArgs := []string{"build", "-o", filepath.Join(tmp, "basic")}
	if cfg.race {
		buildArgs = append(buildArgs, "-race")
	}
	fmt.Printf("soak: building examples/basic%s in %s\n", map[bool]string{true: " with -race", false: ""}[cfg.race], root)
	build := exec.CommandContext(ctx, cfg.goTool, append(buildArgs, "./examples/basic")...)
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %w\n%s", err, out)
	}

	redisDir := filepath.Join(tmp, "redis")
	if err := os.Mkdir(redisDir, 0o700); err != nil {
		return err
	}
	rds, redisAddr, err := ps.StartRedis(ctx, cfg.redisServer, redisDir, logDir)
	if err != nil {
		return err
	}
	env := append(procs.CleanEnv(), "ADDR=127.0.0.1:0", "DEBUG_ADDR=127.0.0.1:0", "REDIS_URL=redis://"+redisAddr)
	if cfg.race {
		env = append(env, "GORACE=halt_on_error=0 exitcode=66")
	}
	app, err := ps.Start("basic", filepath.Join(tmp, "basic"), nil, env, logDir)
	if err != nil {
		return err
	}
	base, err := app.WaitURL(ctx, time.Minute)
	if err != nil {
		return err
	}
	m := debugRE.FindStringSubmatch(app.Log()) // printed before the app's URL
	if m == nil {
		return fmt.Errorf("examples/basic printed no debug_url (DEBUG_ADDR is internal/demo's):\n%s", app.LogTail(10))
	}
	debugURL := m[1]
	fmt.Printf("soak: examples/basic at %s (debug %s), sessions in redis://%s\n", base, debugURL, redisAddr)

	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	u, _ := url.Parse(base)
	s := &soak{
		cfg: cfg, base: base, origin: u.Scheme + "://" + u.Host,
		tr:       &http.Transport{MaxIdleConnsPerHost: cfg.workers + 4, IdleConnTimeout: 30 * time.Second},
		rec:      newRecorder(),
		forgeKey: key,
		users:    devidp.DemoUsers(),
	}
	s.raw = &http.Client{Transport: s.tr, Timeout: 15 * time.Second, CheckRedirect: noFollow}
	defer s.tr.CloseIdleConnections()

	// Warm-up: each user once through the whole cycle, so that what is
	// made once (keys fetched, pools filled) is there at the start figures.
	for i := range s.users {
		newWorker(s, -1-i).warmUp(ctx, i)
	}
	if n := s.rec.failureCount(); n > 0 {
		return fmt.Errorf("the warm-up failed:\n%s\nserver log:\n%s", s.rec.failureText(), app.LogTail(20))
	}
	s.rec.reset()
	startFig, err := settled(ctx, s, debugURL, nil)
	if err != nil {
		return err
	}
	fmt.Printf("soak: server at start: %s\n", startFig)
	s.saveDebug(ctx, debugURL, "start")
	fmt.Printf("soak: %d workers (users %s) for %v, %.0f%% hostile steps, think time ~%v\n",
		cfg.workers, strings.Join(usernames(s.users), ", "), cfg.duration, 100*cfg.hostile, cfg.think)

	// The load.
	loadCtx, endLoad := context.WithTimeout(ctx, cfg.duration)
	defer endLoad()
	var wg sync.WaitGroup
	for w := range cfg.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			newWorker(s, w).run(loadCtx)
		}()
	}
	began := time.Now()
	var peak figures
	tick := time.NewTicker(10 * time.Second)
	for done := false; !done; {
		select {
		case <-loadCtx.Done():
			done = true
		case <-tick.C:
			if f, err := getFigures(ctx, debugURL); err == nil {
				peak.max(f)
				fmt.Printf("soak: %3.0fs  %7d requests  %4d logins  %3d failures  server: %s\n",
					time.Since(began).Seconds(), s.rec.total(), s.rec.logins.Load(), s.rec.failureCount(), f)
			}
		}
	}
	tick.Stop()
	wg.Wait()
	elapsed := time.Since(began)
	if ctx.Err() != nil {
		return ctx.Err()
	}

	// The end: idle connections closed, the server left to settle.
	s.tr.CloseIdleConnections()
	// The Redis store caches each session it loads (sealed, opened and
	// decoded), logged-out ones included, up to a bound: that much heap is
	// expected to stay.
	logins := s.rec.logins.Load()
	cached := min(logins+int64(len(s.users)), cfg.cachedSessions) // the warm-up's too
	limit := figures{
		Goroutines: startFig.Goroutines + int64(cfg.goroutineSlack),
		HeapAlloc:  startFig.HeapAlloc + cfg.heapSlack + cached*cfg.heapPerSession,
	}
	endFig, err := settled(ctx, s, debugURL, &limit)
	if err != nil {
		return err
	}
	peak.max(endFig)
	s.saveDebug(ctx, debugURL, "end")

	// The verdict.
	var problems []string
	if n := s.rec.failureCount(); n > 0 {
		problems = append(problems, fmt.Sprintf("%d failed checks:\n%s", n, s.rec.failureText()))
	}
	if !app.Alive() || !rds.Alive() {
		problems = append(problems, "the server or Redis exited during the run")
	}
	serverLog := app.Log()
	for _, bad := range []string{"panic", "fatal error", "DATA RACE"} {
		if strings.Contains(serverLog, bad) {
			problems = append(problems, fmt.Sprintf("the server's log has %q:\n%s", bad, excerpt(serverLog, bad)))
		}
	}
	if endFig.Goroutines > limit.Goroutines {
		problems = append(problems, fmt.Sprintf("the server has %d goroutines at the end, %d at the start (slack %d)",
			endFig.Goroutines, startFig.Goroutines, cfg.goroutineSlack))
		if cfg.logs != "" {
			problems[len(problems)-1] += "; their stacks are in " + filepath.Join(logDir, "goroutines-*.txt")
		} else {
			problems[len(problems)-1] += " (run with -logs DIR to keep their stacks)"
		}
	}
	if endFig.HeapAlloc > limit.HeapAlloc {
		problems = append(problems, fmt.Sprintf("the server's heap is %s at the end, %s at the start: more than the %s allowed (%s + %s for each of %d cached sessions)",
			mib(endFig.HeapAlloc), mib(startFig.HeapAlloc), mib(limit.HeapAlloc), mib(cfg.heapSlack), kib(cfg.heapPerSession), cached))
	}

	s.rec.report(os.Stdout, elapsed)
	fmt.Printf("server: goroutines %d → %d (peak %d, limit %d); heap %s → %s (peak %s, limit %s: %s + %s × %d cached sessions)\n",
		startFig.Goroutines, endFig.Goroutines, peak.Goroutines, limit.Goroutines,
		mib(startFig.HeapAlloc), mib(endFig.HeapAlloc), mib(peak.HeapAlloc), mib(limit.HeapAlloc),
		mib(cfg.heapSlack), kib(cfg.heapPerSession), cached)
	if logins > 0 {
		fmt.Printf("server: heap kept per login %s (state kept until it expires or is evicted: used login states, token-to-key entries)\n",
			kib((endFig.HeapAlloc-startFig.HeapAlloc)/min(logins, cfg.cachedSessions)))
	}
	fmt.Printf("%s, %d CPUs, %s\n", cpuModel(), runtime.NumCPU(), runtime.Version())
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "\n"))
	}
	fmt.Println("soak: PASS: no 5xx, no panic, every page for the right user, every hostile request refused; goroutines back near their start, heap within its start plus the session caches' bound")
	return nil
}

// saveDebug keeps, with -logs, the server's goroutine stacks and heap
// profile as goroutines-<when>.txt and heap-<when>.pprof.
func (s *soak) saveDebug(ctx context.Context, debugURL, when string) {
	if s.cfg.logs == "" {
		return
	}
	dir, _ := filepath.Abs(s.cfg.logs)
	for name, path := range map[string]string{"goroutines-" + when + ".txt": "goroutines", "heap-" + when + ".pprof": "heap"} {
		if b, err := getText(ctx, strings.TrimSuffix(debugURL, "runtime")+path); err == nil {
			_ = os.WriteFile(filepath.Join(dir, name), []byte(b), 0o644)
		}
	}
}

var debugRE = regexp.MustCompile(`debug_url=(http://127\.0\.0\.1:\d+/debug/runtime)`)

// figures are the server's, from its debug listener.
type figures struct {
	Goroutines  int64 `json:"goroutines"`
	HeapAlloc   int64 `json:"heap_alloc"`
	HeapObjects int64 `json:"heap_objects"`
}

func (f figures) String() string {
	return fmt.Sprintf("%d goroutines, heap %s (%d objects)", f.Goroutines, mib(f.HeapAlloc), f.HeapObjects)
}

func (f *figures) max(g figures) {
	f.Goroutines, f.HeapAlloc, f.HeapObjects = max(f.Goroutines, g.Goroutines), max(f.HeapAlloc, g.HeapAlloc), max(f.HeapObjects, g.HeapObjects)
}

// debugClient keeps no connection open: its own would count as the
// server's goroutines.
var debugClient = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

func getFigures(ctx context.Context, debugURL string) (figures, error) {
	var f figures
	text, err := getText(ctx, debugURL)
	if err == nil {
		err = json.Unmarshal([]byte(text), &f)
	}
	return f, err
}

func getText(ctx context.Context, target string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return "", err
	}
	resp, err := debugClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s", target, resp.Status)
	}
	return string(b), err
}

// settled waits (up to 15 s) until the server's figures are within limit
// (nil: until its goroutines stop falling), and returns the last ones.
func settled(ctx context.Context, s *soak, debugURL string, limit *figures) (figures, error) {
	var last figures
	deadline := time.Now().Add(15 * time.Second)
	for i := 0; ; i++ {
		s.tr.CloseIdleConnections()
		f, err := getFigures(ctx, debugURL)
		if err != nil {
			return f, fmt.Errorf("the server's debug listener: %w", err)
		}
		switch {
		case limit == nil && i > 0 && f.Goroutines >= last.Goroutines:
			return f, nil
		case limit != nil && f.Goroutines <= limit.Goroutines && f.HeapAlloc <= limit.HeapAlloc:
			return f, nil
		case time.Now().After(deadline):
			return f, nil
		}
		last = f
		select {
		case <-ctx.Done():
			return f, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func noFollow(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

func usernames(users []devidp.User) []string {
	var n []string
	for _, u := range users {
		n = append(n, u.PreferredUsername)
	}
	return n
}

// excerpt is the lines around the first occurrence of needle in text.
func excerpt(text, needle string) string {
	lines := strings.Split(text, "\n")
	i := slices.IndexFunc(lines, func(l string) bool { return strings.Contains(l, needle) })
	if i < 0 {
		return ""
	}
	return "    " + strings.Join(lines[max(0, i-3):min(len(lines), i+20)], "\n    ")
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
func kib(b int64) string { return fmt.Sprintf("%.1f KiB", float64(b)/(1<<10)) }

// moduleRoot is the directory of the oidcauth module around the working
// directory.
func moduleRoot(ctx context.Context, goTool string) (string, error) {
	out, err := exec.CommandContext(ctx, goTool, "list", "-m", "-f", "{{.Path}} {{.Dir}}").Output()
	if err != nil {
		return "", fmt.Errorf("go list -m: %w (run from the oidcauth repository, or pass -root)", err)
	}
	path, dir, _ := strings.Cut(strings.TrimSpace(string(out)), " ")
	if path != "github.com/oidcauth/oidcauth" {
		return "", fmt.Errorf("the working directory is in module %q, not github.com/oidcauth/oidcauth: run from the repository's root, or pass -root", path)
	}
	return dir, nil
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				return strings.TrimSpace(v)
			}
		}
	}
	return runtime.GOARCH
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
