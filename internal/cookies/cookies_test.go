package cookies

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestGetFindsExactName(t *testing.T) {
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Add("Cookie", "a.1=x; a=first; a=second")
	r.Header.Add("Cookie", "b=\"quoted\"")
	if v, ok := Get(r, "a"); !ok || v != "first" {
		t.Errorf("a = %q, %v", v, ok)
	}
	if v, ok := Get(r, "b"); !ok || v != "quoted" {
		t.Errorf("b = %q, %v", v, ok)
	}
	if _, ok := Get(r, "c"); ok {
		t.Error("found a missing cookie")
	}
	if n := testing.AllocsPerRun(100, func() { Get(r, "b") }); n != 0 {
		t.Errorf("Get allocates %v times", n)
	}
}

// replay turns a response's Set-Cookie headers into the next request's
// Cookie header, as a browser would.
func replay(t *testing.T, rec *httptest.ResponseRecorder, jar map[string]string) *http.Request {
	t.Helper()
	for _, c := range rec.Result().Cookies() {
		if c.MaxAge < 0 {
			delete(jar, c.Name)
		} else {
			if len(c.Name)+len(c.Value) > 4000 {
				t.Fatalf("cookie %s is %d bytes", c.Name, len(c.Name)+len(c.Value))
			}
			jar[c.Name] = c.Value
		}
	}
	r := httptest.NewRequest("GET", "/", nil)
	for k, v := range jar {
		r.AddCookie(&http.Cookie{Name: k, Value: v})
	}
	return r
}

func TestChunkedRoundTripAndStaleChunksCleared(t *testing.T) {
	jar := map[string]string{}
	base := http.Cookie{Name: "s", Path: "/"}
	big := strings.Repeat("abcdefghij", 1000) // 10,000 bytes: 3 chunks
	rec := httptest.NewRecorder()
	SetChunked(rec, httptest.NewRequest("GET", "/", nil), base, big)
	r := replay(t, rec, jar)
	if len(jar) != 3 {
		t.Fatalf("want 3 cookies, got %d", len(jar))
	}
	if v, ok := GetChunked(r, "s"); !ok || v != big {
		t.Fatalf("round trip failed: %v, %d bytes", ok, len(v))
	}
	// A smaller value replaces it and clears the chunks it no longer uses.
	rec = httptest.NewRecorder()
	SetChunked(rec, r, base, "small")
	r = replay(t, rec, jar)
	if len(jar) != 1 {
		t.Fatalf("stale chunks left: %v", jar)
	}
	if v, ok := GetChunked(r, "s"); !ok || v != "small" {
		t.Fatalf("got %q %v", v, ok)
	}
	// Delete clears everything.
	rec = httptest.NewRecorder()
	SetChunked(rec, r, base, big)
	r = replay(t, rec, jar)
	rec = httptest.NewRecorder()
	DeleteChunked(rec, r, base)
	replay(t, rec, jar)
	if len(jar) != 0 {
		t.Fatalf("cookies left after delete: %v", jar)
	}
}

func TestGetChunkedMissingChunkMeansNoValue(t *testing.T) {
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Cookie", "s=3.aaa; s.1=bbb")
	if _, ok := GetChunked(r, "s"); ok {
		t.Error("a value with a missing chunk was accepted")
	}
	r.Header.Set("Cookie", "s=999.aaa")
	if _, ok := GetChunked(r, "s"); ok {
		t.Error("an absurd chunk count was accepted")
	}
}
