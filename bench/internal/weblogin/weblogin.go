// Package weblogin logs in to examples/basic, through its development
// provider's login form, over HTTP as a browser does; for bench/load and
// bench/soak.
package weblogin

import (
	"context"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// Login logs username in to the app at base the way a browser does:
// GET /login, follow the redirect to the development provider, submit its
// login form (its hidden fields plus user=username), follow the callback
// back to the app. It returns the Cookie header that carries the session,
// after checking that it alone makes GET /me answer 200 as that user.
func Login(ctx context.Context, base, username, wantSub string) (string, error) {
	jar, err := cookiejar.New(nil)
	if err != nil {
		return "", err
	}
	client := &http.Client{Jar: jar, Timeout: 20 * time.Second}

	page, pageURL, err := Fetch(ctx, client, http.MethodGet, base+"login", nil)
	if err != nil {
		return "", fmt.Errorf("GET /login: %w", err)
	}
	action, form, err := LoginForm(page, pageURL)
	if err != nil {
		return "", fmt.Errorf("the provider's login page (%s): %w", pageURL, err)
	}
	form.Set("user", username)
	_, landed, err := Fetch(ctx, client, http.MethodPost, action, form)
	if err != nil {
		return "", fmt.Errorf("submitting the login form as %s: %w", username, err)
	}
	if !strings.HasPrefix(landed.String(), base) {
		return "", fmt.Errorf("the login ended at %s, not at the app", landed)
	}

	u, _ := url.Parse(base + "me")
	var parts []string
	for _, c := range jar.Cookies(u) {
		parts = append(parts, c.Name+"="+c.Value)
	}
	if len(parts) == 0 {
		return "", fmt.Errorf("the login set no cookie for %s", u)
	}
	cookie := strings.Join(parts, "; ")
	status, body, err := Get(ctx, base+"me", cookie)
	if err != nil {
		return "", err
	}
	if status != http.StatusOK || !strings.Contains(body, `"sub":"`+wantSub+`"`) {
		return "", fmt.Errorf("after the login, GET /me with the session cookie = %d %q", status, body)
	}
	return cookie, nil
}

// Fetch sends one request, following redirects, and requires a 200 at the
// end; it returns the final body and URL.
func Fetch(ctx context.Context, client *http.Client, method, target string, form url.Values) (string, *url.URL, error) {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return "", nil, err
	}
	req.Header.Set("Accept", "text/html")
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return "", nil, fmt.Errorf("%s %s: %s %s", method, resp.Request.URL, resp.Status, resp.Header.Get("X-Devidp-Error"))
	}
	return string(b), resp.Request.URL, nil
}

// Get sends GET target with exactly the given Cookie header (none when
// empty), without following redirects, and returns the status and body.
func Get(ctx context.Context, target, cookie string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return 0, "", err
	}
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	client := &http.Client{
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b), err
}

var (
	formRE   = regexp.MustCompile(`(?s)<form\b[^>]*\bmethod="post"[^>]*\baction="([^"]*)"[^>]*>(.*?)</form>`)
	hiddenRE = regexp.MustCompile(`<input type="hidden" name="([^"]*)" value="([^"]*)">`)
)

// LoginForm finds the development provider's login form in page: where it
// posts to and its hidden fields (the authorization request).
func LoginForm(page string, pageURL *url.URL) (string, url.Values, error) {
	m := formRE.FindStringSubmatch(page)
	if m == nil {
		return "", nil, fmt.Errorf("no login form")
	}
	action, err := pageURL.Parse(html.UnescapeString(m[1]))
	if err != nil {
		return "", nil, err
	}
	form := url.Values{}
	for _, h := range hiddenRE.FindAllStringSubmatch(m[2], -1) {
		form.Add(html.UnescapeString(h[1]), html.UnescapeString(h[2]))
	}
	if !form.Has("state") || !form.Has("code_challenge") {
		return "", nil, fmt.Errorf("the login form lacks the authorization request: %v", form)
	}
	return action.String(), form, nil
}
