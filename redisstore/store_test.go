package redisstore

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/oidcauth/oidcauth/internal/seal"
	"github.com/oidcauth/oidcauth/internal/testenv"
)

const (
	secretA = "redisstore-test-secret-A-0123456789abcdefgh"
	secretB = "redisstore-test-secret-B-zyxwvutsrqponmlkji"
)

// counter is a go-redis hook that counts round trips (one per command or
// pipeline sent) and records the commands, ignoring a new connection's
// handshake.
type counter struct {
	trips atomic.Int64
	mu    sync.Mutex
	cmds  []string
}

func (c *counter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *counter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.record([]redis.Cmder{cmd})
		return next(ctx, cmd)
	}
}

func (c *counter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.record(cmds)
		return next(ctx, cmds)
	}
}

func (c *counter) record(cmds []redis.Cmder) {
	c.mu.Lock()
	defer c.mu.Unlock()
	counted := false
	for _, cmd := range cmds {
		switch name := cmd.Name(); name {
		case "hello", "auth", "select", "client", "maint_notifications":
		default:
			c.cmds = append(c.cmds, name)
			counted = true
		}
	}
	if counted {
		c.trips.Add(1)
	}
}

// reset returns the round trips and commands since the last reset.
func (c *counter) reset() (int64, []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cmds := c.cmds
	c.cmds = nil
	return c.trips.Swap(0), cmds
}

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now()} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// env is a Redis server, a raw client for inspecting it, and a counted
// client for the stores under test.
type env struct {
	t       *testing.T
	redis   *testenv.Redis
	raw     *redis.Client
	client  *redis.Client
	counter *counter
}

func newEnv(t *testing.T) *env {
	t.Helper()
	r := testenv.StartRedis(t)
	e := &env{t: t, redis: r, counter: new(counter)}
	client, err := NewClient(r.URL())
	if err != nil {
		t.Fatal(err)
	}
	e.client = client.(*redis.Client)
	e.client.AddHook(e.counter)
	e.raw = redis.NewClient(&redis.Options{Addr: r.Addr()})
	t.Cleanup(func() { e.client.Close(); e.raw.Close() })
	return e
}

func (e *env) store(opts Options) *Store {
	e.t.Helper()
	if opts.Secrets == nil {
		opts.Secrets = []string{secretA}
	}
	s, err := New(e.client, opts)
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

func (e *env) create(s *Store, entry Entry) string {
	e.t.Helper()
	token, err := s.Create(context.Background(), entry)
	if err != nil {
		e.t.Fatal(err)
	}
	return token
}

func (e *env) mustLoad(s *Store, token string) *Entry {
	e.t.Helper()
	got, err := s.Load(context.Background(), token)
	if err != nil || got == nil {
		e.t.Fatalf("Load = %v, %v; want the session", got, err)
	}
	return got
}

func (e *env) mustBeGone(s *Store, token string) {
	e.t.Helper()
	got, err := s.Load(context.Background(), token)
	if err != nil || got != nil {
		e.t.Fatalf("Load = %+v, %v; want nil, nil", got, err)
	}
}

// keys lists every key in the database.
func (e *env) keys() []string {
	e.t.Helper()
	keys, err := e.raw.Keys(context.Background(), "*").Result()
	if err != nil {
		e.t.Fatal(err)
	}
	slices.Sort(keys)
	return keys
}

func (e *env) pttl(key string) time.Duration {
	e.t.Helper()
	d, err := e.raw.PTTL(context.Background(), key).Result()
	if err != nil {
		e.t.Fatal(err)
	}
	return d
}

func (s *Store) keyOf(token string) string { return s.sessionKey(s.verify(token)) }

func TestCreateLoadRoundTrip(t *testing.T) {
	e := newEnv(t)
	s := e.store(Options{})
	exp := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	token := e.create(s, Entry{Data: []byte("payload"), Subject: "alice", SID: "sid-1", ExpiresAt: exp})
	got := e.mustLoad(s, token)
	if string(got.Data) != "payload" || got.Subject != "alice" || got.SID != "sid-1" || !got.ExpiresAt.Equal(exp) {
		t.Fatalf("Load = %+v", got)
	}
	// The token is a 256-bit id and its tag: nothing else.
	id, tag, ok := strings.Cut(token, ".")
	if !ok || len(id) != 43 || len(tag) != 43 {
		t.Fatalf("token %q is not id.tag", token)
	}
	// Every Create makes a new id.
	if other := e.create(s, Entry{Data: []byte("payload")}); other == token {
		t.Fatal("two sessions got the same token")
	}
}

func TestForgedTokensNeverReachRedis(t *testing.T) {
	e := newEnv(t)
	s := e.store(Options{})
	token := e.create(s, Entry{Data: []byte("x"), Subject: "alice"})
	e.mustLoad(s, token)
	otherSecret := e.store(Options{Secrets: []string{secretB}})
	otherPrefix := e.store(Options{KeyPrefix: "otherapp:"})
	id, tag, _ := strings.Cut(token, ".")
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	forged := map[string]string{
		"empty":              "",
		"garbage":            "not-a-token",
		"id without tag":     id,
		"tampered id":        flip(id, 5) + "." + tag,
		"tampered tag":       id + "." + flip(tag, 5),
		"truncated":          token[:len(token)-1],
		"other secret":       e.create(otherSecret, Entry{Data: []byte("x")}),
		"other prefix":       e.create(otherPrefix, Entry{Data: []byte("x")}),
		"signed short id":    s.sealer.Sign("short", s.signCtx),
		"other context":      s.sealer.Sign(id, "some other context"),
		"another id's tag":   newID() + "." + tag,
		"unknown random tag": newID() + "." + newID(),
	}
	e.counter.reset()
	for name, tok := range forged {
		if got, err := s.Load(context.Background(), tok); got != nil || err != nil {
			t.Errorf("%s: Load = %+v, %v", name, got, err)
		}
		if err := s.Delete(context.Background(), tok); err != nil {
			t.Errorf("%s: Delete = %v", name, err)
		}
	}
	if trips, cmds := e.counter.reset(); trips != 0 {
		t.Fatalf("forged tokens cost %d round trips to Redis: %v", trips, cmds)
	}
	e.mustLoad(s, token) // and the real one was not deleted
}

func TestLoadIsOneRoundTripWithoutWrites(t *testing.T) {
	for _, idle := range []time.Duration{0, 30 * time.Minute} {
		t.Run("idle="+idle.String(), func(t *testing.T) {
			e := newEnv(t)
			s := e.store(Options{IdleTimeout: idle})
			token := e.create(s, Entry{Data: []byte("x"), Subject: "alice", SID: "sid"})
			e.counter.reset()
			for range 5 {
				e.mustLoad(s, token)
			}
			trips, cmds := e.counter.reset()
			if trips != 5 {
				t.Fatalf("5 loads took %d round trips (%v), want 5", trips, cmds)
			}
			for _, c := range cmds {
				if c != "get" && c != "pttl" {
					t.Fatalf("a load sent %q: %v", c, cmds)
				}
			}
			// A missing session costs one round trip too.
			if err := s.Delete(context.Background(), token); err != nil {
				t.Fatal(err)
			}
			e.counter.reset()
			e.mustBeGone(s, token)
			if trips, cmds := e.counter.reset(); trips != 1 {
				t.Fatalf("loading a deleted session took %d round trips: %v", trips, cmds)
			}
		})
	}
}

func TestRedisDumpRevealsNothing(t *testing.T) {
	e := newEnv(t)
	s := e.store(Options{IdleTimeout: time.Hour})
	secrets := []string{"eyJhbGciOiJSUzI1NiJ9.ID-TOKEN-BODY", "alice@example.com", "idp-session-77"}
	token := e.create(s, Entry{Data: []byte(secrets[0]), Subject: secrets[1], SID: secrets[2]})
	id, tag, _ := strings.Cut(token, ".")
	secrets = append(secrets, id, tag, "alice")
	ctx := context.Background()
	var dump []string
	for _, k := range e.keys() {
		dump = append(dump, k)
		switch typ := e.raw.Type(ctx, k).Val(); typ {
		case "string":
			dump = append(dump, e.raw.Get(ctx, k).Val())
		case "zset":
			dump = append(dump, e.raw.ZRange(ctx, k, 0, -1).Val()...)
		default:
			t.Fatalf("unexpected %s key %s", typ, k)
		}
		dump = append(dump, e.raw.Dump(ctx, k).Val())
	}
	if len(dump) == 0 {
		t.Fatal("nothing in Redis")
	}
	for _, d := range dump {
		for _, secret := range secrets {
			if strings.Contains(d, secret) {
				t.Errorf("the dump contains %q", secret)
			}
		}
	}
	// The value opens only with the key it was sealed for, and only with
	// the store's secret.
	key := s.keyOf(token)
	value := e.raw.Get(ctx, key).Val()
	other, _ := seal.New(secretB)
	if _, err := other.Open(value, key); err == nil {
		t.Error("the value opens without the secret")
	}
	if _, err := s.sealer.Open(value, key); err != nil {
		t.Fatal("the value does not open with the secret")
	}
	// Moved under another session's key, it is refused.
	token2 := e.create(s, Entry{Data: []byte("bob's"), Subject: "bob"})
	if err := e.raw.Set(ctx, s.keyOf(token2), value, time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	e.mustBeGone(s, token2)
}

func TestAbsoluteExpiry(t *testing.T) {
	e := newEnv(t)
	t.Run("Redis TTL", func(t *testing.T) {
		s := e.store(Options{})
		token := e.create(s, Entry{Data: []byte("x"), Subject: "alice", SID: "sid", ExpiresAt: time.Now().Add(1500 * time.Millisecond)})
		for _, k := range e.keys() {
			if d := e.pttl(k); d <= 0 || d > 1500*time.Millisecond {
				t.Fatalf("%s has TTL %v, want at most the 1.5s left", k, d)
			}
		}
		e.mustLoad(s, token)
		time.Sleep(1600 * time.Millisecond)
		e.mustBeGone(s, token)
		if keys := e.keys(); len(keys) != 0 {
			t.Fatalf("left behind: %v", keys) // indexes expire with their last session
		}
	})
	t.Run("checked on load", func(t *testing.T) {
		clk := newClock()
		s := e.store(Options{Now: clk.Now})
		token := e.create(s, Entry{Data: []byte("x"), ExpiresAt: clk.Now().Add(time.Hour)})
		clk.Add(time.Hour - time.Second)
		e.mustLoad(s, token)
		clk.Add(time.Second)
		e.mustBeGone(s, token)
	})
	t.Run("MaxAge caps and defaults", func(t *testing.T) {
		clk := newClock()
		s := e.store(Options{Now: clk.Now, MaxAge: time.Hour})
		far := e.create(s, Entry{Data: []byte("x"), ExpiresAt: clk.Now().Add(48 * time.Hour)})
		unset := e.create(s, Entry{Data: []byte("x")})
		for _, tok := range []string{far, unset} {
			if got := e.mustLoad(s, tok); !got.ExpiresAt.Equal(clk.Now().Add(time.Hour).Truncate(time.Millisecond)) {
				t.Errorf("ExpiresAt = %v, want MaxAge from now", got.ExpiresAt)
			}
			if d := e.pttl(s.keyOf(tok)); d > time.Hour {
				t.Errorf("TTL %v beyond MaxAge", d)
			}
		}
		if _, err := s.Create(context.Background(), Entry{ExpiresAt: clk.Now().Add(-time.Second)}); err == nil {
			t.Error("created an already expired session")
		}
	})
}

func TestIdleExpiry(t *testing.T) {
	e := newEnv(t)
	const idle = time.Second
	s := e.store(Options{IdleTimeout: idle})
	token := e.create(s, Entry{Data: []byte("x"), Subject: "alice"})
	if d := e.pttl(s.keyOf(token)); d <= 0 || d > idle {
		t.Fatalf("TTL %v, want the idle timeout", d)
	}
	// Used every 200ms for 2s (well past the idle timeout), it lives on.
	for range 10 {
		time.Sleep(200 * time.Millisecond)
		e.mustLoad(s, token)
	}
	// Left alone for longer than the idle timeout, it ends.
	time.Sleep(idle + 200*time.Millisecond)
	e.mustBeGone(s, token)
}

func TestIdleRefreshAtMostOncePerMinute(t *testing.T) {
	e := newEnv(t)
	clk := newClock()
	const idle = 30 * time.Minute
	s := e.store(Options{IdleTimeout: idle, MaxAge: 24 * time.Hour, Now: clk.Now})
	token := e.create(s, Entry{Data: []byte("x")})
	key := s.keyOf(token)
	ctx := context.Background()
	// idleFor makes the key's TTL what it is after d without use.
	idleFor := func(d time.Duration) {
		t.Helper()
		if err := e.raw.PExpire(ctx, key, idle-d).Err(); err != nil {
			t.Fatal(err)
		}
	}
	load := func() []string {
		t.Helper()
		e.counter.reset()
		e.mustLoad(s, token)
		trips, cmds := e.counter.reset()
		if trips > 2 {
			t.Fatalf("a load took %d round trips: %v", trips, cmds)
		}
		return cmds
	}
	if cmds := load(); slices.Contains(cmds, "pexpire") {
		t.Fatalf("fresh session refreshed: %v", cmds)
	}
	idleFor(59 * time.Second)
	for range 3 {
		if cmds := load(); slices.Contains(cmds, "pexpire") {
			t.Fatalf("refreshed after 59s: %v", cmds)
		}
	}
	if d := e.pttl(key); d > idle-58*time.Second {
		t.Fatalf("TTL %v was extended within the minute", d)
	}
	idleFor(61 * time.Second)
	if cmds := load(); !slices.Contains(cmds, "pexpire") {
		t.Fatalf("not refreshed after 61s: %v", cmds)
	}
	if d := e.pttl(key); d < idle-time.Second {
		t.Fatalf("TTL %v after the refresh, want about %v", d, idle)
	}
	if cmds := load(); slices.Contains(cmds, "pexpire") {
		t.Fatalf("refreshed again at once: %v", cmds)
	}
	// Near the absolute expiry, the refresh never goes past it.
	clk.Add(24*time.Hour - 10*time.Minute)
	idleFor(22 * time.Minute) // TTL 8m, 10m of lifetime left
	if cmds := load(); !slices.Contains(cmds, "pexpire") {
		t.Fatalf("not refreshed: %v", cmds)
	}
	if d := e.pttl(key); d > 10*time.Minute || d < 10*time.Minute-time.Second {
		t.Fatalf("TTL %v, want the 10m left of the absolute lifetime", d)
	}
	if cmds := load(); slices.Contains(cmds, "pexpire") {
		t.Fatalf("refreshed although capped by the lifetime: %v", cmds)
	}
}

func TestIndexesAndDeleteBy(t *testing.T) {
	e := newEnv(t)
	s := e.store(Options{})
	ctx := context.Background()
	a1 := e.create(s, Entry{Data: []byte("a1"), Subject: "alice", SID: "sid-1"})
	a2 := e.create(s, Entry{Data: []byte("a2"), Subject: "alice", SID: "sid-1"})
	a3 := e.create(s, Entry{Data: []byte("a3"), Subject: "alice", SID: "sid-2"})
	b1 := e.create(s, Entry{Data: []byte("b1"), Subject: "bob", SID: "sid-3"})
	anon := e.create(s, Entry{Data: []byte("no subject")})

	n, err := s.DeleteBySID(ctx, "sid-1")
	if err != nil || n != 2 {
		t.Fatalf("DeleteBySID = %d, %v; want 2", n, err)
	}
	e.mustBeGone(s, a1)
	e.mustBeGone(s, a2)
	e.mustLoad(s, a3)
	e.mustLoad(s, b1)
	if e.raw.Exists(ctx, s.indexNames("sid", "sid-1")[0]).Val() != 0 {
		t.Error("the emptied sid index is still there")
	}

	n, err = s.DeleteBySubject(ctx, "alice")
	if err != nil || n != 1 {
		t.Fatalf("DeleteBySubject = %d, %v; want 1 (the other two were already gone)", n, err)
	}
	e.mustBeGone(s, a3)
	e.mustLoad(s, b1)
	e.mustLoad(s, anon)
	if n, err := s.DeleteBySubject(ctx, "alice"); n != 0 || err != nil {
		t.Fatalf("second DeleteBySubject = %d, %v", n, err)
	}
	if n, err := s.DeleteBySID(ctx, "unknown"); n != 0 || err != nil {
		t.Fatalf("DeleteBySID(unknown) = %d, %v", n, err)
	}
	if _, err := s.DeleteBySubject(ctx, ""); err == nil {
		t.Error("DeleteBySubject(\"\") accepted")
	}

	// Logout (Delete) takes the session out of its indexes.
	if err := s.Delete(ctx, b1); err != nil {
		t.Fatal(err)
	}
	e.mustBeGone(s, b1)
	for _, idx := range []string{s.indexNames("sub", "bob")[0], s.indexNames("sid", "sid-3")[0]} {
		if n := e.raw.ZCard(ctx, idx).Val(); n != 0 {
			t.Errorf("index %s keeps %d members after logout", idx, n)
		}
	}
}

func TestIndexTTLAndPruning(t *testing.T) {
	e := newEnv(t)
	clk := newClock()
	s := e.store(Options{Now: clk.Now, MaxAge: 48 * time.Hour})
	ctx := context.Background()
	idx := s.indexNames("sub", "alice")[0]
	e.create(s, Entry{Data: []byte("long"), Subject: "alice", ExpiresAt: clk.Now().Add(2 * time.Hour)})
	e.create(s, Entry{Data: []byte("short"), Subject: "alice", ExpiresAt: clk.Now().Add(time.Hour)})
	// The index lives as long as its longest-lived session, not its newest.
	if d := e.pttl(idx); d < 2*time.Hour-time.Minute || d > 2*time.Hour {
		t.Fatalf("index TTL %v, want about 2h", d)
	}
	// Members past their expiry are pruned when the next session is added.
	clk.Add(90 * time.Minute)
	e.create(s, Entry{Data: []byte("new"), Subject: "alice", ExpiresAt: clk.Now().Add(time.Hour)})
	if n := e.raw.ZCard(ctx, idx).Val(); n != 2 {
		t.Fatalf("index has %d members, want 2 (the expired one pruned)", n)
	}
}

func TestSecretRotation(t *testing.T) {
	e := newEnv(t)
	old := e.store(Options{Secrets: []string{secretA}})
	rotated := e.store(Options{Secrets: []string{secretB, secretA}})
	ctx := context.Background()
	token := e.create(old, Entry{Data: []byte("x"), Subject: "alice", SID: "sid"})
	e.mustLoad(rotated, token)
	newer := e.create(rotated, Entry{Data: []byte("y"), Subject: "alice"})
	e.mustBeGone(old, newer) // signed with the new secret only
	// Sessions indexed under either secret are found.
	if n, err := rotated.DeleteBySubject(ctx, "alice"); n != 2 || err != nil {
		t.Fatalf("DeleteBySubject after rotation = %d, %v; want 2", n, err)
	}
}

func TestFailClosedAndRecovery(t *testing.T) {
	e := newEnv(t)
	s := e.store(Options{IdleTimeout: time.Hour})
	ctx := context.Background()
	token := e.create(s, Entry{Data: []byte("x"), Subject: "alice", SID: "sid"})
	e.redis.Kill()

	start := time.Now()
	got, err := s.Load(ctx, token)
	if err == nil || got != nil {
		t.Fatalf("Load with Redis down = %+v, %v; want an error and no session", got, err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Load took %v to fail", d)
	}
	if _, err := s.Create(ctx, Entry{Data: []byte("x")}); err == nil {
		t.Error("Create succeeded with Redis down")
	}
	if err := s.Delete(ctx, token); err == nil {
		t.Error("Delete succeeded with Redis down")
	}
	if _, err := s.DeleteBySubject(ctx, "alice"); err == nil {
		t.Error("DeleteBySubject succeeded with Redis down")
	}

	// Back up (empty: nothing was persisted), the same client works again.
	e.redis.Restart()
	deadline := time.Now().Add(10 * time.Second)
	for {
		token, err = s.Create(ctx, Entry{Data: []byte("after")})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no recovery after Redis restarted: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	e.mustLoad(s, token)
}

func TestNewChecksOptions(t *testing.T) {
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer client.Close()
	for name, opts := range map[string]Options{
		"no secret":     {},
		"empty secrets": {Secrets: []string{"", ""}},
		"short secret":  {Secrets: []string{"too-short"}},
		"negative":      {Secrets: []string{secretA}, IdleTimeout: -time.Second},
	} {
		if _, err := New(client, opts); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := New(nil, Options{Secrets: []string{secretA}}); err == nil {
		t.Error("nil client accepted")
	}
	if s, err := New(client, Options{Secrets: []string{secretA, ""}}); err != nil || len(s.indexKeys) != 1 {
		t.Errorf("an empty previous secret: %v", err)
	}
}

func TestEntryCodec(t *testing.T) {
	in := Entry{Data: []byte{0, 1, 2}, Subject: "ü", SID: "s", ExpiresAt: time.UnixMilli(1_700_000_000_123)}
	b := encodeEntry(&in)
	out, ok := decodeEntry(b)
	if !ok || string(out.Data) != string(in.Data) || out.Subject != in.Subject || out.SID != in.SID || !out.ExpiresAt.Equal(in.ExpiresAt) {
		t.Fatalf("round trip: %+v %v", out, ok)
	}
	for _, bad := range [][]byte{nil, {2}, b[:8], append([]byte{9}, b[1:]...), {1, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0x03}} {
		if _, ok := decodeEntry(bad); ok {
			t.Errorf("decoded %x", bad)
		}
	}
}

// A Redis that accepts connections but never answers must not hang Load.
func TestUnresponsiveRedisTimesOut(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // read nothing, answer nothing
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	}()
	client, err := NewClient("redis://" + l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	s, _ := New(client, Options{Secrets: []string{secretA}})
	token := s.sealer.Sign(newID(), s.signCtx)
	start := time.Now()
	got, err := s.Load(context.Background(), token)
	if err == nil || got != nil {
		t.Fatalf("Load = %+v, %v; want an error", got, err)
	}
	if d := time.Since(start); d > 6*time.Second {
		t.Fatalf("Load took %v to give up", d)
	}
}

func TestUpdateKeepsTheID(t *testing.T) {
	e := newEnv(t)
	clk := newClock()
	s := e.store(Options{IdleTimeout: time.Hour, Now: clk.Now})
	ctx := context.Background()
	exp := clk.Now().Add(2 * time.Hour)
	token := e.create(s, Entry{Data: []byte("v1"), Subject: "alice", SID: "sid-1", ExpiresAt: exp})
	if err := s.Update(ctx, token, Entry{Data: []byte("v2"), Subject: "alice", SID: "sid-2", ExpiresAt: exp}); err != nil {
		t.Fatal(err)
	}
	if got := e.mustLoad(s, token); string(got.Data) != "v2" || got.SID != "sid-2" {
		t.Fatalf("after Update: %+v", got)
	}
	// A changed sid is indexed too.
	if n, err := s.DeleteBySID(ctx, "sid-2"); n != 1 || err != nil {
		t.Fatalf("DeleteBySID(new sid) = %d, %v", n, err)
	}
	// An ended session is not re-created.
	if err := s.Update(ctx, token, Entry{Data: []byte("v3"), ExpiresAt: exp}); !errors.Is(err, ErrSessionEnded) {
		t.Fatalf("Update of an ended session = %v", err)
	}
	e.mustBeGone(s, token)
	if err := s.Update(ctx, "forged", Entry{Data: []byte("v3")}); !errors.Is(err, ErrSessionEnded) {
		t.Fatalf("Update with a forged token = %v", err)
	}
}

func TestLock(t *testing.T) {
	e := newEnv(t)
	s := e.store(Options{})
	ctx := context.Background()
	unlock, ok, err := s.Lock(ctx, "refresh-x", time.Minute)
	if err != nil || !ok {
		t.Fatalf("Lock = %v, %v", ok, err)
	}
	if _, ok, err := s.Lock(ctx, "refresh-x", time.Minute); ok || err != nil {
		t.Fatalf("second Lock = %v, %v; want held", ok, err)
	}
	if _, ok, _ := s.Lock(ctx, "refresh-y", time.Minute); !ok {
		t.Fatal("another name is locked too")
	}
	unlock()
	unlock2, ok, err := s.Lock(ctx, "refresh-x", 300*time.Millisecond)
	if err != nil || !ok {
		t.Fatalf("Lock after unlock = %v, %v", ok, err)
	}
	// An expired lock taken over by another holder is not released by
	// the first.
	time.Sleep(400 * time.Millisecond)
	if _, ok, _ := s.Lock(ctx, "refresh-x", time.Minute); !ok {
		t.Fatal("the lock did not expire")
	}
	unlock2()
	if _, ok, _ := s.Lock(ctx, "refresh-x", time.Minute); ok {
		t.Fatal("a stale unlock released another holder's lock")
	}
	e.redis.Kill()
	if _, ok, err := s.Lock(ctx, "refresh-z", time.Minute); ok || err == nil {
		t.Fatalf("Lock with Redis down = %v, %v", ok, err)
	}
}

// TestLoadCacheSharesDecodedAndForgetsDeleted: an unchanged session is
// decoded once, a rewritten one again, and a deleted one leaves nothing
// (its tokens) behind in memory.
func TestLoadCacheSharesDecodedAndForgetsDeleted(t *testing.T) {
	e := newEnv(t)
	s := e.store(Options{})
	token := e.create(s, Entry{Data: []byte("v1"), Subject: "alice", SID: "sid-1", ExpiresAt: time.Now().Add(time.Hour)})
	decodes := 0
	decode := func(b []byte) (any, error) { decodes++; return string(b), nil }
	for range 3 {
		v, _ := e.mustLoad(s, token).Decoded(decode)
		if v != "v1" {
			t.Fatalf("decoded %v", v)
		}
	}
	if decodes != 1 {
		t.Fatalf("an unchanged session was decoded %d times", decodes)
	}
	if err := s.Update(context.Background(), token, Entry{Data: []byte("v2"), Subject: "alice", SID: "sid-1", ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if v, _ := e.mustLoad(s, token).Decoded(decode); v != "v2" || decodes != 2 {
		t.Fatalf("after an update: %v (%d decodes)", v, decodes)
	}
	if _, err := s.DeleteBySID(context.Background(), "sid-1"); err != nil {
		t.Fatal(err)
	}
	if n := len(s.hot.entries); n != 0 {
		t.Fatalf("%d cached entries left after the session was deleted", n)
	}
	if got, err := s.Load(context.Background(), token); got != nil || err != nil {
		t.Fatalf("deleted session loaded: %+v %v", got, err)
	}
}
