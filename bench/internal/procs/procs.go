// Package procs starts and stops the processes of bench/load and
// bench/soak (servers under test, redis-server), each logging to a file,
// and stops every one of them by its pid on the way out.
package procs

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/oidcauth/oidcauth/internal/testenv"
)

// Proc is a child process: a server under test or redis-server. Its
// output goes to a log file in the run's directory.
type Proc struct {
	Name    string
	LogPath string
	cmd     *exec.Cmd
	done    chan struct{} // closed when it has exited

	mu   sync.Mutex
	url  string        // what it printed as open=..., once it has
	seen chan struct{} // closed when url is set
}

// Procs are every process a run started; StopAll ends them by pid.
type Procs struct {
	mu   sync.Mutex
	list []*Proc
}

// Start starts bin with args and env in its own process group (so that a
// Ctrl-C reaches only this program, which then stops them in order), with
// SIGKILL as its parent-death signal where the OS has one.
func (ps *Procs) Start(name, bin string, args, env []string, logDir string) (*Proc, error) {
	logPath := filepath.Join(logDir, name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		logf.Close()
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = pw, pw
	cmd.SysProcAttr = SysProcAttr()
	p := &Proc{Name: name, cmd: cmd, LogPath: logPath, done: make(chan struct{}), seen: make(chan struct{})}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		logf.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	pw.Close()
	ps.list = append(ps.list, p)
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		defer logf.Close()
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(logf, line)
			if m := openRE.FindStringSubmatch(line); m != nil {
				p.mu.Lock()
				if p.url == "" {
					p.url = m[1]
					close(p.seen)
				}
				p.mu.Unlock()
			}
		}
		_, _ = io.Copy(logf, pr)
	}()
	go func() {
		_ = cmd.Wait()
		<-copied
		pr.Close()
		close(p.done)
	}()
	return p, nil
}

// openRE finds the URL in internal/demo's
// `msg="basic: listening" addr=127.0.0.1:43123 open=http://127.0.0.1:43123/`.
var openRE = regexp.MustCompile(`msg="?[^"]*: listening"? .*\bopen=(http://\S+)`)

// WaitURL waits until p has printed the URL it serves.
func (p *Proc) WaitURL(ctx context.Context, within time.Duration) (string, error) {
	t := time.NewTimer(within)
	defer t.Stop()
	select {
	case <-p.seen:
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.url, nil
	case <-p.done:
		return "", fmt.Errorf("%s exited at start-up:\n%s", p.Name, p.LogTail(15))
	case <-t.C:
		return "", fmt.Errorf("%s did not start listening within %v:\n%s", p.Name, within, p.LogTail(15))
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// PID is the process id.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Alive reports whether p is still running.
func (p *Proc) Alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Stop ends p by its pid: SIGTERM, then SIGKILL after a few seconds.
func (p *Proc) Stop() {
	if !p.Alive() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// StopAll stops every process, the most recently started first.
func (ps *Procs) StopAll() {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for i := len(ps.list) - 1; i >= 0; i-- {
		ps.list[i].Stop()
	}
	ps.list = nil
}

// Log is everything p has printed so far.
func (p *Proc) Log() string {
	b, _ := os.ReadFile(p.LogPath)
	return string(b)
}

// LogTail is the last n lines p printed, indented.
func (p *Proc) LogTail(n int) string {
	lines := strings.Split(strings.TrimRight(p.Log(), "\n"), "\n")
	return "    " + strings.Join(lines[max(0, len(lines)-n):], "\n    ")
}

// StartRedis starts redis-server on a free loopback port without
// persistence, its data in dir and its log in logDir, and waits until the
// server answering there is this one. It returns the process and its
// host:port.
func (ps *Procs) StartRedis(ctx context.Context, bin, dir, logDir string) (*Proc, string, error) {
	var lastErr error
	for range 5 {
		port, err := FreePort()
		if err != nil {
			return nil, "", err
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		p, err := ps.Start("redis", bin, []string{
			"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no",
			"--dir", dir, "--daemonize", "no", "--logfile", "",
		}, os.Environ(), logDir)
		if err != nil {
			return nil, "", err
		}
		deadline := time.Now().Add(10 * time.Second)
		for lastErr = nil; ; {
			if RedisPID(addr) == p.PID() {
				return p, addr, nil
			}
			if !p.Alive() {
				lastErr = fmt.Errorf("redis-server exited at start-up:\n%s", p.LogTail(5))
				break
			}
			if ctx.Err() != nil {
				return nil, "", ctx.Err()
			}
			if time.Now().After(deadline) {
				p.Stop()
				lastErr = fmt.Errorf("redis-server did not answer within 10s:\n%s", p.LogTail(5))
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil, "", lastErr
}

// RedisPID is the process id of the Redis server answering at addr, or 0.
func RedisPID(addr string) int {
	info, err := testenv.Command(addr, "INFO", "server")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(line, "process_id:"); ok {
			pid, _ := strconv.Atoi(strings.TrimSpace(v))
			return pid
		}
	}
	return 0
}

// FreePort is a TCP port free on loopback a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// CleanEnv is this process's environment without anything that would
// configure the servers under test differently from their defaults
// (OIDC_*, SESSION_*, REDIS_*, TOPAZ_*, ADDR, DEBUG_ADDR).
func CleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(name, "OIDC_"), strings.HasPrefix(name, "SESSION_"),
			strings.HasPrefix(name, "REDIS_"), strings.HasPrefix(name, "TOPAZ_"), name == "ADDR", name == "DEBUG_ADDR":
			continue
		}
		env = append(env, kv)
	}
	return env
}

// Run is what bench/load and bench/soak set up before starting anything:
// a context ended by Ctrl-C, SIGTERM, SIGHUP or the run's time limit; a
// temporary directory for binaries and data; the directory for logs (the
// temporary one unless a logs directory is asked for); and the processes.
type Run struct {
	Ctx    context.Context
	Tmp    string
	LogDir string
	Procs  Procs

	stop, cancel context.CancelFunc
}

// Begin sets up a Run called name (for the temporary directory) that may
// take at most timeout, keeping logs in logs when it is not empty. End it
// with End.
func Begin(name string, timeout time.Duration, logs string) (*Run, error) {
	r := &Run{}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	r.Ctx, r.cancel = context.WithTimeoutCause(ctx, timeout, fmt.Errorf("the run took longer than %v", timeout))
	r.stop = stop
	var err error
	if r.Tmp, err = os.MkdirTemp("", "oidcauth-"+name+"-"); err != nil {
		r.End(nil)
		return nil, err
	}
	r.LogDir = r.Tmp
	if logs != "" {
		if r.LogDir, err = filepath.Abs(logs); err == nil {
			err = os.MkdirAll(r.LogDir, 0o755)
		}
		if err != nil {
			r.End(nil)
			return nil, err
		}
	}
	return r, nil
}

// End stops every process by its pid, removes the temporary directory and
// returns err, with the reason the run's context ended if it did.
func (r *Run) End(err error) error {
	r.Procs.StopAll()
	if r.Tmp != "" {
		os.RemoveAll(r.Tmp)
	}
	if err != nil && context.Cause(r.Ctx) != nil {
		err = fmt.Errorf("%w (%v)", err, context.Cause(r.Ctx))
	}
	r.cancel()
	r.stop()
	return err
}
