package oidcauth

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

func TestKeySetSharesFetchesAndLimitsThem(t *testing.T) {
	h := newHarness(t)
	now := time.Now()
	k := &keySet{url: h.idp.Issuer() + "/jwks", client: http.DefaultClient, now: func() time.Time { return now }}
	good := h.idp.SignJWT(map[string]any{"kid": nil}, map[string]any{"sub": "x"}) // no kid: any key may verify
	forged := unsignedJWT("RS256", map[string]any{"sub": "x"}, func([]byte) []byte { return make([]byte, 256) })
	before := h.idp.Stats().JWKSFetches
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := k.VerifySignature(context.Background(), forged); err == nil {
				t.Error("a forged signature verified")
			}
		}()
	}
	wg.Wait()
	if n := h.idp.Stats().JWKSFetches - before; n != 1 {
		t.Fatalf("20 concurrent unknown keys caused %d fetches, want 1", n)
	}
	if _, err := k.VerifySignature(context.Background(), good); err != nil {
		t.Fatalf("a genuine token: %v", err)
	}
	if n := h.idp.Stats().JWKSFetches - before; n != 1 {
		t.Fatalf("a known key was fetched again (%d fetches)", n)
	}
}

func TestKeySetSkipsKeysItCannotUse(t *testing.T) {
	h := newHarness(t)
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp, err := http.Get(h.idp.Issuer() + "/jwks")
		if err != nil {
			t.Error(err)
			return
		}
		defer resp.Body.Close()
		var set map[string][]map[string]any
		_ = jsonDecode(resp.Body, &set)
		set["keys"] = append([]map[string]any{
			{"kty": "OKP", "crv": "X448", "x": "AAAA"},             // a curve go-jose does not know
			{"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},         // a symmetric key: never
			{"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB"}, // not for signatures
		}, set["keys"]...)
		writeJSON(w, http.StatusOK, set)
	}))
	defer jwks.Close()
	k := &keySet{url: jwks.URL, client: http.DefaultClient, now: time.Now}
	keys, err := k.refresh(context.Background())
	if err != nil || len(keys) != 1 {
		t.Fatalf("keys %d, err %v: want the IdP's one signing key", len(keys), err)
	}
	if _, err := k.VerifySignature(context.Background(), h.idp.SignJWT(nil, map[string]any{"sub": "x"})); err != nil {
		t.Fatal(err)
	}
}
