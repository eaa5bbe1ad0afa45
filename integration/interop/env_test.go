package interop

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// This file is the integration module's equivalent of the library's
// internal/testenv (which a nested module cannot import), plus what every
// interop test needs from its surroundings: artifacts, ports, processes.

// strict reports whether missing test dependencies are failures
// (OIDCAUTH_STRICT=1, set by `make test` and `make integration`).
func strict() bool { return os.Getenv("OIDCAUTH_STRICT") == "1" }

// unavailable skips t, or fails it under strict, because of why.
func unavailable(t testing.TB, why string) {
	t.Helper()
	if strict() {
		t.Fatalf("%s (OIDCAUTH_STRICT=1: run `make integration`, which installs it, or install it yourself)", why)
	}
	t.Skipf("%s; skipping (run `make integration` to install and run it)", why)
}

// missingError is a dependency the machine lacks (a program, the Node
// packages): tests skip on it outside strict mode, where any other set-up
// error is a failure.
type missingError struct{ what string }

func (e *missingError) Error() string { return e.what }

// requireReady fails or skips t when a shared set-up step failed.
func requireReady(t testing.TB, err error) {
	t.Helper()
	if err == nil {
		return
	}
	var missing *missingError
	if errors.As(err, &missing) {
		unavailable(t, missing.what)
	}
	t.Fatalf("set-up failed: %v", err)
}

// lookPath finds program or reports it missing.
func lookPath(program string) (string, error) {
	p, err := exec.LookPath(program)
	if err != nil {
		return "", &missingError{program + " is not on the PATH"}
	}
	return p, nil
}

// --- artifacts ----------------------------------------------------------

var artifacts struct {
	once sync.Once
	dir  string
	err  error
}

// artifactsDir is where failing tests leave screenshots, page HTML and
// logs: $OIDCAUTH_ARTIFACTS/interop, or a temporary directory.
func artifactsDir() (string, error) {
	artifacts.once.Do(func() {
		if base := os.Getenv("OIDCAUTH_ARTIFACTS"); base != "" {
			artifacts.dir = filepath.Join(base, "interop")
			artifacts.err = os.MkdirAll(artifacts.dir, 0o755)
			return
		}
		artifacts.dir, artifacts.err = os.MkdirTemp("", "oidcauth-interop-artifacts-")
	})
	return artifacts.dir, artifacts.err
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// saveArtifact writes data to the artifacts directory as
// <test name>/<name> and returns its path.
func saveArtifact(testName, name string, data []byte) (string, error) {
	dir, err := artifactsDir()
	if err != nil {
		return "", err
	}
	dir = filepath.Join(dir, unsafeName.ReplaceAllString(testName, "_"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	p := filepath.Join(dir, unsafeName.ReplaceAllString(name, "_"))
	return p, os.WriteFile(p, data, 0o644)
}

// --- ports --------------------------------------------------------------

// Port is a loopback port held for a program that must be told its port
// before it starts (examples/basic's ADDR) while its URLs are registered
// at an OP: the listener keeps anyone else off the port until release,
// which startApp calls just before starting the program. (Programs that
// can take a listener get one instead; see startOP.)
type Port struct {
	Num int
	ln  net.Listener
}

// reservePort holds a free loopback port.
func reservePort() (*Port, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	return &Port{Num: ln.Addr().(*net.TCPAddr).Port, ln: ln}, nil
}

// Base is the URL of an app on the port: http://127.0.0.1:PORT.
func (p *Port) Base() string { return "http://127.0.0.1:" + strconv.Itoa(p.Num) }

// release frees the port for the program about to use it.
func (p *Port) release() {
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
}

// --- processes ----------------------------------------------------------

// process is a program the tests started. Its output goes to a log file and
// to a line watcher; stop ends it by pid.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	logFile *os.File
	done    chan struct{} // closed when the process has exited and its output is read
	copied  chan struct{} // closed when its output is read
	waitErr error

	mu      sync.Mutex
	lines   []string
	changed chan struct{} // closed and replaced on every new line
}

// startProcess starts cmd with its stdout and stderr in a log file in
// logDir. listener, when not nil, is passed to the child as file
// descriptor 3.
func startProcess(name string, cmd *exec.Cmd, logDir string, listener *os.File) (*process, error) {
	f, err := os.Create(filepath.Join(logDir, unsafeName.ReplaceAllString(name, "_")+".log"))
	if err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	cmd.Stdout = pw
	cmd.Stderr = pw
	if listener != nil {
		cmd.ExtraFiles = []*os.File{listener}
	}
	// Its own process group, so that a Ctrl-C at the terminal reaches the
	// test binary, which stops it, and not the child directly.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p := &process{name: name, cmd: cmd, logPath: f.Name(), logFile: f, done: make(chan struct{}), copied: make(chan struct{}), changed: make(chan struct{})}
	// Pdeathsig fires when the OS thread that started the child exits, not
	// the process: start and wait from one goroutine locked to its thread
	// (see go.dev/issue/27505).
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		p.waitErr = cmd.Wait()
		pw.Close()
		<-p.copied
		close(p.done)
	}()
	go p.copyLines(pr)
	if err := <-started; err != nil {
		pw.Close()
		<-p.copied
		f.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	return p, nil
}

func (p *process) copyLines(r io.Reader) {
	defer close(p.copied)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		fmt.Fprintln(p.logFile, line)
		p.mu.Lock()
		p.lines = append(p.lines, line)
		close(p.changed)
		p.changed = make(chan struct{})
		p.mu.Unlock()
	}
	_, _ = io.Copy(io.Discard, r)
}

// pid is the process id.
func (p *process) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has ended, and how.
func (p *process) exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.waitErr
	default:
		return false, nil
	}
}

// output returns what the process printed so far.
func (p *process) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.lines, "\n")
}

// linesSince returns the lines printed from index from on, and the next
// index.
func (p *process) linesSince(from int) ([]string, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if from > len(p.lines) {
		from = len(p.lines)
	}
	return append([]string(nil), p.lines[from:]...), len(p.lines)
}

// mark returns the current end of the output, for waitLine.
func (p *process) mark() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.lines)
}

// waitLine waits until a line printed after mark contains substr, and
// returns it.
func (p *process) waitLine(ctx context.Context, mark int, substr string) (string, error) {
	for {
		p.mu.Lock()
		for _, l := range p.lines[min(mark, len(p.lines)):] {
			if strings.Contains(l, substr) {
				p.mu.Unlock()
				return l, nil
			}
		}
		changed := p.changed
		p.mu.Unlock()
		select {
		case <-changed:
		case <-p.done:
			// One more look: the last lines may have come with the exit.
			p.mu.Lock()
			for _, l := range p.lines[min(mark, len(p.lines)):] {
				if strings.Contains(l, substr) {
					p.mu.Unlock()
					return l, nil
				}
			}
			p.mu.Unlock()
			return "", fmt.Errorf("%s exited (%v) before printing %q", p.name, p.waitErr, substr)
		case <-ctx.Done():
			return "", fmt.Errorf("%s did not print %q: %w", p.name, substr, ctx.Err())
		}
	}
}

// stop ends the process by its pid: SIGTERM, then SIGKILL after grace. It
// returns the exit error, or nil for an exit through SIGTERM or status 0.
func (p *process) stop(grace time.Duration) error {
	if done, _ := p.exited(); !done {
		_ = syscall.Kill(p.pid(), syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(grace):
			_ = syscall.Kill(p.pid(), syscall.SIGKILL)
			<-p.done
		}
	}
	p.logFile.Close()
	var ee *exec.ExitError
	if errors.As(p.waitErr, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGTERM {
			return nil
		}
	}
	return p.waitErr
}

// saveLog copies the process's log to the artifacts of testName and
// returns its path.
func (p *process) saveLog(testName string) (string, error) {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return "", err
	}
	return saveArtifact(testName, p.name+".log", b)
}

// environ returns the current environment without the variables that
// configure oidcauth or examples/basic, plus extra.
func environ(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "OIDC_") || strings.HasPrefix(name, "SESSION_") ||
			strings.HasPrefix(name, "REDIS_") || name == "ADDR" || strings.HasPrefix(name, "OP_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}
