package oidcauth

import (
	"encoding/binary"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/securecookie"
	"github.com/gorilla/sessions"

	"github.com/oidcauth/oidcauth/internal/cookies"
	"github.com/oidcauth/oidcauth/internal/seal"
)

// User is the signed-in user, as the IdP described them at login.
type User struct {
	// Subject is the IdP's stable identifier for the user (the sub claim).
	Subject string `json:"sub"`
	// Email is the user's email address, if the IdP shared it.
	Email string `json:"email,omitempty"`
	// Name is the user's display name; when the IdP gives none, the email,
	// then the preferred username.
	Name string `json:"name,omitempty"`
	// PreferredUsername is the user's short name at the IdP.
	PreferredUsername string `json:"preferred_username,omitempty"`
	// Issuer is the IdP that authenticated the user (the iss claim).
	Issuer string `json:"iss,omitempty"`
}

// Session is what oidcauth keeps about one login. A SessionStore persists it.
type Session struct {
	User
	// SID is the IdP's session id (the ID token's sid claim), if any.
	SID string
	// IDToken is the raw ID token, sent back to the IdP as id_token_hint
	// at logout.
	IDToken string
	// CreatedAt is when the login completed.
	CreatedAt time.Time
	// ExpiresAt is the end of the session's absolute lifetime.
	ExpiresAt time.Time

	// AccessToken is the IdP's access token for calling APIs (use
	// Auth.Token, which refreshes it); for a bearer-token request, the
	// bearer token itself.
	AccessToken string
	// AccessTokenExpiry is when AccessToken expires; zero if unknown.
	AccessTokenExpiry time.Time
	// RefreshToken, when the IdP issued one (e.g. for offline_access), is
	// used by Auth.Token to get new access tokens.
	RefreshToken string

	// Bearer is true when the request was authenticated by an
	// Authorization: Bearer token rather than a stored session. Such a
	// Session is never stored.
	Bearer bool
}

// Expired reports whether s has passed its absolute lifetime at now.
func (s *Session) Expired(now time.Time) bool { return !now.Before(s.ExpiresAt) }

// SessionStore persists sessions between requests. The context for any I/O
// is the request's. Implementations must be safe for concurrent use.
type SessionStore interface {
	// Load returns the request's session, or nil when there is none or it
	// is invalid, tampered with or expired. An error means the store could
	// not answer (for example, its server is down); oidcauth then fails
	// closed with 503.
	Load(r *http.Request) (*Session, error)
	// Save starts s as a brand-new session for the request's client,
	// replacing whatever session it had.
	Save(w http.ResponseWriter, r *http.Request, s *Session) error
	// Delete ends the request's session, if any.
	Delete(w http.ResponseWriter, r *http.Request) error
}

// The session codec: a version byte, then tag, uvarint length, bytes for
// each non-empty field. Unknown tags are skipped, so fields can be added
// without invalidating existing sessions.
const codecVersion = 1

const (
	tagSubject byte = iota + 1
	tagEmail
	tagName
	tagPreferredUsername
	tagIssuer
	tagSID
	tagIDToken
	tagCreatedAt
	tagExpiresAt
	tagAccessToken
	tagAccessTokenExpiry
	tagRefreshToken
	tagCreatedAtMilli // CreatedAt to the millisecond, for back-channel revocations
)

var errBadSession = errors.New("oidcauth: malformed session")

// MarshalBinary encodes s compactly (no gob, no JSON).
func (s *Session) MarshalBinary() ([]byte, error) {
	b := make([]byte, 1, 80+len(s.Subject)+len(s.Email)+len(s.Name)+len(s.PreferredUsername)+len(s.Issuer)+len(s.SID)+
		len(s.IDToken)+len(s.AccessToken)+len(s.RefreshToken))
	b[0] = codecVersion
	b = appendField(b, tagSubject, s.Subject)
	b = appendField(b, tagEmail, s.Email)
	b = appendField(b, tagName, s.Name)
	b = appendField(b, tagPreferredUsername, s.PreferredUsername)
	b = appendField(b, tagIssuer, s.Issuer)
	b = appendField(b, tagSID, s.SID)
	b = appendField(b, tagIDToken, s.IDToken)
	if !s.CreatedAt.IsZero() {
		b = append(b, tagCreatedAtMilli, 8)
		b = binary.BigEndian.AppendUint64(b, uint64(s.CreatedAt.UnixMilli()))
	}
	b = appendTime(b, tagExpiresAt, s.ExpiresAt)
	b = appendField(b, tagAccessToken, s.AccessToken)
	b = appendTime(b, tagAccessTokenExpiry, s.AccessTokenExpiry)
	b = appendField(b, tagRefreshToken, s.RefreshToken)
	return b, nil
}

// UnmarshalBinary decodes what MarshalBinary encoded.
func (s *Session) UnmarshalBinary(b []byte) error {
	*s = Session{}
	if len(b) == 0 || b[0] != codecVersion {
		return errBadSession
	}
	// One copy of the whole encoding; the fields are slices of it (one
	// allocation instead of one per field).
	all := string(b[1:])
	for i := 0; i < len(all); {
		tag := all[i]
		n, k := uvarint(all[i+1:])
		if k <= 0 || n > uint64(len(all)-i-1-k) {
			return errBadSession
		}
		v := all[i+1+k : i+1+k+int(n)]
		i += 1 + k + int(n)
		switch tag {
		case tagSubject:
			s.Subject = v
		case tagEmail:
			s.Email = v
		case tagName:
			s.Name = v
		case tagPreferredUsername:
			s.PreferredUsername = v
		case tagIssuer:
			s.Issuer = v
		case tagSID:
			s.SID = v
		case tagIDToken:
			s.IDToken = v
		case tagAccessToken:
			s.AccessToken = v
		case tagRefreshToken:
			s.RefreshToken = v
		case tagCreatedAtMilli:
			if len(v) != 8 {
				return errBadSession
			}
			s.CreatedAt = time.UnixMilli(int64(bigEndian64(v)))
		case tagCreatedAt, tagExpiresAt, tagAccessTokenExpiry:
			if len(v) != 8 {
				return errBadSession
			}
			t := time.Unix(int64(bigEndian64(v)), 0)
			switch tag {
			case tagCreatedAt:
				s.CreatedAt = t
			case tagExpiresAt:
				s.ExpiresAt = t
			default:
				s.AccessTokenExpiry = t
			}
		}
	}
	if s.Subject == "" || s.ExpiresAt.IsZero() {
		return errBadSession
	}
	return nil
}

// uvarint is binary.Uvarint over a string.
func uvarint(s string) (uint64, int) {
	var x uint64
	for i := 0; i < len(s); i++ {
		if i == binary.MaxVarintLen64 {
			return 0, -(i + 1) // overflow
		}
		c := s[i]
		if c < 0x80 {
			if i == binary.MaxVarintLen64-1 && c > 1 {
				return 0, -(i + 1) // overflow
			}
			return x | uint64(c)<<(7*i), i + 1
		}
		x |= uint64(c&0x7f) << (7 * i)
	}
	return 0, 0
}

func bigEndian64(s string) uint64 {
	_ = s[7]
	return uint64(s[7]) | uint64(s[6])<<8 | uint64(s[5])<<16 | uint64(s[4])<<24 |
		uint64(s[3])<<32 | uint64(s[2])<<40 | uint64(s[1])<<48 | uint64(s[0])<<56
}

func appendField(b []byte, tag byte, v string) []byte {
	if v == "" {
		return b
	}
	b = append(b, tag)
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

func appendTime(b []byte, tag byte, t time.Time) []byte {
	if t.IsZero() {
		return b
	}
	b = append(b, tag, 8)
	return binary.BigEndian.AppendUint64(b, uint64(t.Unix()))
}

// cookieStore is the default SessionStore: the whole session, encrypted
// and authenticated with AES-256-GCM, in the client's cookie(s).
type cookieStore struct {
	sealer *seal.Sealer
	base   http.Cookie // name and attributes
	now    func() time.Time
	cache  verifiedCache
}

func newCookieStore(sealer *seal.Sealer, name string, secure bool, now func() time.Time) *cookieStore {
	return &cookieStore{
		sealer: sealer,
		base: http.Cookie{
			Name:     name,
			Path:     "/",
			HttpOnly: true,
			Secure:   secure,
			SameSite: http.SameSiteLaxMode,
		},
		now: now,
	}
}

func (c *cookieStore) cookieName() string { return c.base.Name }

func (c *cookieStore) Load(r *http.Request) (*Session, error) {
	v, ok := cookies.GetChunked(r, c.base.Name)
	if !ok {
		return nil, nil
	}
	now := c.now()
	if s := c.cache.get(v); s != nil {
		if s.Expired(now) {
			return nil, nil
		}
		return s, nil
	}
	b, err := c.sealer.Open(v, c.base.Name)
	if err != nil {
		return nil, nil // tampered, truncated or sealed with an unknown key
	}
	s := new(Session)
	if s.UnmarshalBinary(b) != nil || s.Expired(now) {
		return nil, nil
	}
	c.cache.put(v, s)
	return s, nil
}

// verifiedCache maps cookie values that have already been opened and
// decoded to their sessions, so that a returning client costs one map
// lookup instead of a decryption (mod_auth_openidc's biggest win). It
// changes nothing about what is accepted: a value is only ever added after
// it was verified, the key is the exact value, expiry is checked on every
// hit, and back-channel revocations are checked after Load. Sessions in it
// are shared and read-only.
type verifiedCache struct {
	mu sync.RWMutex
	m  map[string]*Session
}

// maxVerified bounds the cache (about 3 KB a session: some 30 MB at most).
const maxVerified = 10_000

func (c *verifiedCache) get(v string) *Session {
	c.mu.RLock()
	s := c.m[v]
	c.mu.RUnlock()
	return s
}

func (c *verifiedCache) put(v string, s *Session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[string]*Session)
	}
	if len(c.m) >= maxVerified {
		// Evict an arbitrary tenth; the next request of those clients
		// just verifies again.
		n := maxVerified / 10
		for k := range c.m {
			delete(c.m, k)
			if n--; n == 0 {
				break
			}
		}
	}
	c.m[strings.Clone(v)] = s
}

func (c *cookieStore) Save(w http.ResponseWriter, r *http.Request, s *Session) error {
	b, err := s.MarshalBinary()
	if err != nil {
		return err
	}
	ck := c.base
	ck.MaxAge = int(s.ExpiresAt.Sub(c.now()).Seconds())
	if ck.MaxAge <= 0 {
		return errors.New("oidcauth: session already expired")
	}
	if !cookies.SetChunked(w, r, ck, c.sealer.Seal(b, c.base.Name)) {
		return errors.New("oidcauth: session too large for cookies; use a server-side store")
	}
	return nil
}

func (c *cookieStore) Delete(w http.ResponseWriter, r *http.Request) error {
	cookies.DeleteChunked(w, r, c.base)
	return nil
}

// gorillaValueKey is the key of the encoded Session in a gorilla session's
// Values.
const gorillaValueKey = "oidcauth"

// GorillaStore adapts any gorilla/sessions Store (filesystem, a database,
// ...) into a SessionStore. The Session is kept, encoded with
// Session.MarshalBinary, as one []byte value under the key "oidcauth" of the
// gorilla session called name; its confidentiality is the store's (give a
// cookie-based gorilla store an encryption key). Cookie decoding errors mean
// no session; any other error from the store is a store failure.
func GorillaStore(store sessions.Store, name string) SessionStore {
	return &gorillaStore{store: store, name: name, now: time.Now}
}

type gorillaStore struct {
	store sessions.Store
	name  string
	now   func() time.Time
}

func (g *gorillaStore) Load(r *http.Request) (*Session, error) {
	gs, err := g.store.Get(r, g.name)
	if err != nil {
		var scErr securecookie.Error
		if errors.As(err, &scErr) && scErr.IsDecode() {
			return nil, nil
		}
		return nil, err
	}
	b, ok := gs.Values[gorillaValueKey].([]byte)
	if !ok {
		return nil, nil
	}
	s := new(Session)
	if s.UnmarshalBinary(b) != nil || s.Expired(g.now()) {
		return nil, nil
	}
	return s, nil
}

func (g *gorillaStore) Save(w http.ResponseWriter, r *http.Request, s *Session) error {
	b, err := s.MarshalBinary()
	if err != nil {
		return err
	}
	gs, err := g.store.New(r, g.name)
	if gs == nil {
		return err
	}
	// A brand-new session: a new id for server-side stores, and nothing
	// carried over from before.
	gs.ID = ""
	gs.IsNew = true
	gs.Values = map[any]any{gorillaValueKey: b}
	gs.Options = withMaxAge(gs.Options, int(s.ExpiresAt.Sub(g.now()).Seconds()))
	return gs.Save(r, w)
}

func (g *gorillaStore) Delete(w http.ResponseWriter, r *http.Request) error {
	gs, err := g.store.Get(r, g.name)
	if gs == nil {
		return err
	}
	gs.Values = map[any]any{}
	gs.Options = withMaxAge(gs.Options, -1)
	return gs.Save(r, w)
}

// withMaxAge returns a copy of o (never shared with the store's defaults)
// with MaxAge set.
func withMaxAge(o *sessions.Options, maxAge int) *sessions.Options {
	opts := sessions.Options{Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode}
	if o != nil {
		opts = *o
	}
	opts.MaxAge = maxAge
	return &opts
}
