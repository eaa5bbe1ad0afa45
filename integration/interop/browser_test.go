package interop

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// stepTimeout bounds every browser step: a page that never comes fails the
// test in seconds, with a screenshot, instead of hanging until go test's
// timeout.
const stepTimeout = 15 * time.Second

// Browser is one headless Chromium for the whole run; each test gets its
// own browser context (a fresh cookie jar, like a private window) in it.
type Browser struct {
	ctx         context.Context // the browser's first tab, which stays blank
	cancel      context.CancelFunc
	allocCancel context.CancelFunc
	logFile     *os.File
}

// startBrowser starts Debian's chromium, headless, with a fresh user-data
// directory (chromedp makes one and removes it), and nothing but loopback
// reachable: every host name but localhost fails to resolve, so a page
// that pulls something from the internet cannot reach it.
func startBrowser(logDir string) (*Browser, error) {
	path, err := lookPath("chromium")
	if err != nil {
		return nil, err
	}
	logFile, err := os.Create(filepath.Join(logDir, "chromium.log"))
	if err != nil {
		return nil, err
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1"),
		chromedp.WindowSize(1280, 900),
		chromedp.CombinedOutput(logFile),
	)
	allocCtx, allocCancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	b := &Browser{ctx: ctx, cancel: cancel, allocCancel: allocCancel, logFile: logFile}
	if err := firstRun(ctx, cancel, 30*time.Second); err != nil {
		b.stop()
		return nil, fmt.Errorf("starting chromium: %w", err)
	}
	return b, nil
}

// firstRun starts the browser or opens the tab of a new chromedp context.
// It must run on that context itself, not on one with a deadline: chromedp
// ties what the first run creates to the context it gets. So the timeout
// cancels the whole context instead.
func firstRun(ctx context.Context, cancel context.CancelFunc, timeout time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- chromedp.Do(ctx) }()
	select {
	case err := <-done:
		return err
	case <-time.After(timeout):
		cancel()
		return fmt.Errorf("no answer in %v", timeout)
	}
}

// stop closes the browser: chromedp ends the process it started (by its
// pid) and removes the user-data directory.
func (b *Browser) stop() {
	b.cancel()
	b.allocCancel()
	b.logFile.Close()
}

// Tab is one page of a test. Its methods fail the test; the lower-case
// ones return errors, for use from other goroutines.
type Tab struct {
	t    testing.TB
	name string
	ctx  context.Context
}

// NewWindow opens a tab in a new browser context: no cookies, no storage,
// shared with no other test. When the test fails, the tab's last page is
// saved as a screenshot and HTML in the artifacts (see snapshot).
func (b *Browser) NewWindow(t testing.TB, name string) *Tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx, chromedp.WithNewBrowserContext())
	return openTab(t, name, ctx, cancel)
}

// NewTab opens another tab in tab's browser context: same cookies, as a
// person's second tab.
func (tab *Tab) NewTab(t testing.TB, name string) *Tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(tab.ctx)
	return openTab(t, name, ctx, cancel)
}

func openTab(t testing.TB, name string, ctx context.Context, cancel context.CancelFunc) *Tab {
	t.Helper()
	tab := &Tab{t: t, name: name, ctx: ctx}
	t.Cleanup(func() {
		if t.Failed() {
			tab.snapshot("failed")
		}
		cancel()
	})
	if err := firstRun(ctx, cancel, stepTimeout); err != nil {
		t.Fatalf("%s: opening a tab: %v", name, err)
	}
	return tab
}

// do runs steps with the step timeout.
func (tab *Tab) do(steps ...chromedp.Action[chromedp.Void]) error {
	ctx, cancel := context.WithTimeout(tab.ctx, stepTimeout)
	defer cancel()
	return chromedp.Do(ctx, steps...)
}

func run[T any](tab *Tab, a chromedp.Action[T]) (T, error) {
	ctx, cancel := context.WithTimeout(tab.ctx, stepTimeout)
	defer cancel()
	return chromedp.Run(ctx, a)
}

// fatal fails the test with where the tab is.
func (tab *Tab) fatal(format string, args ...any) {
	tab.t.Helper()
	loc, _ := tab.location()
	tab.t.Fatalf("%s (tab %s at %s)", fmt.Sprintf(format, args...), tab.name, loc)
}

// Go navigates to url and waits for the page to load.
func (tab *Tab) Go(url string) {
	tab.t.Helper()
	if err := tab.do(chromedp.Navigate(url)); err != nil {
		tab.fatal("navigating to %s: %v", url, err)
	}
}

// WaitVisible waits until an element matching css is visible.
func (tab *Tab) WaitVisible(css string) {
	tab.t.Helper()
	if err := tab.do(chromedp.WaitVisible(chromedp.CSS(css))); err != nil {
		tab.fatal("waiting for %q: %v", css, err)
	}
}

// Click clicks the first element matching css, once it is visible.
func (tab *Tab) Click(css string) {
	tab.t.Helper()
	if err := tab.do(chromedp.WaitVisible(chromedp.CSS(css)), chromedp.Click(chromedp.CSS(css))); err != nil {
		tab.fatal("clicking %q: %v", css, err)
	}
}

// Type types text into the first element matching css.
func (tab *Tab) Type(css, text string) {
	tab.t.Helper()
	if err := tab.do(chromedp.WaitVisible(chromedp.CSS(css)), chromedp.SendKeys(chromedp.CSS(css), text)); err != nil {
		tab.fatal("typing into %q: %v", css, err)
	}
}

// Text returns the visible text of the first element matching css.
func (tab *Tab) Text(css string) string {
	tab.t.Helper()
	s, err := run(tab, chromedp.Text(chromedp.CSS(css)))
	if err != nil {
		tab.fatal("reading %q: %v", css, err)
	}
	return strings.TrimSpace(s)
}

func (tab *Tab) location() (string, error) {
	ctx, cancel := context.WithTimeout(tab.ctx, 3*time.Second)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Location())
}

// URL returns the page's address.
func (tab *Tab) URL() string {
	tab.t.Helper()
	u, err := tab.location()
	if err != nil {
		tab.t.Fatalf("%s: reading the location: %v", tab.name, err)
	}
	return u
}

// waitPage waits, across navigations, until the page's address starts with
// prefix and an element matching css (if any) is visible.
func (tab *Tab) waitPage(prefix, css string) error {
	deadline := time.Now().Add(stepTimeout)
	var loc string
	for {
		l, err := tab.location()
		if err == nil {
			loc = l
			if strings.HasPrefix(l, prefix) {
				break
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the page is still %s, not %s…", loc, prefix)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if css == "" {
		return nil
	}
	return tab.do(chromedp.WaitVisible(chromedp.CSS(css)))
}

// WaitPage is waitPage failing the test.
func (tab *Tab) WaitPage(prefix, css string) {
	tab.t.Helper()
	if err := tab.waitPage(prefix, css); err != nil {
		tab.fatal("waiting for %s… %s: %v", prefix, css, err)
	}
}

// Response is an HTTP response that the page's own fetch saw.
type Response struct {
	Status int    `json:"status"`
	Body   string `json:"body"`
}

// JSON decodes the body into v.
func (r Response) JSON(v any) error { return json.Unmarshal([]byte(r.Body), v) }

// fetch requests path from the page's origin with the page's cookies, as
// the app's own JavaScript would, without following redirects.
func (tab *Tab) fetch(path string) (Response, error) {
	js := fmt.Sprintf(`fetch(%q, {headers: {Accept: "application/json"}, credentials: "same-origin", cache: "no-store", redirect: "manual"})
		.then(async (r) => ({status: r.status, body: await r.text()}))`, path)
	return run(tab, chromedp.Evaluate[Response](js, chromedp.EvalAwaitPromise))
}

// Fetch is fetch failing the test; the tab must be on the app's origin.
func (tab *Tab) Fetch(path string) Response {
	tab.t.Helper()
	r, err := tab.fetch(path)
	if err != nil {
		tab.fatal("fetching %s: %v", path, err)
	}
	return r
}

// Screenshot saves the page as a PNG in the artifacts and logs its path,
// to look at what a flow shows: only under `make integration` (with
// OIDCAUTH_ARTIFACTS set), so that plain runs leave nothing behind.
func (tab *Tab) Screenshot(label string) string {
	tab.t.Helper()
	if os.Getenv("OIDCAUTH_ARTIFACTS") == "" {
		return ""
	}
	return tab.screenshot(label)
}

func (tab *Tab) screenshot(label string) string {
	tab.t.Helper()
	png, err := run(tab, chromedp.CaptureScreenshot())
	if err != nil {
		tab.t.Logf("%s: no screenshot: %v", tab.name, err)
		return ""
	}
	p, err := saveArtifact(tab.t.Name(), tab.name+"-"+label+".png", png)
	if err != nil {
		tab.t.Logf("%s: saving the screenshot: %v", tab.name, err)
		return ""
	}
	tab.t.Logf("%s: screenshot %s", tab.name, p)
	return p
}

// snapshot saves the page's screenshot, HTML and address as artifacts and
// logs where.
func (tab *Tab) snapshot(label string) {
	loc, _ := tab.location()
	tab.t.Logf("%s: last page %s", tab.name, loc)
	tab.screenshot(label)
	html, err := run(tab, chromedp.Evaluate[string](`document.documentElement ? document.documentElement.outerHTML : ""`))
	if err != nil {
		tab.t.Logf("%s: no HTML: %v", tab.name, err)
		return
	}
	p, err := saveArtifact(tab.t.Name(), tab.name+"-"+label+".html", []byte("<!-- "+loc+" -->\n"+html))
	if err != nil {
		tab.t.Logf("%s: saving the HTML: %v", tab.name, err)
		return
	}
	tab.t.Logf("%s: page HTML %s", tab.name, p)
}

// Steps for Tab.do, the goroutine-safe way: they return errors.

func navigate(url string) chromedp.Action[chromedp.Void] { return chromedp.Navigate(url) }

func click(css string) chromedp.Action[chromedp.Void] { return chromedp.Click(chromedp.CSS(css)) }

func sendKeys(css, text string) chromedp.Action[chromedp.Void] {
	return chromedp.SendKeys(chromedp.CSS(css), text)
}

// evaluate runs js in the page, briefly: during a navigation it fails,
// and callers that poll try again.
func evaluate[T any](tab *Tab, js string) (T, error) {
	ctx, cancel := context.WithTimeout(tab.ctx, 3*time.Second)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[T](js))
}
