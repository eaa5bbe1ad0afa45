package interop

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// opDir holds the certified OP's package.json, lock file, node_modules
// (installed by scripts/deps with npm ci) and our server script.
const opDir = "../testdata/op"

// Client is a client's registration at an OP: what oidc-provider takes as
// client metadata (OP_CLIENTS or dynamic registration).
type Client struct {
	ID                     string   `json:"client_id,omitempty"`
	Secret                 string   `json:"client_secret,omitempty"`
	RedirectURIs           []string `json:"redirect_uris"`
	PostLogoutRedirectURIs []string `json:"post_logout_redirect_uris,omitempty"`
	// BackchannelLogoutURI receives logout tokens when the user's session
	// at the OP ends; with BackchannelLogoutSessionRequired they carry sid.
	BackchannelLogoutURI             string   `json:"backchannel_logout_uri,omitempty"`
	BackchannelLogoutSessionRequired bool     `json:"backchannel_logout_session_required,omitempty"`
	GrantTypes                       []string `json:"grant_types,omitempty"`
	ResponseTypes                    []string `json:"response_types,omitempty"`
	TokenEndpointAuthMethod          string   `json:"token_endpoint_auth_method,omitempty"`
}

// appClient is the registration of an app served at base (such as
// http://127.0.0.1:PORT), or of several instances of one app at several
// bases: confidential, client_secret_basic, code flow with refresh tokens
// allowed, each base's callback, post-logout and (the first base's)
// back-channel URI. ID and Secret are left empty for registration to fill.
func appClient(bases ...string) Client {
	c := Client{
		BackchannelLogoutURI:             strings.TrimSuffix(bases[0], "/") + "/backchannel-logout",
		BackchannelLogoutSessionRequired: true,
		GrantTypes:                       []string{"authorization_code", "refresh_token"},
		ResponseTypes:                    []string{"code"},
		TokenEndpointAuthMethod:          "client_secret_basic",
	}
	for _, base := range bases {
		base = strings.TrimSuffix(base, "/")
		c.RedirectURIs = append(c.RedirectURIs, base+"/auth/callback")
		c.PostLogoutRedirectURIs = append(c.PostLogoutRedirectURIs, base+"/")
	}
	return c
}

// User is someone at the certified OP: they log in at its devInteractions
// form as Login (any password does), and the OP vouches for these claims
// (sub is Login).
type User struct {
	Login             string `json:"-"`
	Email             string `json:"email"`
	EmailVerified     bool   `json:"email_verified"`
	Name              string `json:"name"`
	GivenName         string `json:"given_name,omitempty"`
	FamilyName        string `json:"family_name,omitempty"`
	PreferredUsername string `json:"preferred_username,omitempty"`
}

// The certified OP's users unless OPOptions.Users says otherwise.
var (
	alice = User{Login: "alice", Email: "alice@example.com", EmailVerified: true, Name: "Alice Liddell",
		GivenName: "Alice", FamilyName: "Liddell", PreferredUsername: "alice"}
	bob = User{Login: "bob", Email: "bob@example.org", EmailVerified: true, Name: "Bob Dobbs",
		GivenName: "Bob", FamilyName: "Dobbs", PreferredUsername: "bob"}
	defaultUsers = []User{alice, bob}
)

// OPOptions configure one oidc-provider process.
type OPOptions struct {
	// Users are the OP's accounts; nil means alice and bob.
	Users []User
	// Clients are registered at start-up (OP_CLIENTS).
	Clients []Client
	// AccessTokenTTL is the access tokens' lifetime (default 1h); short for
	// refresh tests.
	AccessTokenTTL time.Duration
	// IDTokenTTL is the ID tokens' lifetime (default 1h).
	IDTokenTTL time.Duration
	// RefreshAlways issues refresh tokens to clients allowed the
	// refresh_token grant even without offline_access and prompt=consent.
	RefreshAlways bool
}

// OP is a running oidc-provider: the certified OpenID Provider, with its
// devInteractions login and consent forms, RP-initiated and back-channel
// logout, userinfo, and dynamic registration for more clients.
type OP struct {
	Issuer string
	proc   *process
	// registrationToken is the initial access token for /reg.
	registrationToken string
}

// startOP starts oidc-provider with opts, on a loopback listener of ours
// passed to Node (no port race), and waits until its discovery answers.
// The issuer uses the host name localhost, so that the OP is another site
// than apps at 127.0.0.1, as a real IdP is: cookies of one are not the
// other's, and SameSite rules apply as they would in production.
func startOP(ctx context.Context, name, logDir string, opts OPOptions) (*OP, error) {
	node, err := lookPath("node")
	if err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(opDir)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "oidc-provider", "package.json")); err != nil {
		return nil, &missingError{"the OP's Node packages are not installed in integration/testdata/op (scripts/deps runs `npm ci` there)"}
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	lnFile, err := ln.(*net.TCPListener).File() // a copy of the socket, for the child
	ln.Close()
	if err != nil {
		return nil, err
	}
	defer lnFile.Close()
	op := &OP{
		Issuer:            "http://localhost:" + strconv.Itoa(port),
		registrationToken: randomToken(),
	}
	clients, err := json.Marshal(nonNil(opts.Clients))
	if err != nil {
		return nil, err
	}
	users := map[string]User{}
	for _, u := range cmpOr(opts.Users, defaultUsers) {
		users[u.Login] = u
	}
	usersJSON, err := json.Marshal(users)
	if err != nil {
		return nil, err
	}
	env := []string{
		"OP_ISSUER=" + op.Issuer,
		"OP_LISTEN_FD=3",
		"OP_CLIENTS=" + string(clients),
		"OP_USERS=" + string(usersJSON),
		"OP_REGISTRATION_TOKEN=" + op.registrationToken,
		"NODE_ENV=test",
	}
	if opts.AccessTokenTTL > 0 {
		env = append(env, "OP_ACCESS_TOKEN_TTL="+strconv.Itoa(int(max(time.Second, opts.AccessTokenTTL).Seconds())))
	}
	if opts.IDTokenTTL > 0 {
		env = append(env, "OP_ID_TOKEN_TTL="+strconv.Itoa(int(max(time.Second, opts.IDTokenTTL).Seconds())))
	}
	if opts.RefreshAlways {
		env = append(env, "OP_REFRESH_ALWAYS=1")
	}
	cmd := exec.Command(node, "server.js")
	cmd.Dir = dir
	cmd.Env = environ(env...)
	proc, err := startProcess(name, cmd, logDir, lnFile)
	if err != nil {
		return nil, err
	}
	op.proc = proc
	if err := waitDiscovery(ctx, op.Issuer, proc); err != nil {
		_ = proc.stop(5 * time.Second)
		return nil, fmt.Errorf("%w\n%s output:\n%s", err, name, proc.output())
	}
	return op, nil
}

func cmpOr[T any](s, def []T) []T {
	if s == nil {
		return def
	}
	return s
}

func nonNil(c []Client) []Client {
	if c == nil {
		return []Client{}
	}
	return c
}

// waitDiscovery polls issuer's discovery document until it answers 200
// with that issuer, proc exits, or ctx ends.
func waitDiscovery(ctx context.Context, issuer string, proc *process) error {
	url := strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
	client := &http.Client{Timeout: 2 * time.Second}
	var last error
	for {
		if proc != nil {
			if done, err := proc.exited(); done {
				return fmt.Errorf("%s exited while starting: %v", proc.name, err)
			}
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err == nil {
			var meta struct {
				Issuer string `json:"issuer"`
			}
			err = json.NewDecoder(resp.Body).Decode(&meta)
			resp.Body.Close()
			switch {
			case err != nil:
			case resp.StatusCode != http.StatusOK:
				err = fmt.Errorf("%s answered %s", url, resp.Status)
			case meta.Issuer != issuer:
				return fmt.Errorf("%s names issuer %q, want %q", url, meta.Issuer, issuer)
			default:
				return nil
			}
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s never answered: %v (%w)", url, last, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Register adds a client through dynamic client registration and returns
// it with the client_id and client_secret the OP chose.
func (op *OP) Register(ctx context.Context, c Client) (Client, error) {
	c.ID, c.Secret = "", ""
	body, err := json.Marshal(c)
	if err != nil {
		return c, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, op.Issuer+"/reg", bytes.NewReader(body))
	if err != nil {
		return c, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+op.registrationToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return c, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusCreated {
		return c, fmt.Errorf("registering a client: %s: %s", resp.Status, b)
	}
	var got Client
	if err := json.Unmarshal(b, &got); err != nil {
		return c, err
	}
	if got.ID == "" || got.Secret == "" {
		return c, errors.New("registration returned no client_id or client_secret")
	}
	return got, nil
}

// Mark returns the current end of the OP's log, for WaitLog.
func (op *OP) Mark() int { return op.proc.mark() }

// WaitLog waits until the OP logs a line containing substr after mark,
// such as "event backchannel.success" (server.js logs the provider's
// events), and returns it.
func (op *OP) WaitLog(ctx context.Context, mark int, substr string) (string, error) {
	return op.proc.waitLine(ctx, mark, substr)
}

// LogSince returns the OP's log lines after mark.
func (op *OP) LogSince(mark int) []string {
	lines, _ := op.proc.linesSince(mark)
	return lines
}

// randomToken returns 32 random bytes, base64url-encoded: secrets for
// clients, sessions and registration.
func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
