// Package seal encrypts and authenticates small values (cookies, stored
// sessions) with keys derived from the application's session secrets.
//
// Each secret yields, through HKDF-SHA256, an AES-256-GCM key for
// confidentiality and integrity and an HMAC-SHA256 key for values that are
// only signed (such as server-side session ids). The first secret seals;
// every secret opens, so a secret can rotate without logging users out.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
)

// version prefixes every sealed value so the format can change later.
const version = 1

// ErrInvalid is returned for any value that does not open: wrong key,
// truncated, tampered or not produced by this package. Callers must treat
// all such values the same way.
var ErrInvalid = errors.New("seal: invalid value")

type key struct {
	aead cipher.AEAD
	mac  []byte
}

// Sealer seals with its first secret and opens with any of them. It is safe
// for concurrent use.
type Sealer struct {
	keys []key
}

// New derives the keys for each non-empty secret; the first seals.
func New(secrets ...string) (*Sealer, error) {
	s := &Sealer{}
	for _, secret := range secrets {
		if secret == "" {
			continue
		}
		encKey, err := hkdf.Key(sha256.New, []byte(secret), nil, "oidcauth/v1 encryption", 32)
		if err != nil {
			return nil, err
		}
		macKey, err := hkdf.Key(sha256.New, []byte(secret), nil, "oidcauth/v1 signing", 32)
		if err != nil {
			return nil, err
		}
		block, err := aes.NewCipher(encKey)
		if err != nil {
			return nil, err
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		s.keys = append(s.keys, key{aead: aead, mac: macKey})
	}
	if len(s.keys) == 0 {
		return nil, errors.New("seal: no secret")
	}
	return s, nil
}

// Seal encrypts plaintext bound to context (e.g. the cookie's name, so a
// value cannot be moved to another cookie) and returns it base64url-encoded.
func (s *Sealer) Seal(plaintext []byte, context string) string {
	k := s.keys[0]
	ns := k.aead.NonceSize()
	raw := make([]byte, 1+ns, 1+ns+len(plaintext)+k.aead.Overhead())
	raw[0] = version
	if _, err := rand.Read(raw[1:]); err != nil {
		panic("seal: crypto/rand failed: " + err.Error()) // never happens on supported platforms
	}
	raw = k.aead.Seal(raw, raw[1:1+ns], plaintext, []byte(context))
	return base64.RawURLEncoding.EncodeToString(raw)
}

// Open reverses Seal with any of the secrets. Anything else returns
// ErrInvalid.
func (s *Sealer) Open(sealed, context string) ([]byte, error) {
	raw, err := base64.RawURLEncoding.DecodeString(sealed)
	if err != nil {
		return nil, ErrInvalid
	}
	for _, k := range s.keys {
		ns := k.aead.NonceSize()
		if len(raw) < 1+ns+k.aead.Overhead() || raw[0] != version {
			return nil, ErrInvalid
		}
		if pt, err := k.aead.Open(nil, raw[1:1+ns], raw[1+ns:], []byte(context)); err == nil {
			return pt, nil
		}
	}
	return nil, ErrInvalid
}

// Sign returns value with an HMAC tag appended: value + "." + tag. Use it for
// values that need integrity but not secrecy, such as random session ids.
func (s *Sealer) Sign(value, context string) string {
	return value + "." + base64.RawURLEncoding.EncodeToString(s.keys[0].tag(value, context))
}

// Verify checks a value made by Sign with any of the secrets and returns the
// value without its tag.
func (s *Sealer) Verify(signed, context string) (string, error) {
	i := len(signed) - base64.RawURLEncoding.EncodedLen(sha256.Size) - 1
	if i < 0 || signed[i] != '.' {
		return "", ErrInvalid
	}
	value := signed[:i]
	tag, err := base64.RawURLEncoding.DecodeString(signed[i+1:])
	if err != nil {
		return "", ErrInvalid
	}
	for _, k := range s.keys {
		if hmac.Equal(tag, k.tag(value, context)) {
			return value, nil
		}
	}
	return "", ErrInvalid
}

func (k key) tag(value, context string) []byte {
	m := hmac.New(sha256.New, k.mac)
	m.Write([]byte(context))
	m.Write([]byte{0})
	m.Write([]byte(value))
	return m.Sum(nil)
}
