package redisstore

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// browser carries cookies from responses to the next request.
type browser struct{ cookies map[string]*http.Cookie }

func (b *browser) request() *http.Request {
	r := httptest.NewRequest("GET", "/", nil)
	for _, c := range b.cookies {
		r.AddCookie(c)
	}
	return r
}

func (b *browser) keep(rec *httptest.ResponseRecorder) {
	for _, c := range rec.Result().Cookies() {
		if c.MaxAge < 0 {
			delete(b.cookies, c.Name)
		} else {
			b.cookies[c.Name] = c
		}
	}
}

func TestGorillaStore(t *testing.T) {
	e := newEnv(t)
	s := e.store(Options{MaxAge: time.Hour})
	b := &browser{cookies: map[string]*http.Cookie{}}

	// No cookie: a new, empty session.
	sess, err := s.Get(b.request(), "app")
	if err != nil || !sess.IsNew || len(sess.Values) != 0 {
		t.Fatalf("Get = %+v, %v", sess, err)
	}
	sess.Values["n"] = 1
	sess.Values["who"] = "alice"
	rec := httptest.NewRecorder()
	if err := sess.Save(b.request(), rec); err != nil {
		t.Fatal(err)
	}
	b.keep(rec)
	c := b.cookies["app"]
	if c == nil || !c.HttpOnly || c.Path != "/" || c.SameSite != http.SameSiteLaxMode || c.MaxAge != 3600 {
		t.Fatalf("cookie %+v", c)
	}
	if s.verify(c.Value) != sess.ID {
		t.Fatal("the cookie does not carry the signed session id")
	}

	// The next request finds it, and an update keeps the id.
	sess, err = s.Get(b.request(), "app")
	if err != nil || sess.IsNew || sess.Values["n"] != 1 || sess.Values["who"] != "alice" {
		t.Fatalf("Get = %+v, %v", sess, err)
	}
	id := sess.ID
	sess.Values["n"] = 2
	rec = httptest.NewRecorder()
	if err := sess.Save(b.request(), rec); err != nil {
		t.Fatal(err)
	}
	b.keep(rec)
	sess, _ = s.New(b.request(), "app")
	if sess.ID != id || sess.Values["n"] != 2 {
		t.Fatalf("after update: id changed %v, values %v", sess.ID != id, sess.Values)
	}

	// A forged cookie is a new session, without asking Redis.
	e.counter.reset()
	forged := httptest.NewRequest("GET", "/", nil)
	forged.AddCookie(&http.Cookie{Name: "app", Value: newID() + "." + newID()})
	if sess, err := s.New(forged, "app"); err != nil || !sess.IsNew || len(sess.Values) != 0 {
		t.Fatalf("forged cookie: %+v, %v", sess, err)
	}
	if trips, cmds := e.counter.reset(); trips != 0 {
		t.Fatalf("a forged cookie cost %d round trips: %v", trips, cmds)
	}

	// Deleted elsewhere (say, a logout in another tab), it is not re-created.
	old := b.request()
	stale, _ := s.New(old, "app")
	if err := s.Delete(context.Background(), c.Value); err != nil {
		t.Fatal(err)
	}
	stale.Values["n"] = 3
	if err := s.Save(old, httptest.NewRecorder(), stale); !errors.Is(err, ErrSessionEnded) {
		t.Fatalf("Save of a deleted session = %v, want ErrSessionEnded", err)
	}
	if e.raw.Exists(context.Background(), s.keyOf(c.Value)).Val() != 0 {
		t.Fatal("Save re-created a deleted session")
	}

	// MaxAge < 0 deletes the session and its cookie.
	sess, _ = s.New(b.request(), "app")
	sess.Values["n"] = 4
	rec = httptest.NewRecorder()
	if err := s.Save(b.request(), rec, sess); err != nil {
		t.Fatal(err)
	}
	b.keep(rec)
	token := b.cookies["app"].Value
	e.mustLoad(s, token)
	sess.Options.MaxAge = -1
	rec = httptest.NewRecorder()
	if err := s.Save(b.request(), rec, sess); err != nil {
		t.Fatal(err)
	}
	b.keep(rec)
	if b.cookies["app"] != nil {
		t.Fatal("cookie not expired")
	}
	e.mustBeGone(s, token)

	// Redis down: an error, and an empty session.
	r := httptest.NewRequest("GET", "/", nil)
	r.AddCookie(&http.Cookie{Name: "app", Value: e.create(s, Entry{Data: []byte("x")})})
	e.redis.Kill()
	if sess, err := s.New(r, "app"); err == nil || !sess.IsNew || len(sess.Values) != 0 {
		t.Fatalf("Redis down: %+v, %v", sess, err)
	}
}
