package weblogin

import (
	"net/url"
	"strings"
	"testing"
)

func TestLoginForm(t *testing.T) {
	page := `<main><form method="post" action="/authorize">
<input type="hidden" name="client_id" value="oidcauth-demo">
<input type="hidden" name="redirect_uri" value="http://127.0.0.1:1/auth/callback?a=1&amp;b=2">
<input type="hidden" name="state" value="s">
<input type="hidden" name="code_challenge" value="c">
<button type="submit" name="user" value="alice">Alice</button>
</form></main>`
	u, _ := url.Parse("http://127.0.0.1:2/authorize?client_id=x")
	action, form, err := LoginForm(page, u)
	if err != nil {
		t.Fatal(err)
	}
	if action != "http://127.0.0.1:2/authorize" || form.Get("redirect_uri") != "http://127.0.0.1:1/auth/callback?a=1&b=2" ||
		form.Get("client_id") != "oidcauth-demo" || form.Has("user") {
		t.Fatalf("action %s, form %v", action, form)
	}
	if _, _, err := LoginForm(strings.Replace(page, `name="state"`, `name="x"`, 1), u); err == nil {
		t.Fatal("a form without state was accepted")
	}
}
