package oidcauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// backchannelLogoutEvent is the member of a logout token's events claim
// that makes it one (OpenID Connect Back-Channel Logout 1.0, section 2.4).
const backchannelLogoutEvent = "http://schemas.openid.net/event/backchannel-logout"

// logoutTokenMaxAge bounds how old a logout token without exp may be.
const logoutTokenMaxAge = 10 * time.Minute

// SessionRevoker is implemented by session stores that can find and end
// sessions by the IdP's session id or by user (server-side stores, such as
// Redis). Back-channel logout uses it; for other stores Auth keeps a
// revocation list in memory instead.
type SessionRevoker interface {
	// DeleteBySID ends every session whose IdP session id is sid and
	// returns how many it ended.
	DeleteBySID(ctx context.Context, sid string) (int, error)
	// DeleteBySubject ends every session of the user sub.
	DeleteBySubject(ctx context.Context, sub string) (int, error)
}

// logoutToken is what a verified back-channel logout token says.
type logoutToken struct {
	Issuer, Subject, SID, JTI string
	IssuedAt, Expiry          time.Time
}

// backchannelLogout serves POST /backchannel-logout: the IdP tells us that
// an IdP session (sid) or all of a user's sessions (sub) have ended.
func (a *Auth) backchannelLogout(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "invalid_request", "error_description": "use POST"})
		return
	}
	bad := func(msg string, cause error) {
		a.event(r.Context(), Event{Kind: EventBackchannelLogout, Outcome: "invalid"})
		a.log.InfoContext(r.Context(), "oidcauth: back-channel logout refused", "reason", msg, "cause", fmt.Sprint(cause))
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "error_description": msg})
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		bad("malformed form body", err)
		return
	}
	raw := r.PostForm.Get("logout_token")
	if raw == "" {
		bad("logout_token is missing", nil)
		return
	}
	lt, err := a.verifyLogoutToken(r.Context(), raw)
	if err != nil {
		bad("logout_token is not valid", err)
		return
	}
	replayKey := lt.Issuer + "\x00" + lt.JTI
	if !a.logoutJTIs.add(replayKey, lt.Expiry, a.now()) {
		bad("logout_token was already used", errors.New("replayed jti"))
		return
	}
	n, err := a.endSessions(r.Context(), lt)
	if err != nil {
		a.logoutJTIs.remove(replayKey) // let the IdP retry
		a.event(r.Context(), Event{Kind: EventBackchannelLogout, Outcome: "error"})
		a.fail(w, r, storeError(err))
		return
	}
	a.event(r.Context(), Event{Kind: EventBackchannelLogout, Outcome: "success"})
	a.log.InfoContext(r.Context(), "oidcauth: back-channel logout", "sub", lt.Subject, "sid", lt.SID, "sessions_ended", n)
	w.WriteHeader(http.StatusOK)
}

// verifyLogoutToken validates a logout token as the spec says: like an ID
// token (signature with an advertised asymmetric algorithm, iss, aud), plus
// iat, exp when present, jti, the back-channel logout event, sid and/or sub,
// and no nonce (so an ID token cannot pass as one).
func (a *Auth) verifyLogoutToken(ctx context.Context, raw string) (*logoutToken, error) {
	idt, err := a.logoutVerifier.Verify(oidc.ClientContext(ctx, a.client), raw)
	if err != nil {
		return nil, err
	}
	var c struct {
		SID    string                     `json:"sid"`
		JTI    string                     `json:"jti"`
		AZP    string                     `json:"azp"`
		Events map[string]json.RawMessage `json:"events"`
		Nonce  json.RawMessage            `json:"nonce"`
	}
	if err := idt.Claims(&c); err != nil {
		return nil, err
	}
	now := a.now()
	lt := &logoutToken{Issuer: idt.Issuer, Subject: idt.Subject, SID: c.SID, JTI: c.JTI, IssuedAt: idt.IssuedAt, Expiry: idt.Expiry}
	event, hasEvent := c.Events[backchannelLogoutEvent]
	switch {
	case !hasEvent:
		return nil, errors.New("no back-channel logout event")
	case !isJSONObject(event):
		return nil, errors.New("the back-channel logout event is not a JSON object")
	case c.Nonce != nil:
		return nil, errors.New("a logout token must not contain a nonce")
	case c.JTI == "":
		return nil, errors.New("no jti")
	case lt.Subject == "" && lt.SID == "":
		return nil, errors.New("neither sub nor sid")
	case lt.IssuedAt.IsZero():
		return nil, errors.New("no iat")
	case lt.IssuedAt.After(now.Add(clockSkew)):
		return nil, errors.New("iat is in the future")
	case len(idt.Audience) > 1 && c.AZP != "" && c.AZP != a.cfg.ClientID:
		return nil, errors.New("azp is another client")
	}
	if lt.Expiry.IsZero() {
		if now.Sub(lt.IssuedAt) > logoutTokenMaxAge {
			return nil, errors.New("no exp, and iat is too old")
		}
		lt.Expiry = lt.IssuedAt.Add(logoutTokenMaxAge)
	} else if !now.Before(lt.Expiry) {
		return nil, errors.New("expired")
	}
	return lt, nil
}

func isJSONObject(raw json.RawMessage) bool {
	var m map[string]json.RawMessage
	return json.Unmarshal(raw, &m) == nil && m != nil
}

// endSessions ends what the logout token names: the sessions of its sid,
// or all of its sub's when it has no sid.
func (a *Auth) endSessions(ctx context.Context, lt *logoutToken) (int, error) {
	if rv, ok := a.store.(SessionRevoker); ok {
		if lt.SID != "" {
			return rv.DeleteBySID(ctx, lt.SID)
		}
		return rv.DeleteBySubject(ctx, lt.Subject)
	}
	if lt.SID != "" {
		a.revoked.revoke(&a.revoked.sids, lt.SID, a.now(), a.cfg.SessionMaxAge)
	} else {
		a.revoked.revoke(&a.revoked.subs, lt.Subject, a.now(), a.cfg.SessionMaxAge)
	}
	return -1, nil // unknown: cookie sessions are ended when they are next seen
}

// revocations remembers back-channel logouts for stores that cannot delete
// sessions (cookies): a session of a revoked sid, or of a revoked sub,
// created no later than the revocation, is anonymous. Entries live as long
// as the longest session.
type revocations struct {
	mu    sync.RWMutex
	count atomic.Int64 // lets the hot path skip the lock when empty
	sids  map[string]revocation
	subs  map[string]revocation
}

type revocation struct{ at, expires time.Time }

// maxRevocations bounds the memory of revocations.
const maxRevocations = 1_000_000

func (rv *revocations) revoke(m *map[string]revocation, key string, now time.Time, maxAge time.Duration) {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	if *m == nil {
		*m = make(map[string]revocation)
	}
	if len(rv.sids)+len(rv.subs) >= maxRevocations {
		for _, mm := range []map[string]revocation{rv.sids, rv.subs} {
			for k, e := range mm {
				if now.After(e.expires) {
					delete(mm, k)
				}
			}
		}
	}
	(*m)[key] = revocation{at: now, expires: now.Add(maxAge)}
	rv.count.Store(int64(len(rv.sids) + len(rv.subs)))
}

// has reports whether s was ended by a back-channel logout.
func (rv *revocations) has(s *Session) bool {
	if rv.count.Load() == 0 {
		return false
	}
	rv.mu.RLock()
	defer rv.mu.RUnlock()
	if e, ok := rv.sids[s.SID]; ok && s.SID != "" && !s.CreatedAt.After(e.at) {
		return true
	}
	e, ok := rv.subs[s.Subject]
	return ok && !s.CreatedAt.After(e.at)
}

// remove forgets key (used to let a failed operation be retried).
func (u *usedStates) remove(key string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	delete(u.seen, key)
}
