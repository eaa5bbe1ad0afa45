// Package redirect keeps post-login redirects on the application's own
// origin.
package redirect

import (
	"net/url"
	"strings"
)

// maxLen bounds the length of a kept path.
const maxLen = 2048

// SafePath returns next when it is a path on this origin that no browser
// can resolve to another origin, and "/" otherwise. It refuses, rather than
// repairs, anything doubtful: schemes, hosts ("//host"), backslashes,
// control characters (browsers drop tabs and newlines, which can turn
// "/\t/evil" into "//evil"), non-ASCII bytes, and percent-encodings that
// decode (once or several times) to any of those.
func SafePath(next string) string {
	if !safe(next) {
		return "/"
	}
	return next
}

func safe(next string) bool {
	if len(next) == 0 || len(next) > maxLen || !plainPath(next) {
		return false
	}
	for i := 0; i < len(next); i++ {
		if c := next[i]; c <= 0x20 || c >= 0x7f || c == '\\' {
			return false
		}
	}
	// An application may decode the path and redirect again: no decoding
	// of it may start like a protocol-relative URL either. Browsers drop
	// tabs and newlines, so they are dropped before looking.
	s := next
	for range 3 {
		dec, err := url.PathUnescape(s)
		if err != nil {
			return false
		}
		if dec == s {
			break
		}
		if !plainPath(strings.Map(dropControl, dec)) {
			return false
		}
		s = dec
	}
	u, err := url.Parse(next)
	return err == nil && u.Scheme == "" && u.Host == "" && u.User == nil && u.Opaque == ""
}

// plainPath reports whether s starts with one slash, not two and not a
// slash and a backslash.
func plainPath(s string) bool {
	return len(s) > 0 && s[0] == '/' && (len(s) == 1 || (s[1] != '/' && s[1] != '\\'))
}

func dropControl(r rune) rune {
	if r <= 0x20 || r == 0x7f {
		return -1
	}
	return r
}
