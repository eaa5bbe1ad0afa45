package interop

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oidcauth/oidcauth/redisstore"
)

// Redis sessions (REDIS_URL): one redis-server for the run, started on
// first use like the browser and the certified OP, each test using a
// database of its own; and flow 5, two examples/basic instances sharing
// sessions through it.

// RedisServer is the run's redis-server, on a loopback port, without
// persistence.
type RedisServer struct {
	Addr   string
	proc   *process
	nextDB atomic.Int32
}

var sharedRedisServer lazy[*RedisServer]

// sharedRedis returns the run's redis-server, starting it on first use. It
// skips the test (fails it under OIDCAUTH_STRICT=1) when redis-server is
// not installed.
func sharedRedis(t testing.TB) *RedisServer {
	t.Helper()
	r, err := sharedRedisServer.get(func() (*RedisServer, error) {
		ctx, cancel := context.WithTimeout(suite.startCtx, 30*time.Second)
		defer cancel()
		start := time.Now()
		r, err := startRedis(ctx, suite.dir)
		if err != nil {
			return nil, err
		}
		logf("redis-server (pid %d) ready at %s in %v", r.proc.pid(), r.Addr, since(start))
		atExit(func(failed bool) error { return stopAndSave(r.proc, failed) })
		return r, nil
	})
	requireReady(t, err)
	return r
}

// startRedis starts redis-server on a free loopback port (reservePort,
// released just before the start; another attempt on another port if
// something took it meanwhile) and waits until it accepts connections.
func startRedis(ctx context.Context, logDir string) (*RedisServer, error) {
	bin, err := lookPath("redis-server")
	if err != nil {
		return nil, err
	}
	var last error
	for attempt := 1; attempt <= 3; attempt++ {
		port, err := reservePort()
		if err != nil {
			return nil, err
		}
		cmd := exec.Command(bin,
			"--bind", "127.0.0.1",
			"--port", strconv.Itoa(port.Num),
			"--save", "", "--appendonly", "no",
			"--dir", logDir,
			"--daemonize", "no",
			"--logfile", "", // stdout, into the process log
		)
		cmd.Env = environ()
		port.release()
		proc, err := startProcess("redis-server-"+strconv.Itoa(attempt), cmd, logDir, nil)
		if err != nil {
			return nil, err
		}
		if _, err := proc.waitLine(ctx, 0, "Ready to accept connections"); err == nil {
			return &RedisServer{Addr: "127.0.0.1:" + strconv.Itoa(port.Num), proc: proc}, nil
		}
		_ = proc.stop(5 * time.Second)
		last = fmt.Errorf("redis-server did not start: %v\n%s", err, proc.output())
		if !strings.Contains(proc.output(), "Address already in use") {
			break
		}
	}
	return nil, last
}

// NewDB returns the URL of a database that no other test uses (redis
// numbers them 0 to 15; the tests take 1 on), so that their session counts
// are their own.
func (r *RedisServer) NewDB(t testing.TB) string {
	t.Helper()
	n := r.nextDB.Add(1)
	if n > 15 {
		t.Fatalf("redis-server has no database left for %s", t.Name())
	}
	return "redis://" + r.Addr + "/" + strconv.Itoa(int(n))
}

// redisSessions returns how many sessions the database at url holds (the
// keys oidcauth:s:*, see README "Key layout").
func redisSessions(t testing.TB, url string) int {
	t.Helper()
	client, err := redisstore.NewClient(url)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	keys, err := client.Keys(ctx, redisstore.DefaultKeyPrefix+"s:*").Result()
	if err != nil {
		t.Fatalf("reading %s: %v", url, err)
	}
	return len(keys)
}

// redisPair is two examples/basic instances behind different ports, as two
// replicas behind a load balancer: one client registration at the shared
// OP (each instance's callback and post-logout URIs; the back-channel URI
// is the first instance's), one SESSION_SECRET, one Redis database. The
// browser sends 127.0.0.1's cookies to either port, as it would to either
// replica behind one origin.
type redisPair struct {
	A, B     *App
	Client   Client
	RedisURL string
}

func newRedisPair(t *testing.T, redis *RedisServer, c *Certified, name string) *redisPair {
	t.Helper()
	redisURL := redis.NewDB(t)
	portA, err := reservePort()
	if err != nil {
		t.Fatal(err)
	}
	defer portA.release()
	portB, err := reservePort()
	if err != nil {
		t.Fatal(err)
	}
	defer portB.release()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client, err := c.OP.Register(ctx, appClient(portA.Base(), portB.Base()))
	if err != nil {
		t.Fatal(err)
	}
	secret := randomToken()
	opts := func(p *Port) AppOptions {
		return AppOptions{Port: p, Issuer: c.OP.Issuer, ClientID: client.ID, ClientSecret: client.Secret,
			SessionSecret: secret, Env: []string{"REDIS_URL=" + redisURL}}
	}
	return &redisPair{
		A:        newApp(t, name+"-a", opts(portA)),
		B:        newApp(t, name+"-b", opts(portB)),
		Client:   client,
		RedisURL: redisURL,
	}
}

// replayMe asks app's /me with a copied session cookie, from outside the
// browser: what anyone holding the cookie gets.
func replayMe(t testing.TB, app *App, cookieName, value string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, app.URL("/me"), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/json")
	req.AddCookie(&http.Cookie{Name: cookieName, Value: value})
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("GET %s with a copied cookie: %v", req.URL, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// sessionIDCookieMax bounds a Redis session cookie: a 256-bit id and an
// HMAC-SHA256 tag, base64url (about 90 bytes), where a cookie session is
// the sealed ID token and more (a kilobyte or several).
const sessionIDCookieMax = 200

// Flow 5: two instances share sessions through Redis. Log in on A; B knows
// the user. The cookie carries only a session id, and the session is in
// Redis, so the cookie is worth something only while the Redis entry
// lives: log out on B, and the copied cookie is refused by A at once,
// before the OP even confirms the logout (so it is not the OP's
// back-channel logout that ended it). Cookie sessions would fail each of
// these checks.
func TestRedisTwoInstances(t *testing.T) {
	t.Parallel()
	redis := sharedRedis(t) // first: without redis-server, skip before starting the rest
	c := sharedCertified(t)
	p := newRedisPair(t, redis, c, "basic-redis")
	tab := sharedBrowser(t).NewWindow(t, "two-instances")

	loginAt(t, tab, p.A, alice)
	ck := tab.Cookie(p.A.Base, "oidcauth")
	if ck == nil {
		tab.fatal("no session cookie after logging in at instance A")
	}
	if len(ck.Value) > sessionIDCookieMax || tab.Cookie(p.A.Base, "oidcauth.1") != nil {
		t.Errorf("the session cookie is %d bytes (chunked: %v): a cookie session, not a Redis session id", len(ck.Value), tab.Cookie(p.A.Base, "oidcauth.1") != nil)
	}
	if n := redisSessions(t, p.RedisURL); n != 1 {
		t.Errorf("Redis holds %d sessions after one login, want 1", n)
	}

	// B, which did not see the login, knows the user.
	tab.Go(p.B.URL("/"))
	want := me{Sub: alice.Login, Email: alice.Email, Name: alice.Name}
	if status, m := meOf(t, tab); status != http.StatusOK || m != want {
		tab.fatal("instance B: /me = %d %+v, want 200 %+v", status, m, want)
	}
	tab.Screenshot("1-instance-b-knows-alice")
	if got := tab.Text("#user-name"); got != alice.Name {
		t.Errorf("instance B's home page greets %q, want %q", got, alice.Name)
	}
	for _, app := range []*App{p.A, p.B} {
		if status := replayMe(t, app, ck.Name, ck.Value); status != http.StatusOK {
			t.Fatalf("%s: /me with the copied cookie = %d, want 200", app.Base, status)
		}
	}

	// Log out on B. Its end-session redirect is the OP's confirmation:
	// the session is already deleted from Redis, for A as well.
	tab.Click(`form[action="/logout"] button[type="submit"]`)
	tab.WaitPage(c.OP.Issuer+"/session/end", opLogoutYes)
	if status := replayMe(t, p.A, ck.Name, ck.Value); status != http.StatusUnauthorized {
		t.Errorf("instance A: /me with the copied cookie after logging out on B = %d, want 401", status)
	}
	if n := redisSessions(t, p.RedisURL); n != 0 {
		t.Errorf("Redis holds %d sessions after the logout, want 0", n)
	}
	tab.Click(opLogoutYes)
	tab.WaitPage(p.B.URL("/"), `a[href="/login"]`)

	expectAnonymous(t, tab, p.A, "after logging out on B")
	tab.Screenshot("2-instance-a-anonymous")
}
