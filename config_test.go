package oidcauth

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func goodEnv() map[string]string {
	return map[string]string{
		"OIDC_ISSUER":        "https://idp.example.com",
		"OIDC_CLIENT_ID":     "app",
		"OIDC_CLIENT_SECRET": "s3cr3t",
		"OIDC_REDIRECT_URI":  "https://app.example.com/auth/callback",
		"SESSION_SECRET":     "0123456789abcdefghijklmnopqrstuvwxyzABCD",
	}
}

func lookupIn(env map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := env[k]; return v, ok }
}

func TestConfigFromEnvDefaults(t *testing.T) {
	cfg, err := configFromLookup(lookupIn(goodEnv()))
	if err != nil {
		t.Fatal(err)
	}
	cfg = cfg.withDefaults()
	if strings.Join(cfg.Scopes, " ") != "openid email profile" || cfg.Userinfo != UserinfoAuto ||
		cfg.SessionMaxAge != 24*time.Hour || cfg.SessionCookieName != "oidcauth" {
		t.Fatalf("defaults not applied: %+v", cfg)
	}
}

func TestConfigFromEnvReportsEveryProblemByVariable(t *testing.T) {
	env := map[string]string{
		"OIDC_ISSUER":                   "http://idp.example.com", // http on a public host
		"OIDC_REDIRECT_URI":             "/callback",
		"OIDC_SCOPES":                   "email profile",
		"OIDC_POST_LOGOUT_REDIRECT_URI": "ftp://x",
		"OIDC_USERINFO":                 "sometimes",
		"SESSION_SECRET":                "short-secret-value",
		"SESSION_MAX_AGE":               "forever",
		"SESSION_COOKIE_NAME":           "bad name",
	}
	_, err := configFromLookup(lookupIn(env))
	if err == nil {
		t.Fatal("no error")
	}
	for _, v := range []string{"OIDC_ISSUER", "OIDC_CLIENT_ID", "OIDC_CLIENT_SECRET", "OIDC_REDIRECT_URI",
		"OIDC_SCOPES", "OIDC_POST_LOGOUT_REDIRECT_URI", "OIDC_USERINFO", "SESSION_SECRET", "SESSION_MAX_AGE", "SESSION_COOKIE_NAME"} {
		if !strings.Contains(err.Error(), v+":") {
			t.Errorf("error does not name %s:\n%v", v, err)
		}
	}
	if strings.Contains(err.Error(), "short-secret-value") {
		t.Error("error echoes the secret's value")
	}
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Error("errors are not *ConfigError")
	}
}

func TestConfigSecretRules(t *testing.T) {
	for name, tc := range map[string]struct {
		secret, previous string
		wantVar          string
	}{
		"missing":        {"", "", "SESSION_SECRET"},
		"short":          {"abcdefghijklmnopqrstuvwxyz01234", "", "SESSION_SECRET"}, // 31 bytes
		"repetitive":     {strings.Repeat("ab", 20), "", "SESSION_SECRET"},
		"short previous": {"0123456789abcdefghijklmnopqrstuvwxyz", "old", "SESSION_SECRET_PREVIOUS"},
		"ok":             {"0123456789abcdefghijklmnopqrstuvwxyz", "zyxwvutsrqponmlkjihgfedcba9876543210", ""},
	} {
		t.Run(name, func(t *testing.T) {
			env := goodEnv()
			env["SESSION_SECRET"] = tc.secret
			env["SESSION_SECRET_PREVIOUS"] = tc.previous
			_, err := configFromLookup(lookupIn(env))
			if tc.wantVar == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantVar+":") {
				t.Fatalf("want an error naming %s, got %v", tc.wantVar, err)
			}
			if tc.secret != "" && strings.Contains(err.Error(), tc.secret) {
				t.Error("error echoes the secret")
			}
		})
	}
}

func TestConfigAllowsHTTPOnlyOnLoopback(t *testing.T) {
	for issuer, ok := range map[string]bool{
		"http://localhost:8080":       true,
		"http://127.0.0.1:9000/realm": true,
		"http://[::1]:9000":           true,
		"http://app.localhost":        true,
		"http://10.0.0.1":             false,
		"http://idp.example.com":      false,
		"https://idp.example.com":     true,
		"idp.example.com":             false,
		"https://idp.example.com#x":   false,
	} {
		env := goodEnv()
		env["OIDC_ISSUER"] = issuer
		_, err := configFromLookup(lookupIn(env))
		if (err == nil) != ok {
			t.Errorf("issuer %q: ok=%v, err=%v", issuer, ok, err)
		}
	}
}
