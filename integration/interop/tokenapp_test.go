package interop

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oidcauth/oidcauth"
	"github.com/oidcauth/oidcauth/internal/testenv"
)

// tokenApp is the refresh flow's app: examples/basic has no route calling
// auth.Token, and its routes are a fixed contract, so this small app of
// the tests' own runs in-process, built only from oidcauth's public API as
// a user's app would be. Behind auth.Handler it serves
//
//   - GET /private: login required, greets the user (#user-name);
//   - GET /token: auth.Token, then the OP's userinfo with the token, as an
//     app calling an API on the user's behalf. The answer is tokenInfo:
//     hashes of the token it got and of the tokens the request's session
//     carried (never the tokens themselves), the expiry, and userinfo's
//     answer;
//   - GET /userinfo?access=HASH: userinfo with a token that /token handed
//     out earlier, to show that the OP refuses it once it has expired.
type tokenApp struct {
	Base     string
	auth     *oidcauth.Auth
	userinfo string // the OP's userinfo endpoint
	log      *testenv.SyncBuffer

	mu     sync.Mutex
	issued map[string]string // hash -> access token, from /token
}

// tokenInfo is /token's answer.
type tokenInfo struct {
	Access         string    `json:"access"` // hash of auth.Token's access token
	Expiry         time.Time `json:"expiry"`
	CarriedAccess  string    `json:"carried_access"`  // hash of the access token in the request's session
	CarriedRefresh string    `json:"carried_refresh"` // hash of the refresh token in the request's session
	UserinfoStatus int       `json:"userinfo_status"`
	UserinfoSub    string    `json:"userinfo_sub"`
	Error          string    `json:"error,omitempty"`
}

// startTokenApp serves a tokenApp on ln (held by the caller since before
// the OP learnt its redirect URI) with cfg, and stops it when the test
// ends, printing its log if the test failed.
func startTokenApp(t *testing.T, ln net.Listener, cfg oidcauth.Config) *tokenApp {
	t.Helper()
	app := &tokenApp{Base: "http://" + ln.Addr().String(), log: &testenv.SyncBuffer{}, issued: map[string]string{}}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("token app log:\n%s", app.log.String())
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var meta struct {
		Userinfo string `json:"userinfo_endpoint"`
	}
	if err := getJSON(ctx, strings.TrimSuffix(cfg.Issuer, "/")+"/.well-known/openid-configuration", &meta); err != nil || meta.Userinfo == "" {
		ln.Close()
		t.Fatalf("the OP's userinfo endpoint: %v (%q)", err, meta.Userinfo)
	}
	app.userinfo = meta.Userinfo
	logger := slog.New(slog.NewTextHandler(app.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	auth, err := oidcauth.New(ctx, cfg, oidcauth.WithLogger(logger))
	if err != nil {
		ln.Close()
		t.Fatalf("oidcauth.New: %v", err)
	}
	app.auth = auth

	mux := http.NewServeMux()
	mux.Handle("GET /private", auth.RequireUser(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, _ := oidcauth.UserFrom(r.Context())
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = tokenAppPage.Execute(w, u)
	})))
	mux.HandleFunc("GET /token", app.token)
	mux.HandleFunc("GET /userinfo", func(w http.ResponseWriter, r *http.Request) {
		app.mu.Lock()
		tok, ok := app.issued[r.URL.Query().Get("access")]
		app.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		status, _ := app.callUserinfo(r.Context(), tok)
		writeTokenJSON(w, http.StatusOK, map[string]int{"status": status})
	})
	srv := &http.Server{Handler: auth.Handler(mux), ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("token app: %v", err)
		}
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	})
	return app
}

// URL returns the app's URL for path.
func (app *tokenApp) URL(path string) string { return app.Base + path }

func (app *tokenApp) token(w http.ResponseWriter, r *http.Request) {
	carried, err := app.auth.Session(r)
	if err != nil || carried == nil {
		writeTokenJSON(w, http.StatusUnauthorized, tokenInfo{Error: fmt.Sprintf("no session (%v)", err)})
		return
	}
	info := tokenInfo{CarriedAccess: tokenHash(carried.AccessToken), CarriedRefresh: tokenHash(carried.RefreshToken)}
	// Token comes before anything is written: a cookie session's renewed
	// cookie goes in the response's headers.
	tok, err := app.auth.Token(w, r)
	if err != nil {
		info.Error = err.Error()
		writeTokenJSON(w, http.StatusBadGateway, info)
		return
	}
	info.Access, info.Expiry = tokenHash(tok.AccessToken), tok.Expiry
	app.mu.Lock()
	app.issued[info.Access] = tok.AccessToken
	app.mu.Unlock()
	info.UserinfoStatus, info.UserinfoSub = app.callUserinfo(r.Context(), tok.AccessToken)
	writeTokenJSON(w, http.StatusOK, info)
}

// callUserinfo calls the OP's userinfo with access and returns its status
// and the sub it named.
func (app *tokenApp) callUserinfo(ctx context.Context, access string) (int, string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, app.userinfo, nil)
	if err != nil {
		return 0, ""
	}
	req.Header.Set("Authorization", "Bearer "+access)
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	var claims struct {
		Sub string `json:"sub"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&claims)
	return resp.StatusCode, claims.Sub
}

// Log returns what the app's oidcauth logged so far (debug level on).
func (app *tokenApp) Log() string { return app.log.String() }

func writeTokenJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// tokenHash names a token without showing it: the start of its SHA-256.
func tokenHash(tok string) string {
	if tok == "" {
		return ""
	}
	h := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(h[:8])
}

var tokenAppPage = template.Must(template.New("private").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>token app</title></head>
<body><h1>Token app</h1><p>Hello, <strong id="user-name">{{.Name}}</strong>.</p></body></html>`))

func getJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}
