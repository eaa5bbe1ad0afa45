package redirect

import (
	"net/url"
	"strings"
	"testing"

	"github.com/oidcauth/oidcauth/internal/testenv"
)

// corpus returns the hostile values of testdata/open-redirects.txt.
func corpus(t testing.TB) []string {
	t.Helper()
	out := testenv.QuotedLines(t, "testdata/open-redirects.txt")
	if len(out) < 300 {
		t.Fatalf("corpus has only %d values", len(out))
	}
	return out
}

// checkSameOrigin asserts SafePath's contract for one input.
func checkSameOrigin(t *testing.T, in string) {
	t.Helper()
	out := SafePath(in)
	if out != "/" && out != in {
		t.Fatalf("SafePath(%q) = %q: neither / nor the input", in, out)
	}
	if strings.HasPrefix(out, "//") || strings.HasPrefix(out, "/\\") || strings.ContainsAny(out, "\\\t\r\n\x00") {
		t.Fatalf("SafePath(%q) = %q looks like another origin", in, out)
	}
	base, _ := url.Parse("https://app.example/a/b")
	u, err := base.Parse(out)
	if err != nil || u.Scheme != "https" || u.Host != "app.example" || u.User != nil {
		t.Fatalf("SafePath(%q) = %q resolves to %v (%v)", in, out, u, err)
	}
}

func TestOpenRedirectCorpus(t *testing.T) {
	for _, v := range corpus(t) {
		checkSameOrigin(t, v)
	}
}

// FuzzSafePath: whatever comes in, what goes out is "/" or the input, and
// stays on the origin.
func FuzzSafePath(f *testing.F) {
	for _, v := range corpus(f) {
		f.Add(v)
	}
	f.Add("/ok/path?x=1")
	f.Fuzz(func(t *testing.T, in string) { checkSameOrigin(t, in) })
}
