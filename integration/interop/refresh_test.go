package interop

import (
	"context"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/oidcauth/oidcauth"
)

// Flow 6: refresh. With offline_access among the scopes (oidcauth then
// asks for prompt=consent) the OP issues a refresh token; its access
// tokens live a few seconds; across several expiries, auth.Token keeps
// returning access tokens that the OP's userinfo accepts, each new, by
// redeeming the refresh token the session holds.

// refreshTTL is the access tokens' lifetime in the refresh tests: short
// enough that the test crosses refreshRounds expiries in seconds.
const (
	refreshTTL    = 3 * time.Second
	refreshRounds = 3
)

var refreshScopes = []string{"openid", "email", "profile", "offline_access"}

// fetchToken asks the token app's /token from the tab, as the app's own
// JavaScript would.
func fetchToken(t *testing.T, tab *Tab) tokenInfo {
	t.Helper()
	r := tab.Fetch("/token")
	var info tokenInfo
	if err := r.JSON(&info); err != nil {
		tab.fatal("/token = %d %q: %v", r.Status, r.Body, err)
	}
	if r.Status != http.StatusOK {
		tab.fatal("/token = %d %+v", r.Status, info)
	}
	return info
}

// refreshCheck is what checkRefreshes is told about the OP and the store.
type refreshCheck struct {
	sub string
	// grants returns how many token requests of the app's client the OP
	// has served since just before the login (the code exchange, then
	// one per refresh).
	grants func() int
	// expiryEnforced: the OP refuses an access token once the lifetime it
	// announced is over, give or take opClockTolerance (zitadel's example
	// storage keeps its tokens valid for 5 minutes whatever the response
	// says).
	expiryEnforced bool
	// rotates: the OP issues a new refresh token with every refresh and
	// forgets the old one, so each refresh must use what the previous one
	// stored.
	rotates bool
	// redisURL, for Redis sessions: the refreshed session is rewritten in
	// place, under the same cookie.
	redisURL string
}

// checkRefreshes calls /token refreshRounds+1 times, each time after the
// previous token has expired, and checks that every answer is a new
// access token that the OP's userinfo accepts for the user, that the
// session carries what the previous refresh stored (with a rotating OP, a
// new refresh token each time), and that the OP served the refreshes; with
// an OP that enforces expiry, that it refuses the first token in the end.
func checkRefreshes(t *testing.T, tab *Tab, app *tokenApp, c refreshCheck) {
	t.Helper()
	var cookieValue string
	if c.redisURL != "" {
		ck := tab.Cookie(app.Base, "oidcauth")
		if ck == nil {
			tab.fatal("no session cookie after the login")
		}
		cookieValue = ck.Value
	}
	check := func(i int, info tokenInfo) {
		t.Helper()
		if info.UserinfoStatus != http.StatusOK || info.UserinfoSub != c.sub {
			t.Errorf("round %d: userinfo with auth.Token's access token = %d sub %q, want 200 %q", i, info.UserinfoStatus, info.UserinfoSub, c.sub)
		}
		if left := time.Until(info.Expiry); left <= 0 || left > refreshTTL+2*time.Second {
			t.Errorf("round %d: auth.Token's access token expires in %v, want a fresh token of the OP's %v lifetime", i, left, refreshTTL)
		}
	}

	first := fetchToken(t, tab)
	t.Logf("round 0: access %s expires %s; the session carried access %s, refresh %s",
		first.Access, first.Expiry.Format(time.StampMilli), first.CarriedAccess, first.CarriedRefresh)
	if first.CarriedRefresh == "" {
		t.Fatal("the session holds no refresh token: the OP did not grant offline_access")
	}
	check(0, first)
	rounds := []tokenInfo{first}
	for i := 1; i <= refreshRounds; i++ {
		prev := rounds[i-1]
		time.Sleep(time.Until(prev.Expiry) + 500*time.Millisecond)
		next := fetchToken(t, tab)
		t.Logf("round %d: access %s expires %s; the session carried access %s, refresh %s",
			i, next.Access, next.Expiry.Format(time.StampMilli), next.CarriedAccess, next.CarriedRefresh)
		check(i, next)
		if next.Access == prev.Access {
			t.Errorf("round %d: auth.Token returned the expired access token again", i)
		}
		if !next.Expiry.After(prev.Expiry) {
			t.Errorf("round %d: the new token expires %v, not after the old one (%v)", i, next.Expiry, prev.Expiry)
		}
		if next.CarriedAccess != prev.Access {
			t.Errorf("round %d: the session carried access token %s, not %s, which the previous auth.Token stored", i, next.CarriedAccess, prev.Access)
		}
		if c.rotates && next.CarriedRefresh == prev.CarriedRefresh {
			t.Errorf("round %d: the session still carries refresh token %s, which the OP rotated away", i, next.CarriedRefresh)
		}
		rounds = append(rounds, next)
	}

	refreshTokens := map[string]bool{}
	for _, r := range rounds {
		refreshTokens[r.CarriedRefresh] = true
	}
	t.Logf("%d distinct refresh tokens over %d refreshing rounds (the OP rotates them: %v)", len(refreshTokens), len(rounds), c.rotates)
	if c.rotates && len(refreshTokens) != len(rounds) {
		t.Errorf("%d distinct refresh tokens over %d rounds: every refresh should have used the one the previous stored", len(refreshTokens), len(rounds))
	}
	if n := c.grants() - 1; n < refreshRounds {
		t.Errorf("the OP served %d refreshes, want at least %d", n, refreshRounds)
	} else {
		t.Logf("the OP served %d refresh grants", n)
	}
	if n := strings.Count(app.Log(), `msg="oidcauth: tokens refreshed"`); n < refreshRounds {
		t.Errorf("oidcauth logged %d refreshes, want at least %d", n, refreshRounds)
	}

	if c.redisURL != "" {
		if ck := tab.Cookie(app.Base, "oidcauth"); ck == nil || ck.Value != cookieValue {
			t.Errorf("the session cookie changed across refreshes: Redis sessions are rewritten in place")
		}
		if n := redisSessions(t, c.redisURL); n != 1 {
			t.Errorf("Redis holds %d sessions after the refreshes, want 1", n)
		}
	}

	// What a token much shorter-lived than oidcauth's refresh margin costs:
	// a second call while the token is still valid.
	last := rounds[len(rounds)-1]
	again := fetchToken(t, tab)
	if again.Access != last.Access {
		t.Logf("note: auth.Token refreshed again %v before the token's expiry: tokens living less than its refresh margin are renewed on every call", time.Until(last.Expiry).Round(time.Millisecond))
	}

	// The expiries were real: once the OP's clock tolerance is over too,
	// it refuses the first token, and auth.Token's latest still works.
	if c.expiryEnforced {
		time.Sleep(time.Until(first.Expiry.Add(opClockTolerance + time.Second)))
		r := tab.Fetch("/userinfo?access=" + first.Access)
		if !strings.Contains(r.Body, `"status":401`) {
			t.Errorf("the OP's userinfo with round 0's access token, %v after its expiry, answered %s, want 401",
				time.Since(first.Expiry).Round(time.Second), strings.TrimSpace(r.Body))
		}
		check(len(rounds), fetchToken(t, tab))
	}
}

// opClockTolerance is oidc-provider's default clockTolerance, which
// server.js keeps: it accepts an access token for 15 s past its exp.
const opClockTolerance = 15 * time.Second

// Flow 6 against the certified OP, with cookie sessions and with Redis
// sessions: one OP of the test's own, with 3-second access tokens and a
// client for each app.
func TestCertifiedRefresh(t *testing.T) {
	t.Parallel()
	type variant struct {
		name     string
		ln       net.Listener
		client   Client
		redisURL string
	}
	var variants []*variant
	for _, name := range []string{"cookie", "redis"} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		v := &variant{name: name, ln: ln, client: appClient("http://" + ln.Addr().String())}
		v.client.ID, v.client.Secret = "oidcauth-refresh-"+name, awkwardSecret()
		variants = append(variants, v)
	}
	t.Cleanup(func() { // after the subtests, which run once this function returns
		for _, v := range variants {
			v.ln.Close() // in case a subtest did not get to serve on it
		}
	})
	opv := newOP(t, OPOptions{Clients: []Client{variants[0].client, variants[1].client}, AccessTokenTTL: refreshTTL})
	browser := sharedBrowser(t)

	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			if v.name == "redis" {
				v.redisURL = sharedRedis(t).NewDB(t)
			}
			app := startTokenApp(t, v.ln, oidcauth.Config{
				Issuer:        opv.Issuer,
				ClientID:      v.client.ID,
				ClientSecret:  v.client.Secret,
				RedirectURI:   "http://" + v.ln.Addr().String() + "/auth/callback",
				Scopes:        refreshScopes,
				SessionSecret: randomToken(),
				RedisURL:      v.redisURL,
			})
			tab := browser.NewWindow(t, "refresh-"+v.name)
			mark := opv.Mark()
			tab.Go(app.URL("/private"))
			tab.WaitPage(opv.Issuer+"/interaction/", opLoginForm)
			if err := opLogin(tab, alice, app.Base); err != nil {
				tab.fatal("%v", err)
			}
			tab.WaitPage(app.URL("/private"), "#user-name")
			tab.Screenshot("logged-in")
			checkRefreshes(t, tab, app, refreshCheck{
				sub: alice.Login,
				grants: func() int {
					n := 0
					for _, l := range opv.LogSince(mark) {
						if strings.Contains(l, "event grant.success") && slices.Contains(strings.Fields(l), "client="+v.client.ID) {
							n++
						}
					}
					return n
				},
				// That the OP enforces the expiry is about the OP, not the
				// store: one variant waits out its clock tolerance.
				expiryEnforced: v.redisURL == "",
				// oidc-provider rotates refresh tokens only for public
				// clients or near the end of their lifetime (its default
				// rotateRefreshToken); oidcauth is a confidential client.
				rotates:  false,
				redisURL: v.redisURL,
			})
		})
	}
}

// Flow 6 against the zitadel OP, whose storage rotates refresh tokens on
// every refresh (deleting the old one): each refresh must redeem the
// refresh token that the previous one stored in the session.
func TestZitadelRefreshRotation(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	clientID, secret := "oidcauth-interop-zitadel-refresh", awkwardSecret()
	z := startZitadel(t, clientID, secret, base)
	z.store.accessTokenTTL.Store(int64(refreshTTL))
	app := startTokenApp(t, ln, oidcauth.Config{
		Issuer:        z.Issuer,
		ClientID:      clientID,
		ClientSecret:  secret,
		RedirectURI:   base + "/auth/callback",
		Scopes:        refreshScopes,
		SessionSecret: randomToken(),
	})
	tab := sharedBrowser(t).NewWindow(t, "zitadel-refresh")
	before := z.Hits("/oauth/token")
	tab.Go(app.URL("/private"))
	tab.WaitPage(strings.TrimSuffix(z.Issuer, "/")+"/login/username", "#username")
	tab.Type("#username", carol.Username)
	tab.Type("#password", carol.Password)
	tab.Click("#submit")
	tab.WaitPage(app.URL("/private"), "#user-name")
	checkRefreshes(t, tab, app, refreshCheck{
		sub:     carol.ID,
		grants:  func() int { return z.Hits("/oauth/token") - before },
		rotates: true,
	})
}

// CreateAccessAndRefreshTokens is the storage's, with the lifetime that
// the token response announces shortened to accessTokenTTL when set.
func (s *zitadelStorage) CreateAccessAndRefreshTokens(ctx context.Context, req op.TokenRequest, currentRefreshToken string) (string, string, time.Time, error) {
	access, refresh, exp, err := s.Storage.CreateAccessAndRefreshTokens(ctx, req, currentRefreshToken)
	if ttl := time.Duration(s.accessTokenTTL.Load()); ttl > 0 && err == nil {
		exp = time.Now().Add(ttl)
	}
	return access, refresh, exp, err
}
