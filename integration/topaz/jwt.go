package topaz

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"strings"
	"time"
)

// jwtSubject verifies token as topazd does for a JWT identity (signature
// by a key of the issuer's JWKS, found through its discovery document;
// exp and nbf) and returns its subject. Only RS256 is supported.
func jwtSubject(ctx context.Context, client *http.Client, token string, now time.Time) (string, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return "", errors.New("not a JWT")
	}
	var header struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
	}
	var claims struct {
		Iss string  `json:"iss"`
		Sub string  `json:"sub"`
		Exp float64 `json:"exp"`
		Nbf float64 `json:"nbf"`
	}
	if err := decodeSegment(parts[0], &header); err != nil {
		return "", fmt.Errorf("header: %w", err)
	}
	if err := decodeSegment(parts[1], &claims); err != nil {
		return "", fmt.Errorf("claims: %w", err)
	}
	if header.Alg != "RS256" {
		return "", fmt.Errorf("alg %q: the stand-in verifies RS256 only", header.Alg)
	}
	keys, err := issuerKeys(ctx, client, claims.Iss)
	if err != nil {
		return "", err
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return "", fmt.Errorf("signature: %w", err)
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	verified := false
	for _, k := range keys {
		if (header.Kid == "" || k.kid == header.Kid) && rsa.VerifyPKCS1v15(k.key, crypto.SHA256, digest[:], sig) == nil {
			verified = true
			break
		}
	}
	switch {
	case !verified:
		return "", errors.New("signature not verified by the issuer's keys")
	case claims.Exp == 0 || now.Unix() >= int64(claims.Exp):
		return "", errors.New("token expired")
	case claims.Nbf != 0 && now.Unix() < int64(claims.Nbf):
		return "", errors.New("token not yet valid")
	case claims.Sub == "":
		return "", errors.New("token has no sub")
	}
	return claims.Sub, nil
}

type rsaKey struct {
	kid string
	key *rsa.PublicKey
}

// issuerKeys fetches the RSA keys of iss's JWKS, found through its
// discovery document.
func issuerKeys(ctx context.Context, client *http.Client, iss string) ([]rsaKey, error) {
	if !strings.HasPrefix(iss, "http://") && !strings.HasPrefix(iss, "https://") {
		return nil, fmt.Errorf("issuer %q is not a URL", iss)
	}
	var meta struct {
		JWKSURI string `json:"jwks_uri"`
	}
	if err := getJSON(ctx, client, strings.TrimSuffix(iss, "/")+"/.well-known/openid-configuration", &meta); err != nil {
		return nil, err
	}
	var set struct {
		Keys []struct {
			Kty, Kid, N, E string
		} `json:"keys"`
	}
	if err := getJSON(ctx, client, meta.JWKSURI, &set); err != nil {
		return nil, err
	}
	var keys []rsaKey
	for _, k := range set.Keys {
		if k.Kty != "RSA" {
			continue
		}
		n, err1 := base64.RawURLEncoding.DecodeString(k.N)
		e, err2 := base64.RawURLEncoding.DecodeString(k.E)
		if err1 != nil || err2 != nil {
			continue
		}
		keys = append(keys, rsaKey{k.Kid, &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}})
	}
	return keys, nil
}

func getJSON(ctx context.Context, client *http.Client, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func decodeSegment(seg string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}
