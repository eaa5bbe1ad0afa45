package oidcauth

import (
	"encoding/binary"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/sessions"
)

func sampleSession() *Session {
	now := time.Unix(time.Now().Unix(), 0)
	return &Session{
		User:      User{Subject: "user-1", Email: "u@example.com", Name: "Ü Ser", PreferredUsername: "u", Issuer: "https://idp"},
		SID:       "sid-1",
		IDToken:   strings.Repeat("x", 300),
		CreatedAt: now,
		ExpiresAt: now.Add(time.Hour),

		AccessToken:       "at",
		AccessTokenExpiry: now.Add(5 * time.Minute),
		RefreshToken:      "rt",
	}
}

func TestSessionCodecRoundTrip(t *testing.T) {
	s := sampleSession()
	b, _ := s.MarshalBinary()
	var got Session
	if err := got.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&got, s) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, *s)
	}
	// A field added by a later version (unknown tag) is skipped.
	future := append(append([]byte{}, b...), 200, 3, 'a', 'b', 'c')
	if err := got.UnmarshalBinary(future); err != nil || got.Subject != "user-1" {
		t.Fatalf("unknown tag: %v", err)
	}
}

func TestSessionCodecRejectsMalformed(t *testing.T) {
	b, _ := sampleSession().MarshalBinary()
	for name, bad := range map[string][]byte{
		"empty":         nil,
		"wrong version": append([]byte{9}, b[1:]...),
		"truncated":     b[:len(b)-3],
		"huge length":   {1, 1, 0xff, 0xff, 0xff, 0xff, 0x0f},
		"bad time":      {1, byte(tagSubject), 1, 'x', byte(tagExpiresAt), 2, 0, 1},
		"no subject":    {1, byte(tagEmail), 1, 'x'},
	} {
		var s Session
		if err := s.UnmarshalBinary(bad); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestGorillaStoreAdapter(t *testing.T) {
	gs := sessions.NewCookieStore([]byte("gorilla-hash-key-0123456789abcdef"), []byte("gorilla-enc-key-0123456789abcdef"))
	h := newHarness(t, harnessOption{opts: []Option{WithSessionStore(GorillaStore(gs, "app-session"))}})
	h.mustBeAnonymous()
	resp := h.login("alice")
	if resp.StatusCode != http.StatusFound || setCookieFor(resp, "app-session") == nil {
		t.Fatalf("login with a gorilla store: %d", resp.StatusCode)
	}
	h.mustBe("user-alice")
	h.get("/logout")
	h.mustBeAnonymous()
}

func TestUvarintMatchesBinaryUvarint(t *testing.T) {
	inputs := [][]byte{nil, {0}, {1}, {0x7f}, {0x80}, {0x80, 1}, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1},
		{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2}, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1}}
	for i := range 2000 {
		b := make([]byte, i%12)
		for j := range b {
			b[j] = byte((i*131 + j*197) ^ (j << 5))
		}
		inputs = append(inputs, b)
	}
	for _, b := range inputs {
		n1, k1 := binary.Uvarint(b)
		n2, k2 := uvarint(string(b))
		if n1 != n2 || k1 != k2 {
			t.Fatalf("%x: binary.Uvarint = %d,%d; uvarint = %d,%d", b, n1, k1, n2, k2)
		}
	}
}
