package oidcauth

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/oidcauth/oidcauth/internal/cookies"
	"github.com/oidcauth/oidcauth/redisstore"
)

// checkRedisURL validates REDIS_URL's form without connecting. Its message
// never contains the password.
func checkRedisURL(raw string) error {
	return redisstore.CheckURL(raw)
}

// newRedisSessionStore returns the Redis-backed SessionStore for cfg (whose
// RedisURL is set and valid). It does not connect: Redis being down at
// start-up only makes requests fail with 503 until it is up.
func newRedisSessionStore(cfg Config, secure bool, now func() time.Time) (SessionStore, error) {
	client, err := redisstore.NewClient(cfg.RedisURL)
	if err != nil {
		return nil, &ConfigError{"REDIS_URL", err.Error()}
	}
	store, err := redisstore.New(client, redisstore.Options{
		Secrets:     []string{cfg.SessionSecret, cfg.SessionSecretPrevious},
		MaxAge:      cfg.SessionMaxAge,
		IdleTimeout: cfg.SessionIdleTimeout,
		Now:         now,
	})
	if err != nil {
		client.Close()
		return nil, err
	}
	return &redisSessionStore{
		store:  store,
		client: client,
		base: http.Cookie{
			Name:     cfg.SessionCookieName,
			Path:     "/",
			HttpOnly: true,
			Secure:   secure,
			SameSite: http.SameSiteLaxMode,
		},
		now: now,
	}, nil
}

// redisSessionStore is the SessionStore for REDIS_URL: the Session, encoded
// with MarshalBinary, in a redisstore.Store; the cookie carries the signed
// session id only.
type redisSessionStore struct {
	store  *redisstore.Store
	client redis.UniversalClient
	base   http.Cookie
	now    func() time.Time
}

// The Redis store ends sessions by sid or subject for back-channel logout,
// rewrites refreshed sessions in place, and keeps one refresh per session
// across instances. (The interfaces are declared with the code using them.)
var (
	_ SessionRevoker = (*redisSessionStore)(nil)
	_ SessionUpdater = (*redisSessionStore)(nil)
	_ RefreshLocker  = (*redisSessionStore)(nil)
)

func (rs *redisSessionStore) cookieName() string { return rs.base.Name }

func (rs *redisSessionStore) Load(r *http.Request) (*Session, error) {
	token, ok := cookies.Get(r, rs.base.Name)
	if !ok {
		return nil, nil
	}
	e, err := rs.store.Load(r.Context(), token)
	if e == nil || err != nil {
		return nil, err
	}
	// The store hands back the same Entry while the stored value is
	// unchanged: it is decoded once.
	v, err := e.Decoded(func(b []byte) (any, error) {
		s := new(Session)
		return s, s.UnmarshalBinary(b)
	})
	if err != nil {
		return nil, nil
	}
	s := v.(*Session)
	if s.Expired(rs.now()) {
		return nil, nil
	}
	return s, nil
}

// Save starts s under a new id and ends the session the request carried,
// if any, so a login never inherits an earlier session.
func (rs *redisSessionStore) Save(w http.ResponseWriter, r *http.Request, s *Session) error {
	b, err := s.MarshalBinary()
	if err != nil {
		return err
	}
	maxAge := int(s.ExpiresAt.Sub(rs.now()) / time.Second)
	if maxAge <= 0 {
		return errors.New("oidcauth: session already expired")
	}
	if old, ok := cookies.Get(r, rs.base.Name); ok {
		if err := rs.store.Delete(r.Context(), old); err != nil {
			return err
		}
	}
	token, err := rs.store.Create(r.Context(), redisstore.Entry{
		Data: b, Subject: s.Subject, SID: s.SID, ExpiresAt: s.ExpiresAt,
	})
	if err != nil {
		return err
	}
	ck := rs.base
	ck.Value = token
	ck.MaxAge = maxAge
	http.SetCookie(w, &ck)
	rs.clearChunks(w, r)
	return nil
}

// Update rewrites the request's session in place (same id, same cookie),
// for refreshed tokens. A request without a valid session cookie gets a
// new session, as with Save.
func (rs *redisSessionStore) Update(w http.ResponseWriter, r *http.Request, s *Session) error {
	token, ok := cookies.Get(r, rs.base.Name)
	if !ok {
		return rs.Save(w, r, s)
	}
	b, err := s.MarshalBinary()
	if err != nil {
		return err
	}
	err = rs.store.Update(r.Context(), token, redisstore.Entry{
		Data: b, Subject: s.Subject, SID: s.SID, ExpiresAt: s.ExpiresAt,
	})
	if errors.Is(err, redisstore.ErrSessionEnded) {
		return ErrSessionEnded // logged out while the refresh ran
	}
	return err
}

// LockRefresh takes the cross-instance lock for one refresh token.
func (rs *redisSessionStore) LockRefresh(ctx context.Context, key string, ttl time.Duration) (func(), bool, error) {
	return rs.store.Lock(ctx, "refresh:"+key, ttl)
}

// Delete ends the request's session in Redis and expires its cookie. If
// Redis cannot be reached the cookie is still expired, and the error
// reports that the session itself lives on until its TTL.
func (rs *redisSessionStore) Delete(w http.ResponseWriter, r *http.Request) error {
	var err error
	if token, ok := cookies.Get(r, rs.base.Name); ok {
		err = rs.store.Delete(r.Context(), token)
	}
	cookies.Delete(w, rs.base)
	rs.clearChunks(w, r)
	return err
}

// clearChunks expires the chunk cookies (name.1, name.2, ...) a cookie
// session may have left when the app moved to Redis: they would otherwise
// ride along on every request.
func (rs *redisSessionStore) clearChunks(w http.ResponseWriter, r *http.Request) {
	for i := 1; ; i++ {
		name := cookies.ChunkName(rs.base.Name, i)
		if _, ok := cookies.Get(r, name); !ok {
			return
		}
		ck := rs.base
		ck.Name = name
		cookies.Delete(w, ck)
	}
}

func (rs *redisSessionStore) DeleteBySID(ctx context.Context, sid string) (int, error) {
	return rs.store.DeleteBySID(ctx, sid)
}

func (rs *redisSessionStore) DeleteBySubject(ctx context.Context, sub string) (int, error) {
	return rs.store.DeleteBySubject(ctx, sub)
}
