package interop

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/text/language"
)

// The second OpenID Provider: zitadel's certified OP library
// (github.com/zitadel/oidc/v3/pkg/op), run in-process over the in-memory
// storage its module ships (example/server/storage), with a login page of
// ours. Its ID tokens carry no email or name when an access token is
// issued (as OIDC Core 5.4 has it), so oidcauth fills them from userinfo.

// ZitadelOP is a running zitadel OP.
type ZitadelOP struct {
	Issuer string
	srv    *http.Server
	store  *zitadelStorage

	mu   sync.Mutex
	hits map[string]int // requests per path
}

// zitadelUsers implements storage.UserStore.
type zitadelUsers map[string]*storage.User

func (u zitadelUsers) GetUserByID(id string) *storage.User { return u[id] }

func (u zitadelUsers) GetUserByUsername(name string) *storage.User {
	for _, user := range u {
		if user.Username == name {
			return user
		}
	}
	return nil
}

func (u zitadelUsers) ExampleClientID() string { return "service" }

var carol = &storage.User{
	ID:                "carol-0001",
	Username:          "carol",
	Password:          "z1tadel-carol",
	FirstName:         "Carol",
	LastName:          "Danvers",
	Email:             "carol@example.com",
	EmailVerified:     true,
	PreferredLanguage: language.English,
}

// zitadelStorage is the module's in-memory storage with our client: the
// storage's own client type cannot register post-logout redirect URIs.
type zitadelStorage struct {
	*storage.Storage
	clientID               string
	postLogoutRedirectURIs []string
	// accessTokenTTL, when set, shortens the access tokens' lifetime as
	// the token responses announce it (refresh_test.go).
	accessTokenTTL atomic.Int64
}

// zitadelClient adds post-logout redirect URIs to a storage client.
type zitadelClient struct {
	op.Client
	postLogout []string
}

func (c zitadelClient) PostLogoutRedirectURIs() []string { return c.postLogout }

func (s *zitadelStorage) GetClientByClientID(ctx context.Context, id string) (op.Client, error) {
	c, err := s.Storage.GetClientByClientID(ctx, id)
	if err != nil || id != s.clientID {
		return c, err
	}
	return zitadelClient{Client: c, postLogout: s.postLogoutRedirectURIs}, nil
}

// startZitadel starts a zitadel OP on a loopback listener, with one
// confidential web client (client_secret_basic; PKCE S256 offered) for
// an app at appBase, and the user carol.
func startZitadel(t testing.TB, clientID, secret, appBase string) *ZitadelOP {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	issuer := "http://localhost:" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port) + "/"
	client := storage.WebClient(clientID, secret, appBase+"/auth/callback")
	store := &zitadelStorage{
		Storage:                storage.NewStorageWithClients(zitadelUsers{carol.ID: carol}, map[string]*storage.Client{clientID: client}),
		clientID:               clientID,
		postLogoutRedirectURIs: []string{appBase + "/"},
	}
	var key [32]byte
	_, _ = rand.Read(key[:])
	provider, err := op.NewProvider(&op.Config{
		CryptoKey:                key,
		DefaultLogoutRedirectURI: "/logged-out",
		CodeMethodS256:           true,
		AuthMethodPost:           true,
		GrantTypeRefreshToken:    true,
		SupportedUILocales:       []language.Tag{language.English},
	}, store, op.StaticIssuer(issuer), op.WithAllowInsecure())
	if err != nil {
		t.Fatal(err)
	}
	z := &ZitadelOP{Issuer: issuer, store: store, hits: make(map[string]int)}
	interceptor := op.NewIssuerInterceptor(provider.IssuerFromRequest)
	callback := op.AuthCallbackURL(provider)

	mux := http.NewServeMux()
	// The login UI: the storage's clients send the browser to
	// /login/username?authRequestID=...
	mux.HandleFunc("GET /login/username", func(w http.ResponseWriter, r *http.Request) {
		renderZitadelLogin(w, r.URL.Query().Get("authRequestID"), "")
	})
	mux.Handle("POST /login/username", interceptor.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.FormValue("id")
		if err := store.CheckUsernamePassword(r.FormValue("username"), r.FormValue("password"), id); err != nil {
			w.WriteHeader(http.StatusUnauthorized)
			renderZitadelLogin(w, id, err.Error())
			return
		}
		http.Redirect(w, r, callback(r.Context(), id), http.StatusFound)
	}))
	mux.HandleFunc("GET /logged-out", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "signed out")
	})
	mux.Handle("/", provider)
	z.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			z.mu.Lock()
			z.hits[r.URL.Path]++
			z.mu.Unlock()
			mux.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() {
		if err := z.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("zitadel OP: %v", err)
		}
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = z.srv.Shutdown(ctx)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := waitDiscovery(ctx, issuer, nil); err != nil {
		t.Fatal(err)
	}
	return z
}

// Hits returns how many requests path has had.
func (z *ZitadelOP) Hits(path string) int {
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.hits[path]
}

var zitadelLoginPage = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>zitadel OP: sign in</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:24rem;margin:3rem auto}input,button{font:inherit;display:block;width:100%;margin:.3rem 0}</style></head>
<body><h1>Sign in (zitadel OP)</h1>
<form method="post" action="/login/username">
<input type="hidden" name="id" value="{{.ID}}">
<label>Username <input id="username" name="username" autocomplete="username"></label>
<label>Password <input id="password" name="password" type="password" autocomplete="current-password"></label>
{{with .Error}}<p id="error" style="color:#b00">{{.}}</p>{{end}}
<button id="submit" type="submit">Sign in</button>
</form></body></html>`))

func renderZitadelLogin(w http.ResponseWriter, id, errMsg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = zitadelLoginPage.Execute(w, struct{ ID, Error string }{id, errMsg})
}

// Flow 7: the zitadel OP. Log in through its login page; the ID token has
// no email or name, so oidcauth calls userinfo (OIDC_USERINFO=auto) and
// /me shows what userinfo said; logout goes through its end_session
// endpoint (id_token_hint, client_id, post_logout_redirect_uri, state)
// back to the app, anonymous.
func TestZitadelLoginUserinfoLogout(t *testing.T) {
	t.Parallel()
	port, err := reservePort()
	if err != nil {
		t.Fatal(err)
	}
	defer port.release()
	base := port.Base()
	clientID, secret := "oidcauth-interop-zitadel", awkwardSecret()
	z := startZitadel(t, clientID, secret, base)
	app := newApp(t, "basic-zitadel", AppOptions{Port: port, Issuer: z.Issuer, ClientID: clientID, ClientSecret: secret})
	tab := sharedBrowser(t).NewWindow(t, "zitadel")

	tab.Go(app.URL("/private"))
	tab.WaitPage(strings.TrimSuffix(z.Issuer, "/")+"/login/username", "#username")
	tab.Type("#username", carol.Username)
	tab.Type("#password", carol.Password)
	tab.Screenshot("1-zitadel-login")
	tab.Click("#submit")

	name := carol.FirstName + " " + carol.LastName
	tab.WaitPage(app.URL("/private"), "#user-name")
	tab.Screenshot("2-app-private")
	if got := tab.Text("#user-name"); got != name {
		t.Errorf("/private greets %q, want %q (the name comes from userinfo)", got, name)
	}
	status, m := meOf(t, tab)
	want := me{Sub: carol.ID, Email: carol.Email, Name: name}
	if status != http.StatusOK || m != want {
		t.Errorf("/me = %d %+v, want 200 %+v", status, m, want)
	}
	if n := z.Hits("/userinfo"); n != 1 {
		t.Errorf("userinfo was called %d times during the login, want 1", n)
	}

	tab.Click(`form[action="/logout"] button[type="submit"]`)
	tab.WaitPage(app.URL("/"), `a[href="/login"]`)
	tab.Screenshot("3-app-logged-out")
	if loc := tab.URL(); loc != app.URL("/") {
		t.Errorf("after logout the browser is at %s, want %s", loc, app.URL("/"))
	}
	if n := z.Hits("/end_session"); n != 1 {
		t.Errorf("end_session was called %d times, want 1", n)
	}
	if status, m := meOf(t, tab); status != http.StatusUnauthorized {
		t.Errorf("/me after logout = %d %+v, want 401", status, m)
	}
	// The zitadel example OP keeps no login session of its own: logging
	// in again shows its login page again.
	tab.Go(app.URL("/private"))
	tab.WaitPage(strings.TrimSuffix(z.Issuer, "/")+"/login/username", "#username")
}
