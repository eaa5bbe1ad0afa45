package redirect

import (
	"net/url"
	"testing"
)

func TestSafePathKeepsLocalPaths(t *testing.T) {
	for _, p := range []string{"/", "/private", "/a/b?c=d&e=%2Ff", "/docs/1#top", "/caf%C3%A9", "/search?q=a%20b", "/a/./b", "/x?next=//evil.example"} {
		if got := SafePath(p); got != p {
			t.Errorf("SafePath(%q) = %q, want it kept", p, got)
		}
	}
}

func TestSafePathRefusesOtherOrigins(t *testing.T) {
	for _, p := range []string{
		"", "private", "https://evil.example", "http:/evil.example", "//evil.example", "///evil.example",
		"/\\evil.example", "\\\\evil.example", "/\\/evil.example", "/\t/evil.example", "/\n/evil.example",
		"/\r\n/evil.example", " /evil", "/%2F/evil.example", "/%2f%2fevil.example", "/%5Cevil.example",
		"/%252F%252Fevil.example", "/%25252F/evil.example", "/%09/evil.example", "/%0a/evil.example",
		"javascript:alert(1)", "/\u2215evil.example", "/\uff0fevil.example", "/x\x00", "/x\x7f",
		"/%", "/%zz", "/a b", "data:text/html,hi", "/ /evil.example", "/\\x",
	} {
		if got := SafePath(p); got != "/" {
			t.Errorf("SafePath(%q) = %q, want /", p, got)
		}
	}
}

// TestSafePathResolvesOnOrigin checks the property a browser cares about:
// whatever SafePath returns resolves, against the app's URL, to the app's
// own origin.
func TestSafePathResolvesOnOrigin(t *testing.T) {
	base, _ := url.Parse("https://app.example/some/page")
	for _, p := range []string{"/ok", "//evil", "/..//evil", "/.//evil", "/%2e%2e//evil", "/a/../../evil"} {
		u, err := base.Parse(SafePath(p))
		if err != nil || u.Host != "app.example" || u.Scheme != "https" {
			t.Errorf("SafePath(%q) resolves to %v (%v)", p, u, err)
		}
	}
}
