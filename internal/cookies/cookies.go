// Package cookies reads cookies without parsing every cookie of a request,
// and splits values too large for one cookie across numbered cookies.
package cookies

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// MaxChunk is the most value bytes put in one cookie. Browsers keep cookies
// of up to 4096 bytes counting name, value and attributes; this leaves room
// for the rest.
const MaxChunk = 3800

// maxChunks bounds how many chunks are read or written (about 30 KB), so a
// hostile request cannot make the server assemble arbitrary amounts.
const maxChunks = 8

// Get returns the value of the first cookie called name in r's Cookie
// headers. It allocates nothing.
func Get(r *http.Request, name string) (string, bool) {
	for _, line := range r.Header["Cookie"] {
		for len(line) > 0 {
			var part string
			part, line, _ = strings.Cut(line, ";")
			part = strings.TrimLeft(part, " \t")
			if len(part) > len(name) && part[len(name)] == '=' && part[:len(name)] == name {
				v := strings.TrimRight(part[len(name)+1:], " \t")
				if len(v) > 1 && v[0] == '"' && v[len(v)-1] == '"' {
					v = v[1 : len(v)-1]
				}
				return v, true
			}
		}
	}
	return "", false
}

// ChunkName is the name of chunk i (i ≥ 1) of the cookie called name.
func ChunkName(name string, i int) string { return name + "." + strconv.Itoa(i) }

// GetChunked reassembles a value written by SetChunked. A first chunk
// "N.data" announces N chunks in all; a missing chunk means no value.
func GetChunked(r *http.Request, name string) (string, bool) {
	v, ok := Get(r, name)
	if !ok {
		return "", false
	}
	dot := strings.IndexByte(v, '.')
	if dot < 0 {
		return v, true
	}
	n, err := strconv.Atoi(v[:dot])
	if err != nil || n < 2 || n > maxChunks {
		return "", false
	}
	var b strings.Builder
	b.Grow(n * MaxChunk)
	b.WriteString(v[dot+1:])
	for i := 1; i < n; i++ {
		c, ok := Get(r, ChunkName(name, i))
		if !ok {
			return "", false
		}
		b.WriteString(c)
	}
	return b.String(), true
}

// SetChunked writes value as the cookie base.Name, split into numbered
// chunks when it is longer than MaxChunk, and expires chunks left over from
// a larger earlier value. value must not contain '.' (base64url does not).
// It reports false, writing nothing, when value needs more chunks than are
// allowed.
func SetChunked(w http.ResponseWriter, r *http.Request, base http.Cookie, value string) bool {
	n := (len(value) + MaxChunk - 1) / MaxChunk
	if n > maxChunks {
		return false
	}
	if n <= 1 {
		c := base
		c.Value = value
		http.SetCookie(w, &c)
	} else {
		for i := range n {
			c := base
			part := value[i*MaxChunk : min(len(value), (i+1)*MaxChunk)]
			if i == 0 {
				c.Value = strconv.Itoa(n) + "." + part
			} else {
				c.Name = ChunkName(base.Name, i)
				c.Value = part
			}
			http.SetCookie(w, &c)
		}
	}
	clearChunks(w, r, base, max(n, 1))
	return true
}

// DeleteChunked expires the cookie base.Name and all its chunks.
func DeleteChunked(w http.ResponseWriter, r *http.Request, base http.Cookie) {
	Delete(w, base)
	clearChunks(w, r, base, 1)
}

// Delete expires the cookie base.Name.
func Delete(w http.ResponseWriter, base http.Cookie) {
	base.Value = ""
	base.MaxAge = -1
	base.Expires = time.Unix(1, 0)
	http.SetCookie(w, &base)
}

// clearChunks expires chunks from 'from' on that the request still carries.
func clearChunks(w http.ResponseWriter, r *http.Request, base http.Cookie, from int) {
	for i := from; i < maxChunks; i++ {
		name := ChunkName(base.Name, i)
		if _, ok := Get(r, name); ok {
			c := base
			c.Name = name
			Delete(w, c)
		}
	}
}
