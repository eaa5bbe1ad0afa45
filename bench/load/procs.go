package main

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
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/oidcauth/oidcauth/internal/testenv"
)

// proc is a child process: a server under test or redis-server. Its
// output goes to a log file in the run's directory.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when it has exited

	mu   sync.Mutex
	url  string        // what it printed as open=..., once it has
	seen chan struct{} // closed when url is set
}

// procs are every process the run started; stopAll ends them by pid.
type procs struct {
	mu   sync.Mutex
	list []*proc
}

// start starts bin with args and env in its own process group (so that a
// Ctrl-C reaches only this program, which then stops them in order), with
// SIGKILL as its parent-death signal where the OS has one.
func (ps *procs) start(name, bin string, args, env []string, logDir string) (*proc, error) {
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
	cmd.SysProcAttr = sysProcAttr()
	p := &proc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{}), seen: make(chan struct{})}
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

// waitURL waits until p has printed the URL it serves.
func (p *proc) waitURL(ctx context.Context, within time.Duration) (string, error) {
	t := time.NewTimer(within)
	defer t.Stop()
	select {
	case <-p.seen:
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.url, nil
	case <-p.done:
		return "", fmt.Errorf("%s exited at start-up:\n%s", p.name, p.logTail(15))
	case <-t.C:
		return "", fmt.Errorf("%s did not start listening within %v:\n%s", p.name, within, p.logTail(15))
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// alive reports whether p is still running.
func (p *proc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// stop ends p by its pid: SIGTERM, then SIGKILL after a few seconds.
func (p *proc) stop() {
	if !p.alive() {
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

// stopAll stops every process, the most recently started first.
func (ps *procs) stopAll() {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for i := len(ps.list) - 1; i >= 0; i-- {
		ps.list[i].stop()
	}
	ps.list = nil
}

func (p *proc) logTail(n int) string {
	b, _ := os.ReadFile(p.logPath)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return "    " + strings.Join(lines[max(0, len(lines)-n):], "\n    ")
}

// startRedis starts redis-server on a free loopback port without
// persistence, its data in dir and its log in logDir, and waits until the
// server answering there is this one.
func (ps *procs) startRedis(ctx context.Context, bin, dir, logDir string) (*proc, string, error) {
	var lastErr error
	for range 5 {
		port, err := freePort()
		if err != nil {
			return nil, "", err
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		p, err := ps.start("redis", bin, []string{
			"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no",
			"--dir", dir, "--daemonize", "no", "--logfile", "",
		}, os.Environ(), logDir)
		if err != nil {
			return nil, "", err
		}
		deadline := time.Now().Add(10 * time.Second)
		for lastErr = nil; ; {
			if redisPID(addr) == p.pid() {
				return p, addr, nil
			}
			if !p.alive() {
				lastErr = fmt.Errorf("redis-server exited at start-up:\n%s", p.logTail(5))
				break
			}
			if ctx.Err() != nil {
				return nil, "", ctx.Err()
			}
			if time.Now().After(deadline) {
				p.stop()
				lastErr = fmt.Errorf("redis-server did not answer within 10s:\n%s", p.logTail(5))
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil, "", lastErr
}

// redisPID is the process id of the Redis server answering at addr, or 0.
func redisPID(addr string) int {
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

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// cpuTicks is utime+stime of pid from /proc/<pid>/stat, in clock ticks.
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is parenthesised and may hold spaces.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, errors.New("malformed /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("malformed /proc stat")
	}
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return ut + st, nil
}

// clockTick is the length of one /proc clock tick (USER_HZ).
func clockTick() time.Duration {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err == nil {
		if hz, err := strconv.Atoi(strings.TrimSpace(string(out))); err == nil && hz > 0 {
			return time.Second / time.Duration(hz)
		}
	}
	return 10 * time.Millisecond // USER_HZ is 100 on Linux
}
