package oidcauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// minKeyRefresh is how often, at most, an unknown key makes oidcauth fetch
// the IdP's JWKS again. Logout and bearer tokens are unauthenticated
// input: without a limit, every forged token naming an unknown kid would
// cost a request to the IdP.
const minKeyRefresh = 10 * time.Second

// errKeysUnavailable wraps a failure to fetch the IdP's keys: the IdP
// failing, not the token being bad.
var errKeysUnavailable = errors.New("the IdP's signing keys cannot be fetched")

// asymmetricAlgs are the signature algorithms a key set verifies; the
// verifier further limits them to those the IdP advertises.
var asymmetricAlgs = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512, jose.ES256, jose.ES384, jose.ES512,
	jose.PS256, jose.PS384, jose.PS512, jose.EdDSA,
}

// keySet is the IdP's JWKS, fetched once and again when a token names a
// key it does not have (key rotation), at most once per minKeyRefresh,
// with concurrent refreshes sharing one fetch. It implements go-oidc's
// KeySet for every verifier of an Auth.
type keySet struct {
	url    string
	client *http.Client
	now    func() time.Time

	mu       sync.Mutex
	keys     []jose.JSONWebKey
	fetched  time.Time     // the last fetch attempt
	err      error         // its error
	inflight chan struct{} // closed when the fetch under way ends
}

// VerifySignature checks jwt's signature with the IdP's keys and returns
// its payload. go-oidc's verifier checks the algorithm and the claims.
func (k *keySet) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	jws, err := jose.ParseSigned(jwt, asymmetricAlgs)
	if err != nil {
		return nil, fmt.Errorf("malformed JWT: %w", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("a JWT must have exactly one signature")
	}
	kid := jws.Signatures[0].Header.KeyID
	k.mu.Lock()
	keys := k.keys
	k.mu.Unlock()
	if payload, ok := verifyWith(jws, kid, keys); ok {
		return payload, nil
	}
	keys, err = k.refresh(ctx)
	if err != nil {
		return nil, err
	}
	if payload, ok := verifyWith(jws, kid, keys); ok {
		return payload, nil
	}
	return nil, errors.New("no key of the IdP verifies the signature")
}

// verifyWith tries the keys named kid (every key when kid is empty).
func verifyWith(jws *jose.JSONWebSignature, kid string, keys []jose.JSONWebKey) ([]byte, bool) {
	for i := range keys {
		if kid == "" || keys[i].KeyID == kid {
			if payload, err := jws.Verify(&keys[i]); err == nil {
				return payload, true
			}
		}
	}
	return nil, false
}

// refresh fetches the key set again unless the last attempt is more recent
// than minKeyRefresh, and returns the keys (or why there are none).
func (k *keySet) refresh(ctx context.Context) ([]jose.JSONWebKey, error) {
	k.mu.Lock()
	if ch := k.inflight; ch != nil {
		k.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		k.mu.Lock()
		defer k.mu.Unlock()
		return k.keys, k.err
	}
	if !k.fetched.IsZero() && k.now().Sub(k.fetched) < minKeyRefresh {
		defer k.mu.Unlock()
		return k.keys, k.err
	}
	ch := make(chan struct{})
	k.inflight, k.fetched = ch, k.now()
	k.mu.Unlock()

	// The fetch serves every waiter: it is not canceled with this caller.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), DefaultHTTPTimeout)
	keys, err := k.fetch(fctx)
	cancel()

	k.mu.Lock()
	defer k.mu.Unlock()
	if err == nil {
		k.keys = keys
	}
	k.err, k.inflight = err, nil
	close(ch)
	return k.keys, k.err
}

// fetch gets and parses the JWKS, skipping keys of types or algorithms it
// cannot use rather than failing the whole set.
func (k *keySet) fetch(ctx context.Context) ([]jose.JSONWebKey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errKeysUnavailable, redactURLError(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w: the JWKS endpoint answered %d", errKeysUnavailable, resp.StatusCode)
	}
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("%w: malformed JWKS: %v", errKeysUnavailable, err)
	}
	var keys []jose.JSONWebKey
	for _, raw := range set.Keys {
		var key jose.JSONWebKey
		if json.Unmarshal(raw, &key) != nil || !key.Valid() || !key.IsPublic() {
			continue // a key type or curve we do not know, or a private key
		}
		if key.Use != "" && key.Use != "sig" {
			continue
		}
		keys = append(keys, key)
	}
	return keys, nil
}
