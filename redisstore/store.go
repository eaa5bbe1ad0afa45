// Package redisstore keeps web sessions in Redis: single node, Sentinel or
// Cluster, through go-redis's UniversalClient.
//
// The client's cookie carries only a random 256-bit session id with an
// HMAC-SHA256 tag, so a forged or tampered cookie is refused without asking
// Redis. The value in Redis is encrypted and authenticated with AES-256-GCM
// and bound to its key, so a dump of the database reveals no session
// content (ID tokens, names, e-mail addresses). Keys are named after a hash
// of the id, so a dump does not reveal the ids either.
//
// Sessions have an absolute lifetime and an optional idle timeout. The key's
// TTL is the time left: the smaller of the remaining absolute lifetime and
// the idle timeout. Redis's TTL is the one clock of inactivity: loading a
// session reads the value and its TTL in one round trip, and only when the
// TTL has run down by a minute (or a tenth of the idle timeout, when that is
// shorter) does it write, to refresh it. A normal request therefore costs
// exactly one round trip and no write.
//
// Two secondary indexes, by the user's subject and by the identity
// provider's session id (sid), let DeleteBySubject and DeleteBySID end
// sessions at once, as back-channel logout needs. Each index is a sorted
// set of session keys scored by their absolute expiry; it expires with its
// last member, and members past their expiry are pruned whenever a session
// is added to it.
//
// Store is used directly (Create, Load, Delete) by oidcauth, and also
// implements gorilla/sessions' Store for any other application.
//
// Every key of a session is addressed on its own (no multi-key commands or
// transactions), so the store works unchanged on Redis Cluster. It needs
// Redis 6.2 or later.
package redisstore

import (
	"context"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/sessions"
	"github.com/redis/go-redis/v9"

	"github.com/oidcauth/oidcauth/internal/seal"
)

// Defaults for the fields of Options left empty.
const (
	DefaultKeyPrefix = "oidcauth:"
	DefaultMaxAge    = 24 * time.Hour
)

// MinSecretLength is the shortest secret New accepts, in bytes.
const MinSecretLength = 32

// maxTouchInterval is how often, at most, loading a session refreshes its
// idle TTL.
const maxTouchInterval = time.Minute

// Options configures a Store.
type Options struct {
	// Secrets are the keys' sources, each at least MinSecretLength random
	// bytes. The first signs ids and seals values; all of them verify and
	// open, so a secret can rotate without ending sessions. Empty strings
	// are ignored. Required.
	Secrets []string
	// KeyPrefix starts every Redis key of the store; default
	// DefaultKeyPrefix. Applications sharing a Redis database need
	// different prefixes. Ids are also bound to the prefix.
	KeyPrefix string
	// MaxAge is the absolute lifetime of a session: the default for an
	// Entry without ExpiresAt, and the limit for one with it. Default
	// DefaultMaxAge.
	MaxAge time.Duration
	// IdleTimeout, when positive, ends a session not used for that long.
	IdleTimeout time.Duration
	// Now is the clock; default time.Now. Redis's TTLs count real time
	// whatever it says.
	Now func() time.Time
	// Cookie holds the cookie attributes for the gorilla/sessions Store
	// methods; nil means Path "/", HttpOnly, SameSite Lax and a MaxAge of
	// MaxAge. Create, Load and Delete do not use it.
	Cookie *sessions.Options
}

// Entry is one session as the store keeps it.
type Entry struct {
	// Data is the application's session value, opaque to the store.
	Data []byte
	// Subject is the user's identifier (the sub claim); when set, the
	// session can be ended with DeleteBySubject.
	Subject string
	// SID is the identity provider's session id (the sid claim); when
	// set, the session can be ended with DeleteBySID.
	SID string
	// ExpiresAt is the end of the absolute lifetime (kept to the
	// millisecond). Zero means Options.MaxAge from now.
	ExpiresAt time.Time

	memo *entryMemo // set on loaded Entries: see Decoded
}

type entryMemo struct {
	once sync.Once
	v    any
	err  error
}

// Decoded returns decode(e.Data). For an Entry returned by Load it is
// computed once and shared, like the Entry itself, for as long as the
// stored value is unchanged: an application decoding its session from
// Data pays for it once per change, not once per request, and the decoded
// value is dropped with the Entry.
func (e *Entry) Decoded(decode func([]byte) (any, error)) (any, error) {
	if e.memo == nil {
		return decode(e.Data)
	}
	e.memo.once.Do(func() { e.memo.v, e.memo.err = decode(e.Data) })
	return e.memo.v, e.memo.err
}

// ErrSessionEnded is returned by Update and by Save (the gorilla/sessions
// method) for a session that no longer exists in Redis: it expired or was
// deleted, for example by a logout in another tab. It is not re-created.
var ErrSessionEnded = errors.New("redisstore: the session has ended")

// Store keeps sessions in Redis. It is safe for concurrent use.
type Store struct {
	client    redis.UniversalClient
	sealer    *seal.Sealer
	indexKeys [][]byte // HMAC keys naming index sets, one per secret; the first is current
	prefix    string
	signCtx   string
	maxAge    time.Duration
	idle      time.Duration
	touch     time.Duration // refresh the idle TTL once it has run down this much
	now       func() time.Time
	cookie    sessions.Options

	touching sync.Map // session keys whose TTL is being refreshed
	hot      loadCache
}

// New returns a Store keeping its sessions through client, which it does
// not close. It checks the options but does not contact Redis.
func New(client redis.UniversalClient, opts Options) (*Store, error) {
	if client == nil {
		return nil, errors.New("redisstore: no Redis client")
	}
	var secrets []string
	for i, s := range opts.Secrets {
		if s == "" {
			continue
		}
		if len(s) < MinSecretLength {
			return nil, fmt.Errorf("redisstore: secret %d is %d bytes long; at least %d are needed", i+1, len(s), MinSecretLength)
		}
		secrets = append(secrets, s)
	}
	if len(secrets) == 0 {
		return nil, errors.New("redisstore: no secret")
	}
	sealer, err := seal.New(secrets...)
	if err != nil {
		return nil, err
	}
	if opts.MaxAge < 0 || opts.IdleTimeout < 0 {
		return nil, errors.New("redisstore: MaxAge and IdleTimeout must not be negative")
	}
	s := &Store{
		client: client,
		sealer: sealer,
		prefix: opts.KeyPrefix,
		maxAge: opts.MaxAge,
		idle:   opts.IdleTimeout,
		now:    opts.Now,
	}
	if s.prefix == "" {
		s.prefix = DefaultKeyPrefix
	}
	s.signCtx = "redisstore session id " + s.prefix
	if s.maxAge == 0 {
		s.maxAge = DefaultMaxAge
	}
	s.touch = min(maxTouchInterval, s.idle/10)
	if s.now == nil {
		s.now = time.Now
	}
	for _, secret := range secrets {
		k, err := hkdf.Key(sha256.New, []byte(secret), nil, "oidcauth/v1 redis index", 32)
		if err != nil {
			return nil, err
		}
		s.indexKeys = append(s.indexKeys, k)
	}
	if opts.Cookie != nil {
		s.cookie = *opts.Cookie
	} else {
		s.cookie = sessions.Options{Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode, MaxAge: int(s.maxAge / time.Second)}
	}
	return s, nil
}

// idLen is the length of a session id: 32 random bytes, base64url.
var idLen = base64.RawURLEncoding.EncodedLen(32)

func newID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails on supported platforms
	return base64.RawURLEncoding.EncodeToString(b)
}

// sessionKey is the Redis key of the session whose id is id: a hash of the
// id, so that the keys of a dump are useless as cookies.
func (s *Store) sessionKey(id string) string {
	return s.prefix + "s:" + hashID(id)
}

func hashID(id string) string {
	h := sha256.Sum256([]byte(id))
	return base64.RawURLEncoding.EncodeToString(h[:])
}

// indexNames returns the names of the index sets of kind ("sub" or "sid")
// for value, under each secret; the first is the current one. Names are
// keyed hashes, so they do not reveal subjects or IdP session ids.
func (s *Store) indexNames(kind, value string) []string {
	names := make([]string, len(s.indexKeys))
	for i, k := range s.indexKeys {
		m := hmac.New(sha256.New, k)
		m.Write([]byte(kind))
		m.Write([]byte{0})
		m.Write([]byte(value))
		names[i] = s.prefix + kind + ":" + base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:16])
	}
	return names
}

// verify returns the session id a token carries, or "" when the token is
// not one this store signed.
func (s *Store) verify(token string) string {
	id, err := s.sealer.Verify(token, s.signCtx)
	if err != nil || len(id) != idLen {
		return ""
	}
	return id
}

// The entry codec, inside the seal: version, expiry in Unix milliseconds,
// subject and sid (uvarint length, bytes), then the data.
const entryVersion = 1

func encodeEntry(e *Entry) []byte {
	b := make([]byte, 0, 1+8+2*binary.MaxVarintLen16+len(e.Subject)+len(e.SID)+len(e.Data))
	b = append(b, entryVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(e.ExpiresAt.UnixMilli()))
	b = binary.AppendUvarint(b, uint64(len(e.Subject)))
	b = append(b, e.Subject...)
	b = binary.AppendUvarint(b, uint64(len(e.SID)))
	b = append(b, e.SID...)
	return append(b, e.Data...)
}

func decodeEntry(b []byte) (*Entry, bool) {
	if len(b) < 9 || b[0] != entryVersion {
		return nil, false
	}
	e := &Entry{ExpiresAt: time.UnixMilli(int64(binary.BigEndian.Uint64(b[1:9])))}
	b = b[9:]
	for _, f := range []*string{&e.Subject, &e.SID} {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return nil, false
		}
		*f = string(b[k : k+int(n)])
		b = b[k+int(n):]
	}
	e.Data = b
	return e, true
}

// indexAdd adds a session (ARGV[1]) expiring at ARGV[2] (Unix ms) to the
// index set KEYS[1], drops the members that expired by ARGV[3] (now, Unix
// ms), and makes the set expire with its last member. One key, so it runs
// on Redis Cluster.
const indexAdd = `
local now = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIRE', KEYS[1], math.max(1, math.floor(tonumber(last[2]) - now)))
return 1`

// Create stores e as a new session and returns the token for the client's
// cookie: a new random 256-bit id with its HMAC tag. The key's TTL is the
// remaining absolute lifetime, or the idle timeout when that is shorter.
func (s *Store) Create(ctx context.Context, e Entry) (string, error) {
	id := newID()
	if err := s.put(ctx, id, &e, false); err != nil {
		return "", err
	}
	return s.sealer.Sign(id, s.signCtx), nil
}

// put writes the session id: with SET NX and its indexes when it is new,
// with SET XX (never re-creating a deleted session) otherwise.
func (s *Store) put(ctx context.Context, id string, e *Entry, update bool) error {
	now := s.now()
	if limit := now.Add(s.maxAge); e.ExpiresAt.IsZero() || e.ExpiresAt.After(limit) {
		e.ExpiresAt = limit
	}
	e.ExpiresAt = e.ExpiresAt.Truncate(time.Millisecond)
	ttl := e.ExpiresAt.Sub(now)
	if s.idle > 0 {
		ttl = min(ttl, s.idle)
	}
	if ttl < time.Millisecond {
		return errors.New("redisstore: the session has already expired")
	}
	key := s.sessionKey(id)
	value := s.sealer.Seal(encodeEntry(e), key)
	member := hashID(id)
	expMs, nowMs := e.ExpiresAt.UnixMilli(), now.UnixMilli()
	pipe := s.client.Pipeline()
	var set *redis.BoolCmd
	if update {
		set = pipe.SetXX(ctx, key, value, ttl)
	} else {
		set = pipe.SetNX(ctx, key, value, ttl)
	}
	if e.Subject != "" {
		pipe.Eval(ctx, indexAdd, []string{s.indexNames("sub", e.Subject)[0]}, member, expMs, nowMs)
	}
	if e.SID != "" {
		pipe.Eval(ctx, indexAdd, []string{s.indexNames("sid", e.SID)[0]}, member, expMs, nowMs)
	}
	// On an error a new session's token is never handed out: whatever was
	// written is unreachable and expires by itself. An index entry for a
	// session that has ended is harmless: it is pruned at its expiry.
	cmds, _ := pipe.Exec(ctx)
	for _, c := range cmds {
		if err := c.Err(); err != nil && !errors.Is(err, redis.Nil) { // Nil: SET NX/XX did not set
			return fmt.Errorf("redisstore: save: %w", err)
		}
	}
	switch {
	case set.Val():
		return nil
	case update:
		return ErrSessionEnded
	}
	return errors.New("redisstore: create: session id collision")
}

// Update replaces the entry of the session that token names, keeping its
// id, so that requests in flight with the same cookie see the new entry
// (for example, refreshed tokens). Its TTL starts again as on Create. A
// session that has ended is not re-created: Update returns ErrSessionEnded,
// as it does for a token this store did not sign.
func (s *Store) Update(ctx context.Context, token string, e Entry) error {
	id := s.verify(token)
	if id == "" {
		return ErrSessionEnded
	}
	return s.put(ctx, id, &e, true)
}

// Lock tries to take the lock called name for at most ttl, for work that
// only one instance of an application may do at a time (such as spending
// a refresh token). ok is false when another holder has it. unlock
// releases the lock if it is still this holder's.
func (s *Store) Lock(ctx context.Context, name string, ttl time.Duration) (unlock func(), ok bool, err error) {
	key := s.prefix + "lock:" + name
	holder := newID()
	ok, err = s.client.SetNX(ctx, key, holder, ttl).Result()
	if err != nil {
		return nil, false, fmt.Errorf("redisstore: lock: %w", err)
	}
	if !ok {
		return nil, false, nil
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), DefaultReadTimeout)
		defer cancel()
		s.client.Eval(ctx, unlockScript, []string{key}, holder)
	}, true, nil
}

// unlockScript deletes KEYS[1] if it still holds ARGV[1].
const unlockScript = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`

// Load returns the session that token names. It returns nil, nil when the
// token is not one this store signed (without contacting Redis), and when
// the session does not exist, has expired or does not open. An error means
// Redis could not answer; the caller must then fail closed.
//
// Load makes one round trip to Redis; with an idle timeout, a second one
// (a TTL refresh) at most once a minute per session.
//
// The Entry returned may be shared with other loads of the same session:
// do not modify it.
func (s *Store) Load(ctx context.Context, token string) (*Entry, error) {
	key, ok := s.hot.key(token)
	if !ok {
		id := s.verify(token)
		if id == "" {
			return nil, nil
		}
		key = s.sessionKey(id)
		s.hot.putKey(token, key)
	}
	return s.loadKey(ctx, key)
}

func (s *Store) load(ctx context.Context, id string) (*Entry, error) {
	return s.loadKey(ctx, s.sessionKey(id))
}

func (s *Store) loadKey(ctx context.Context, key string) (*Entry, error) {
	var (
		value string
		pttl  time.Duration
		err   error
	)
	if s.idle > 0 {
		var get *redis.StringCmd
		var ttl *redis.DurationCmd
		_, err = s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			get = p.Get(ctx, key)
			ttl = p.PTTL(ctx, key)
			return nil
		})
		value, pttl = get.Val(), ttl.Val()
	} else {
		value, err = s.client.Get(ctx, key).Result()
	}
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("redisstore: load: %w", err)
	}
	e := s.hot.entry(key, value)
	if e == nil {
		plain, err := s.sealer.Open(value, key)
		if err != nil {
			return nil, nil // sealed with an unknown secret, or not ours
		}
		var ok bool
		if e, ok = decodeEntry(plain); !ok {
			return nil, nil
		}
		e.memo = new(entryMemo)
		s.hot.putEntry(key, value, e)
	}
	now := s.now()
	if !now.Before(e.ExpiresAt) {
		return nil, nil
	}
	if s.idle > 0 {
		s.refresh(ctx, key, pttl, min(s.idle, e.ExpiresAt.Sub(now)))
	}
	return e, nil
}

// refresh sets the idle TTL of key back to want when it has run down by at
// least the touch interval. Concurrent loads of one session refresh it
// once. A failure is ignored: the session is valid now, and the next load
// tries again.
func (s *Store) refresh(ctx context.Context, key string, pttl, want time.Duration) {
	if want-pttl < s.touch || want < time.Millisecond {
		return
	}
	if _, busy := s.touching.LoadOrStore(key, struct{}{}); busy {
		return
	}
	defer s.touching.Delete(key)
	s.client.PExpire(ctx, key, want) // PEXPIRE never re-creates a deleted key
}

// Delete ends the session that token names, if any, and removes it from
// its indexes. An invalid token is a no-op without contacting Redis.
func (s *Store) Delete(ctx context.Context, token string) error {
	id := s.verify(token)
	if id == "" {
		return nil
	}
	return s.deleteID(ctx, id)
}

func (s *Store) deleteID(ctx context.Context, id string) error {
	key := s.sessionKey(id)
	s.hot.forget(key)
	value, err := s.client.GetDel(ctx, key).Result()
	if errors.Is(err, redis.Nil) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("redisstore: delete: %w", err)
	}
	plain, err := s.sealer.Open(value, key)
	if err != nil {
		return nil
	}
	e, ok := decodeEntry(plain)
	if !ok || (e.Subject == "" && e.SID == "") {
		return nil
	}
	member := hashID(id)
	pipe := s.client.Pipeline()
	for kind, v := range map[string]string{"sub": e.Subject, "sid": e.SID} {
		if v != "" {
			for _, name := range s.indexNames(kind, v) {
				pipe.ZRem(ctx, name, member)
			}
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("redisstore: delete: %w", err)
	}
	return nil
}

// DeleteBySID ends every session whose Entry.SID is sid (the identity
// provider's session id, as a back-channel logout token names it) and
// returns how many existed.
func (s *Store) DeleteBySID(ctx context.Context, sid string) (int, error) {
	if sid == "" {
		return 0, errors.New("redisstore: empty sid")
	}
	return s.deleteByIndex(ctx, "sid", sid)
}

// DeleteBySubject ends every session whose Entry.Subject is sub (all the
// user's sessions) and returns how many existed.
func (s *Store) DeleteBySubject(ctx context.Context, sub string) (int, error) {
	if sub == "" {
		return 0, errors.New("redisstore: empty subject")
	}
	return s.deleteByIndex(ctx, "sub", sub)
}

func (s *Store) deleteByIndex(ctx context.Context, kind, value string) (int, error) {
	names := s.indexNames(kind, value)
	ranges := make([]*redis.StringSliceCmd, len(names))
	pipe := s.client.Pipeline()
	for i, name := range names {
		ranges[i] = pipe.ZRange(ctx, name, 0, -1)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, fmt.Errorf("redisstore: delete by %s: %w", kind, err)
	}
	var dels []*redis.IntCmd
	for i, r := range ranges {
		members := r.Val()
		if len(members) == 0 {
			continue
		}
		for _, m := range members {
			key := s.prefix + "s:" + m
			s.hot.forget(key)
			dels = append(dels, pipe.Del(ctx, key)) // one key each: Cluster slots differ
		}
		// Remove exactly these members: a session added meanwhile stays indexed.
		args := make([]any, len(members))
		for j, m := range members {
			args[j] = m
		}
		pipe.ZRem(ctx, names[i], args...)
	}
	if len(dels) == 0 {
		return 0, nil
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, fmt.Errorf("redisstore: delete by %s: %w", kind, err)
	}
	n := 0
	for _, d := range dels {
		n += int(d.Val())
	}
	return n, nil
}

// loadCache spares a returning session the work that gives the same
// result every time: verifying its token's signature and hashing the id
// into the Redis key, and opening and decoding a stored value that has not
// changed since the last load. It never spares the Redis read itself, so a
// deleted, expired or rewritten session is seen at once: an entry is only
// reused when Redis returned exactly the sealed value it was opened from.
type loadCache struct {
	mu      sync.RWMutex
	keys    map[string]string // verified token → Redis key
	entries map[string]cachedEntry
}

type cachedEntry struct {
	value string // the sealed value as read from Redis
	e     *Entry
}

// maxHot bounds each map of loadCache: with a typical session of 2-3 KB
// (sealed value, entry and decoded session: about 7 KB) some 30 MB at most.
const maxHot = 4096

func (c *loadCache) key(token string) (string, bool) {
	c.mu.RLock()
	k, ok := c.keys[token]
	c.mu.RUnlock()
	return k, ok
}

func (c *loadCache) putKey(token, key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.keys == nil {
		c.keys = make(map[string]string)
	}
	evictSome(c.keys)
	c.keys[strings.Clone(token)] = key
}

func (c *loadCache) entry(key, value string) *Entry {
	c.mu.RLock()
	ce, ok := c.entries[key]
	c.mu.RUnlock()
	if ok && ce.value == value {
		return ce.e
	}
	return nil
}

// forget drops what is cached for key (a session being deleted), so its
// tokens do not linger in memory.
func (c *loadCache) forget(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.entries, key)
}

func (c *loadCache) putEntry(key, value string, e *Entry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = make(map[string]cachedEntry)
	}
	evictSome(c.entries)
	c.entries[key] = cachedEntry{value: value, e: e}
}

// evictSome drops an arbitrary tenth of a full map.
func evictSome[V any](m map[string]V) {
	if len(m) < maxHot {
		return
	}
	n := maxHot / 10
	for k := range m {
		delete(m, k)
		if n--; n == 0 {
			return
		}
	}
}
