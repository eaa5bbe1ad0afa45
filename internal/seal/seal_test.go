package seal

import (
	"strings"
	"testing"
)

const (
	secretA = "0123456789abcdefghijklmnopqrstuvwxyz"
	secretB = "zyxwvutsrqponmlkjihgfedcba9876543210"
)

func TestSealOpenRoundTripAndContextBinding(t *testing.T) {
	s, _ := New(secretA)
	v := s.Seal([]byte("hello"), "cookie-a")
	if got, err := s.Open(v, "cookie-a"); err != nil || string(got) != "hello" {
		t.Fatalf("round trip: %q %v", got, err)
	}
	if _, err := s.Open(v, "cookie-b"); err == nil {
		t.Error("a value moved to another context opened")
	}
	if v == s.Seal([]byte("hello"), "cookie-a") {
		t.Error("two seals of the same value are equal: nonce reused")
	}
}

func TestOpenRefusesTamperedAndForeign(t *testing.T) {
	s, _ := New(secretA)
	other, _ := New(secretB)
	v := s.Seal([]byte("payload"), "c")
	for i := range v {
		b := []byte(v)
		b[i] ^= 1
		if _, err := s.Open(string(b), "c"); err == nil {
			t.Fatalf("flipping byte %d was accepted", i)
		}
	}
	for _, bad := range []string{"", "x", v[:len(v)-1], v + "A", other.Seal([]byte("payload"), "c")} {
		if _, err := s.Open(bad, "c"); err != ErrInvalid {
			t.Errorf("Open(%q) = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestRotation(t *testing.T) {
	old, _ := New(secretA)
	rotated, _ := New(secretB, secretA)
	v := old.Seal([]byte("x"), "c")
	if _, err := rotated.Open(v, "c"); err != nil {
		t.Fatal("a value sealed with the previous secret no longer opens")
	}
	if _, err := old.Open(rotated.Seal([]byte("x"), "c"), "c"); err == nil {
		t.Fatal("new values are still sealed with the old secret")
	}
	signed := old.Sign("id", "c")
	if got, err := rotated.Verify(signed, "c"); err != nil || got != "id" {
		t.Fatalf("Verify after rotation: %q %v", got, err)
	}
}

func TestSignVerify(t *testing.T) {
	s, _ := New(secretA)
	signed := s.Sign("session-id", "c")
	if got, err := s.Verify(signed, "c"); err != nil || got != "session-id" {
		t.Fatalf("%q %v", got, err)
	}
	for _, bad := range []string{"session-id", signed + "x", strings.Replace(signed, "session", "sessioN", 1), signed[:len(signed)-2]} {
		if _, err := s.Verify(bad, "c"); err == nil {
			t.Errorf("Verify(%q) accepted", bad)
		}
	}
	if _, err := s.Verify(signed, "other"); err == nil {
		t.Error("signature valid in another context")
	}
}
