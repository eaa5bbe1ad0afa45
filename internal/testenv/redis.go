package testenv

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Redis is a redis-server started for one test, on a free loopback port.
type Redis struct {
	t       testing.TB // nil for LaunchRedis
	binary  string
	dir     string
	ownDir  bool
	port    int
	persist bool
	cluster bool
	monitor string // for a Sentinel: "name host port" of the master it watches

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// RedisOption configures StartRedis.
type RedisOption func(*Redis)

// WithPersistence makes the server keep its data in an append-only file
// (fsync on every write) in the test's temporary directory, so that it
// survives Stop and Restart. By default nothing is persisted.
func WithPersistence() RedisOption { return func(r *Redis) { r.persist = true } }

// StartRedis starts a redis-server of its own on a free loopback port,
// waits until it answers PING, and kills it by its pid when the test ends.
// Without redis-server on the PATH the test is skipped (failed under
// OIDCAUTH_STRICT=1).
func StartRedis(t testing.TB, opts ...RedisOption) *Redis {
	t.Helper()
	r := &Redis{t: t, binary: RequireBinary(t, "redis-server"), dir: t.TempDir()}
	for _, o := range opts {
		o(r)
	}
	t.Cleanup(r.kill)
	if err := r.launch(); err != nil {
		t.Fatalf("testenv: starting redis-server: %v", err)
	}
	return r
}

// LaunchRedis is StartRedis for a TestMain, which has no testing.TB: it
// returns an error where StartRedis would skip or fail, and the caller
// must Close the server. Stop and Restart panic on failure.
func LaunchRedis(opts ...RedisOption) (*Redis, error) {
	binary, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, errors.New("redis-server is not on the PATH")
	}
	dir, err := os.MkdirTemp("", "testenv-redis-")
	if err != nil {
		return nil, err
	}
	r := &Redis{binary: binary, dir: dir, ownDir: true}
	for _, o := range opts {
		o(r)
	}
	if err := r.launch(); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// StartRedisSentinel starts a Redis Sentinel (redis-server --sentinel)
// watching master under the name masterName, and waits until it knows the
// master's address.
func StartRedisSentinel(t testing.TB, master *Redis, masterName string) *Redis {
	t.Helper()
	s := StartRedis(t, func(r *Redis) { r.monitor = masterName + " 127.0.0.1 " + strconv.Itoa(master.port) })
	deadline := time.Now().Add(10 * time.Second)
	for {
		reply, err := Command(s.Addr(), "SENTINEL", "get-master-addr-by-name", masterName)
		if err == nil && strings.Contains(reply, strconv.Itoa(master.port)) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("testenv: the Sentinel does not know %s: %q %v", masterName, reply, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// StartRedisCluster starts a Redis Cluster of n master nodes without
// replicas (redis-cli --cluster create), waits until every node reports
// cluster_state:ok, and returns the nodes.
func StartRedisCluster(t testing.TB, n int) []*Redis {
	t.Helper()
	cli := RequireBinary(t, "redis-cli")
	nodes := make([]*Redis, n)
	args := []string{"--cluster", "create"}
	for i := range nodes {
		nodes[i] = StartRedis(t, func(r *Redis) { r.cluster = true })
		args = append(args, nodes[i].Addr())
	}
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("testenv: redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, node := range nodes {
		for {
			info, err := Command(node.Addr(), "CLUSTER", "INFO")
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("testenv: the cluster is not ready: %v\n%s", err, info)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nodes
}

// Addr is the server's host:port.
func (r *Redis) Addr() string { return "127.0.0.1:" + strconv.Itoa(r.port) }

// URL is the server's redis:// URL.
func (r *Redis) URL() string { return "redis://" + r.Addr() }

// Stop shuts the server down (SIGTERM, so a persistent server writes its
// data out; SIGKILL after five seconds) and waits until it has exited.
// Clients then get connection errors, as when Redis goes down.
func (r *Redis) Stop() {
	r.helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Signal(os.Interrupt)
	select {
	case <-r.done:
	case <-time.After(5 * time.Second):
		_ = r.cmd.Process.Kill()
		<-r.done
	}
	r.cmd = nil
}

// Kill ends the server at once with SIGKILL, as a crash would, and waits
// until it has exited.
func (r *Redis) Kill() {
	r.helper()
	r.kill()
}

// Restart stops the server if it runs and starts it again on the same
// port with the same data directory.
func (r *Redis) Restart() {
	r.helper()
	r.Stop()
	var err error
	for attempt := 0; attempt < 20; attempt++ { // the port may linger briefly
		if err = r.start(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	r.fatalf("testenv: restarting redis-server on port %d: %v", r.port, err)
}

// Close kills the server, and removes its data directory when LaunchRedis
// made it.
func (r *Redis) Close() {
	r.kill()
	if r.ownDir {
		os.RemoveAll(r.dir)
	}
}

func (r *Redis) launch() error {
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		if r.port, err = freePort(); err != nil {
			continue
		}
		if err = r.start(); err == nil {
			return nil
		}
	}
	return err
}

func (r *Redis) start() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var args []string
	if r.monitor != "" {
		// A Sentinel rewrites its configuration file, so it needs one.
		conf := filepath.Join(r.dir, "sentinel.conf")
		if err := os.WriteFile(conf, []byte("sentinel monitor "+r.monitor+" 1\n"), 0o600); err != nil {
			return err
		}
		args = append(args, conf, "--sentinel")
	}
	args = append(args,
		"--port", strconv.Itoa(r.port),
		"--bind", "127.0.0.1",
		"--dir", r.dir,
		"--logfile", "redis.log",
		"--daemonize", "no",
	)
	switch {
	case r.monitor != "":
	case r.persist:
		args = append(args, "--save", "", "--appendonly", "yes", "--appendfsync", "always")
	default:
		args = append(args, "--save", "", "--appendonly", "no")
	}
	if r.cluster {
		args = append(args, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
	}
	cmd := exec.Command(r.binary, args...)
	cmd.Dir = r.dir
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-done:
			return fmt.Errorf("redis-server exited at start-up: %s", r.logTail())
		default:
		}
		// The server answering must be this one, not another that took
		// the port first.
		if serverPID(r.Addr()) == cmd.Process.Pid {
			r.cmd, r.done = cmd, done
			return nil
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-done
			return fmt.Errorf("redis-server did not answer PING within 10s: %s", r.logTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill ends the server by its pid.
func (r *Redis) kill() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd != nil {
		_ = r.cmd.Process.Kill()
		<-r.done
		r.cmd = nil
	}
}

func (r *Redis) fatalf(format string, args ...any) {
	if r.t == nil {
		panic(fmt.Sprintf(format, args...))
	}
	r.t.Helper()
	r.t.Fatalf(format, args...)
}

func (r *Redis) helper() {
	if r.t != nil {
		r.t.Helper()
	}
}

func (r *Redis) logTail() string {
	b, _ := os.ReadFile(filepath.Join(r.dir, "redis.log"))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-5):], "\n")
}

// serverPID returns the process id of the Redis server at addr once it
// answers and has loaded its data, or 0.
func serverPID(addr string) int {
	info, err := Command(addr, "INFO")
	if err != nil || strings.Contains(info, "loading:1") {
		return 0 // down, still loading, or not Redis
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(line, "process_id:"); ok {
			pid, _ := strconv.Atoi(strings.TrimSpace(v))
			return pid
		}
	}
	return 0
}

// Command sends one command to the Redis server at addr and returns its
// reply as text: a status, an integer, a bulk string, or the elements of
// an array of those joined by newlines. An error reply is an error.
func Command(addr string, args ...string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	var req strings.Builder
	fmt.Fprintf(&req, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&req, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.Write([]byte(req.String())); err != nil {
		return "", err
	}
	return readReply(bufio.NewReader(c))
}

func readReply(br *bufio.Reader) (string, error) {
	line, err := br.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("empty reply")
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "", errors.New(line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", err
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(br, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return "", err
		}
		parts := make([]string, 0, max(n, 0))
		for range n {
			p, err := readReply(br)
			if err != nil {
				return "", err
			}
			parts = append(parts, p)
		}
		return strings.Join(parts, "\n"), nil
	}
	return "", fmt.Errorf("unexpected reply %q", line)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
