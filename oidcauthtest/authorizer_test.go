package oidcauthtest_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/oidcauth/oidcauth"
	"github.com/oidcauth/oidcauth/oidcauthtest"
)

// docsApp is a user's app: GET /documents/{id} behind the authorizer.
func docsApp(t *testing.T, auth *oidcauth.Auth, client oidcauth.AuthorizerClient) http.Handler {
	t.Helper()
	az, err := oidcauth.NewAuthorizer(client, oidcauth.AuthorizerConfig{PolicyRoot: "docs", Auth: auth})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /documents/{id}", az.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("document " + r.PathValue("id")))
	})))
	return auth.Handler(mux)
}

func TestFakeAuthorizerAllowsDeniesAndFails(t *testing.T) {
	auth := oidcauthtest.NewAuth(t)
	var seen []string
	fake := oidcauthtest.NewAuthorizer(func(id oidcauth.Identity, path string, resource map[string]any) bool {
		seen = append(seen, id.Type.String()+":"+id.Value+" "+path+" "+resource["id"].(string))
		return id.Value == "user-alice"
	})
	app := docsApp(t, auth, fake)
	status := func(user string) int {
		rec := httptest.NewRecorder()
		app.ServeHTTP(rec, oidcauthtest.NewRequest(t, auth, user, "GET", "/documents/7", nil))
		return rec.Code
	}
	if got := status("alice"); got != http.StatusOK {
		t.Fatalf("alice: %d", got)
	}
	if got := status("bob"); got != http.StatusForbidden {
		t.Fatalf("bob: %d", got)
	}
	if got := status(""); got != http.StatusUnauthorized {
		t.Fatalf("anonymous: %d", got)
	}
	if len(seen) != 3 || seen[0] != "SUB:user-alice docs.GET.documents.__id 7" {
		t.Fatalf("the policy saw %q", seen)
	}
	calls := fake.Calls()
	status("alice") // cached by oidcauth: no new call
	if fake.Calls() != calls {
		t.Fatal("a cached decision asked the fake again")
	}
	fake.Fail(true)
	if got := status("carol"); got != http.StatusServiceUnavailable {
		t.Fatalf("authorizer down: %d, want 503", got)
	}
	fake.Fail(false)
	if got := status("carol"); got != http.StatusForbidden {
		t.Fatalf("authorizer back: %d", got)
	}
}
