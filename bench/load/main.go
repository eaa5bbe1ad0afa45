// Command load is oidcauth's side-by-side load run (make load): it starts,
// on loopback, a bare net/http server (bench/bare), examples/basic with its
// built-in development provider (cookie sessions) and the same binary with
// REDIS_URL pointing at a redis-server of its own, logs in once to each as
// alice, then drives them with wrk in alternating rounds and prints req/s,
// latency and server CPU per request next to the bare server's.
//
//	go run ./bench/load [-rounds 3] [-duration 5s] [-threads 1] [-connections 32]
//
// Every response is checked by a wrk Lua script: a 200 whose body has the
// user's sub (an anonymous page's text for GET /). A single failure fails
// the run, so a broken session cannot pass as speed. -min-cookie-ratio,
// -min-redis-ratio and -min-anon-ratio make missed targets fail it too.
//
// Needs Linux (/proc for CPU figures), wrk built with Lua (Debian's
// package) and redis-server; scripts/load installs them when missing.
// Every process it starts is stopped by its pid on the way out, also on
// Ctrl-C or SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/oidcauth/oidcauth/bench/internal/procs"
	"github.com/oidcauth/oidcauth/bench/internal/weblogin"
	"github.com/oidcauth/oidcauth/internal/devidp"
)

type config struct {
	rounds             int
	duration, warmup   time.Duration
	threads            int
	connections        int
	anon               bool
	user               string
	minCookie          float64
	minRedis           float64
	minAnon            float64
	wrk, redisServer   string
	logs               string
	timeout            time.Duration
	goTool             string
	moduleRootOverride string
}

func main() {
	cfg, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(2)
	}
	if err := run(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "load: FAIL:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (*config, error) {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	cfg := &config{}
	var envErr error
	envInt := func(name string, def int) int {
		if v := os.Getenv(name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				envErr = errors.Join(envErr, fmt.Errorf("%s: %q is not a number", name, v))
			}
			return n
		}
		return def
	}
	envDur := func(name string, def time.Duration) time.Duration {
		if v := os.Getenv(name); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				envErr = errors.Join(envErr, fmt.Errorf("%s: %q is not a duration", name, v))
			}
			return d
		}
		return def
	}
	fs.IntVar(&cfg.rounds, "rounds", envInt("LOAD_ROUNDS", 3), "alternating rounds over all targets (env LOAD_ROUNDS)")
	fs.DurationVar(&cfg.duration, "duration", envDur("LOAD_DURATION", 5*time.Second), "length of each wrk run, whole seconds (env LOAD_DURATION)")
	fs.DurationVar(&cfg.warmup, "warmup", envDur("LOAD_WARMUP", 2*time.Second), "one checked, unrecorded run per target first; 0 for none (env LOAD_WARMUP)")
	fs.IntVar(&cfg.threads, "threads", envInt("LOAD_THREADS", 1), "wrk -t (env LOAD_THREADS)")
	fs.IntVar(&cfg.connections, "connections", envInt("LOAD_CONNECTIONS", 32), "wrk -c (env LOAD_CONNECTIONS)")
	fs.BoolVar(&cfg.anon, "anon", os.Getenv("LOAD_ANON") != "0", "also measure the anonymous public page GET / (env LOAD_ANON=0 to skip)")
	fs.StringVar(&cfg.user, "user", "alice", "the development provider's demo user to log in as")
	fs.Float64Var(&cfg.minCookie, "min-cookie-ratio", 0, "fail unless cookie-session req/s ≥ this × bare (0: report only)")
	fs.Float64Var(&cfg.minRedis, "min-redis-ratio", 0, "fail unless Redis-session req/s ≥ this × bare (0: report only)")
	fs.Float64Var(&cfg.minAnon, "min-anon-ratio", 0, "fail unless anonymous GET / req/s ≥ this × bare (0: report only)")
	fs.StringVar(&cfg.wrk, "wrk", "wrk", "the wrk binary")
	fs.StringVar(&cfg.redisServer, "redis-server", "redis-server", "the redis-server binary")
	fs.StringVar(&cfg.logs, "logs", os.Getenv("LOAD_LOGS"), "keep the servers' logs and wrk's output in this directory (default: a temporary one, removed)")
	fs.DurationVar(&cfg.timeout, "timeout", 0, "give up after this long (default: from the rounds, plus a few minutes)")
	fs.StringVar(&cfg.goTool, "go", envOr("GO", "go"), "the go command that builds the servers (env GO)")
	fs.StringVar(&cfg.moduleRootOverride, "root", "", "the oidcauth module's directory (default: from the working directory)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var bad []error
	check := func(ok bool, format string, a ...any) {
		if !ok {
			bad = append(bad, fmt.Errorf(format, a...))
		}
	}
	check(cfg.rounds >= 1 && cfg.rounds <= 20, "-rounds %d: between 1 and 20", cfg.rounds)
	check(cfg.duration >= time.Second && cfg.duration <= time.Minute && cfg.duration%time.Second == 0,
		"-duration %v: whole seconds from 1s to 1m", cfg.duration)
	check(cfg.warmup >= 0 && cfg.warmup <= 30*time.Second && cfg.warmup%time.Second == 0,
		"-warmup %v: whole seconds up to 30s", cfg.warmup)
	check(cfg.threads >= 1 && cfg.threads <= 64, "-threads %d: between 1 and 64", cfg.threads)
	check(cfg.connections >= cfg.threads && cfg.connections <= 4096, "-connections %d: between -threads and 4096", cfg.connections)
	for _, r := range []float64{cfg.minCookie, cfg.minRedis, cfg.minAnon} {
		check(r >= 0 && r <= 2, "a -min-*-ratio of %v: between 0 and 2", r)
	}
	check(cfg.timeout >= 0, "-timeout %v: not negative", cfg.timeout)
	if err := errors.Join(append(bad, envErr)...); err != nil {
		return nil, err
	}
	return cfg, nil
}

// target is one thing wrk measures.
type target struct {
	name     string // bare, cookie, redis, bare-anon, anon
	what     string // the server, for the table
	path     string
	srv      *procs.Proc
	redis    *procs.Proc // its Redis, whose CPU is counted apart
	script   string      // the wrk script: the check, and the session cookie
	baseline *target     // the bare run it is compared with
	results  []wrkResult
}

func run(cfg *config) (err error) {
	if _, err := exec.LookPath(cfg.wrk); err != nil {
		return fmt.Errorf("%s not found (scripts/load installs Debian's wrk): %w", cfg.wrk, err)
	}
	if _, err := exec.LookPath(cfg.redisServer); err != nil {
		return fmt.Errorf("%s not found (scripts/load installs Debian's redis-server): %w", cfg.redisServer, err)
	}
	sub, err := demoSubject(cfg.user)
	if err != nil {
		return err
	}
	nTargets := 3
	if cfg.anon {
		nTargets = 5
	}
	timeout := cfg.timeout
	if timeout == 0 {
		timeout = 5*time.Minute + time.Duration(nTargets)*(cfg.warmup+time.Duration(cfg.rounds)*(cfg.duration+3*time.Second))
	}
	rn, err := procs.Begin("load", timeout, cfg.logs)
	if err != nil {
		return err
	}
	defer func() { err = rn.End(err) }()
	ctx, tmp, logDir, ps := rn.Ctx, rn.Tmp, rn.LogDir, &rn.Procs

	// Build the servers, without -race, as they would ship.
	root := cfg.moduleRootOverride
	if root == "" {
		if root, err = moduleRoot(ctx, cfg.goTool); err != nil {
			return err
		}
	}
	fmt.Printf("load: building examples/basic and bench/bare in %s\n", root)
	build := exec.CommandContext(ctx, cfg.goTool, "build", "-o", tmp+string(filepath.Separator), "./examples/basic", "./bench/bare")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %w\n%s", err, out)
	}

	env := procs.CleanEnv()
	start := func(name, bin string, args []string, extra ...string) (*procs.Proc, string, error) {
		p, err := ps.Start(name, filepath.Join(tmp, bin), args, append(slices.Clip(env), extra...), logDir)
		if err != nil {
			return nil, "", err
		}
		u, err := p.WaitURL(ctx, time.Minute)
		return p, u, err
	}
	bare, bareURL, err := start("bare", "bare", []string{"-user", cfg.user}, "ADDR=127.0.0.1:0")
	if err != nil {
		return err
	}
	basic, basicURL, err := start("basic", "basic", nil, "ADDR=127.0.0.1:0")
	if err != nil {
		return err
	}
	cookie, err := weblogin.Login(ctx, basicURL, cfg.user, sub)
	if err != nil {
		return fmt.Errorf("logging in to examples/basic: %w\n%s", err, basic.LogTail(10))
	}
	fmt.Printf("load: bare at %s, examples/basic at %s (logged in as %s)\n", bareURL, basicURL, cfg.user)

	redisDir := filepath.Join(tmp, "redis")
	if err := os.Mkdir(redisDir, 0o700); err != nil {
		return err
	}
	rds, redisAddr, err := ps.StartRedis(ctx, cfg.redisServer, redisDir, logDir)
	if err != nil {
		return err
	}
	basicRedis, redisURL, err := start("basic-redis", "basic", nil, "ADDR=127.0.0.1:0", "REDIS_URL=redis://"+redisAddr)
	if err != nil {
		return err
	}
	redisCookie, err := weblogin.Login(ctx, redisURL, cfg.user, sub)
	if err != nil {
		return fmt.Errorf("logging in to examples/basic with Redis: %w\n%s", err, basicRedis.LogTail(10))
	}
	fmt.Printf("load: examples/basic with REDIS_URL=redis://%s at %s (logged in as %s)\n", redisAddr, redisURL, cfg.user)

	// Same bodies, or the comparison is not fair.
	for _, c := range []struct{ path, cookie string }{{"me", cookie}, {"private", cookie}, {"", ""}} {
		_, want, err1 := weblogin.Get(ctx, bareURL+c.path, "")
		_, got, err2 := weblogin.Get(ctx, basicURL+c.path, c.cookie)
		if err := errors.Join(err1, err2); err != nil {
			return err
		}
		if got != want {
			fmt.Printf("load: WARNING: GET /%s differs between bare and examples/basic, so the comparison is not like for like:\n  bare:  %.200q\n  basic: %.200q\n", c.path, want, got)
		}
	}

	needle := `"sub":"` + sub + `"`
	scripts := map[string]string{}
	for _, sc := range []struct{ name, needle, cookie string }{
		{"me-cookie", needle, cookie}, {"me-redis", needle, redisCookie},
		{"home", "You are not signed in.", ""},
	} {
		if scripts[sc.name], err = writeScript(tmp, sc.name, sc.needle, sc.cookie); err != nil {
			return err
		}
	}
	// The bare server gets the same Cookie header, so that only what
	// oidcauth does with it differs.
	bareMe := &target{name: "bare", what: "bare net/http", path: "/me", srv: bare, script: scripts["me-cookie"]}
	targets := []*target{
		bareMe,
		{name: "cookie", what: "basic, cookie session", path: "/me", srv: basic, script: scripts["me-cookie"], baseline: bareMe},
		{name: "redis", what: "basic, Redis session", path: "/me", srv: basicRedis, redis: rds, script: scripts["me-redis"], baseline: bareMe},
	}
	if cfg.anon {
		bareHome := &target{name: "bare-anon", what: "bare net/http", path: "/", srv: bare, script: scripts["home"]}
		targets = append(targets, bareHome,
			&target{name: "anon", what: "basic, anonymous", path: "/", srv: basic, script: scripts["home"], baseline: bareHome})
	}
	urls := map[*procs.Proc]string{bare: bareURL, basic: basicURL, basicRedis: redisURL}

	tick := clockTick()
	wrkLog, err := os.Create(filepath.Join(logDir, "wrk.log"))
	if err != nil {
		return err
	}
	defer wrkLog.Close()
	measure := func(t *target, d time.Duration, label string) (wrkResult, error) {
		for _, p := range []*procs.Proc{t.srv, t.redis} {
			if p != nil && !p.Alive() {
				return wrkResult{}, fmt.Errorf("%s has exited:\n%s", p.Name, p.LogTail(15))
			}
		}
		cpu0, _ := cpuTicks(t.srv.PID())
		var rcpu0 int64
		if t.redis != nil {
			rcpu0, _ = cpuTicks(t.redis.PID())
		}
		url := strings.TrimSuffix(urls[t.srv], "/") + t.path
		r, out, err := runWrk(ctx, cfg, url, t.script, d)
		fmt.Fprintf(wrkLog, "=== %s %s %s\n%s\n", label, t.name, url, out)
		if err != nil {
			return r, fmt.Errorf("%s, %s: %w", label, t.name, err)
		}
		if cpu1, err := cpuTicks(t.srv.PID()); err == nil {
			r.cpu = time.Duration(cpu1-cpu0) * tick
		}
		if t.redis != nil {
			if rcpu1, err := cpuTicks(t.redis.PID()); err == nil {
				r.redisCPU = time.Duration(rcpu1-rcpu0) * tick
			}
		}
		fmt.Printf("  %-7s %-9s GET %-4s %9.0f req/s  p50 %-8s p99 %-8s\n", label, t.name, t.path, r.rps(), ms(r.p50), ms(r.p99))
		if p := r.problem(); p != "" {
			return r, fmt.Errorf("%s, %s GET %s: %s", label, t.name, t.path, p)
		}
		return r, nil
	}

	fmt.Printf("load: wrk -t%d -c%d, %d round(s) of %v per target, alternating; every response checked\n",
		cfg.threads, cfg.connections, cfg.rounds, cfg.duration)
	if cfg.warmup > 0 {
		for _, t := range targets {
			if _, err := measure(t, cfg.warmup, "warm-up"); err != nil {
				return err
			}
		}
	}
	for i := range cfg.rounds {
		for _, t := range targets {
			r, err := measure(t, cfg.duration, fmt.Sprintf("round %d", i+1))
			if err != nil {
				return err
			}
			t.results = append(t.results, r)
		}
	}

	printTable(os.Stdout, cfg, targets, tick)
	var missed []string
	for _, m := range []struct {
		name string
		min  float64
	}{{"cookie", cfg.minCookie}, {"redis", cfg.minRedis}, {"anon", cfg.minAnon}} {
		for _, t := range targets {
			if t.name == m.name && m.min > 0 {
				if r := ratio(t); r < m.min {
					missed = append(missed, fmt.Sprintf("%s: %.2f× bare, target ≥ %.2f×", t.name, r, m.min))
				}
			}
		}
	}
	if len(missed) > 0 {
		return fmt.Errorf("targets missed: %s", strings.Join(missed, "; "))
	}
	fmt.Println("load: PASS: every response was a 200 for the right user")
	return nil
}

// ratio is the median over rounds of t's req/s divided by its baseline's
// in the same round: pairs close in time, so drift in the machine's other
// load largely cancels out.
func ratio(t *target) float64 {
	if t.baseline == nil {
		return 1
	}
	var rs []float64
	for i, r := range t.results {
		if b := t.baseline.results[i].rps(); b > 0 {
			rs = append(rs, r.rps()/b)
		}
	}
	return median(rs)
}

// cpuRatio is the median over rounds of the baseline's server CPU per
// request divided by t's: what ratio would be if the server were the only
// thing on the machine, which makes it the steadier figure when the
// machine is shared. Redis's own CPU is not counted.
func cpuRatio(t *target) float64 {
	if t.baseline == nil {
		return 1
	}
	var rs []float64
	for i, r := range t.results {
		if b := t.baseline.results[i]; r.cpu > 0 && b.requests > 0 && r.requests > 0 {
			rs = append(rs, (float64(b.cpu)/float64(b.requests))/(float64(r.cpu)/float64(r.requests)))
		}
	}
	return median(rs)
}

func printTable(w *os.File, cfg *config, targets []*target, tick time.Duration) {
	fmt.Fprintf(w, "\n%s, %d CPUs, %s, %s; wrk -t%d -c%d, %d × %v rounds\n",
		cpuModel(), runtime.NumCPU(), runtime.Version(), firstLine(cfg.wrk, "-v"), cfg.threads, cfg.connections, cfg.rounds, cfg.duration)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\tserver\troute\treq/s\t×bare\tp50\tp99\tCPU/req\t×bare by CPU\tper round req/s\t")
	for _, t := range targets {
		var rps, cpu, rcpu []float64
		var p50, p99 []float64
		var rounds []string
		for _, r := range t.results {
			rps = append(rps, r.rps())
			p50 = append(p50, float64(r.p50))
			p99 = append(p99, float64(r.p99))
			rounds = append(rounds, fmt.Sprintf("%.0f", r.rps()))
			if r.requests > 0 {
				cpu = append(cpu, float64(r.cpu)/float64(r.requests))
				rcpu = append(rcpu, float64(r.redisCPU)/float64(r.requests))
			}
		}
		cpuText := us(time.Duration(median(cpu)))
		if t.redis != nil {
			cpuText += " +" + us(time.Duration(median(rcpu))) + " redis"
		}
		fmt.Fprintf(tw, "%s\t%s\tGET %s\t%.0f\t%.2f\t%s\t%s\t%s\t%.2f\t%s\t\n", t.name, t.what, t.path,
			median(rps), ratio(t), ms(time.Duration(median(p50))), ms(time.Duration(median(p99))), cpuText, cpuRatio(t), strings.Join(rounds, " "))
	}
	tw.Flush()
	fmt.Fprintf(w, "req/s, p50, p99, CPU/req: medians over rounds. ×bare: median over rounds of req/s ÷ the same round's bare req/s\n"+
		"(the bare server for the same route). CPU/req: the server's utime+stime from /proc over the run ÷ requests (%v ticks);\n"+
		"×bare by CPU: bare's CPU/req ÷ this one's, per round, median (the steadier figure on a shared machine; Redis's CPU not counted).\n", tick)
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond)) }
func us(d time.Duration) string { return fmt.Sprintf("%.1fµs", float64(d)/float64(time.Microsecond)) }

// demoSubject is the sub of the development provider's demo user.
func demoSubject(username string) (string, error) {
	for _, u := range devidp.DemoUsers() {
		if u.PreferredUsername == username {
			return u.Subject, nil
		}
	}
	return "", fmt.Errorf("the development provider has no demo user %q", username)
}

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

// firstLine is the first line cmd args prints, whatever its exit status.
func firstLine(cmd string, args ...string) string {
	out, _ := exec.Command(cmd, args...).CombinedOutput()
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	if line == "" {
		return cmd
	}
	// "wrk 4.2.0 [epoll] Copyright (C) 2012 Will Glozer" → "wrk 4.2.0 [epoll]"
	if i := strings.Index(line, " Copyright"); i > 0 {
		line = line[:i]
	}
	return line
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
