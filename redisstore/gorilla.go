package redisstore

import (
	"bytes"
	"encoding/gob"
	"fmt"
	"net/http"
	"time"

	"github.com/gorilla/sessions"
)

var _ sessions.Store = (*Store)(nil)

// Get returns the session called name for r, loaded at most once per
// request (gorilla's registry). See New.
func (s *Store) Get(r *http.Request, name string) (*sessions.Session, error) {
	return sessions.GetRegistry(r).Get(s, name)
}

// New returns the session that r's cookie called name refers to, or a new,
// empty one when there is none or it is invalid, forged (refused without
// contacting Redis) or expired. An error means Redis could not answer; the
// session returned with it is new and empty, and the caller must not treat
// the request as signed in.
//
// Values are encoded with encoding/gob: register the types you store in
// them with gob.Register, as for gorilla's own stores.
func (s *Store) New(r *http.Request, name string) (*sessions.Session, error) {
	sess := sessions.NewSession(s, name)
	opts := s.cookie
	sess.Options = &opts
	sess.IsNew = true
	c, err := r.Cookie(name)
	if err != nil {
		return sess, nil
	}
	id := s.verify(c.Value)
	if id == "" {
		return sess, nil
	}
	e, err := s.load(r.Context(), id)
	if err != nil || e == nil {
		return sess, err
	}
	values := make(map[any]any)
	if gob.NewDecoder(bytes.NewReader(e.Data)).Decode(&values) != nil {
		return sess, nil
	}
	sess.Values = values
	sess.ID = id
	sess.IsNew = false
	return sess, nil
}

// Save writes sess to Redis and sets its cookie. A new session gets a new
// random id; an existing one is rewritten and its lifetime starts again,
// as with gorilla's other stores (capped by Options.MaxAge). A session
// that has meanwhile ended in Redis is not re-created: Save returns
// ErrSessionEnded. With sess.Options.MaxAge < 0, Save deletes the session
// and expires its cookie.
func (s *Store) Save(r *http.Request, w http.ResponseWriter, sess *sessions.Session) error {
	opts := sess.Options
	if opts == nil {
		o := s.cookie
		opts = &o
	}
	ctx := r.Context()
	if opts.MaxAge < 0 {
		if len(sess.ID) == idLen {
			if err := s.deleteID(ctx, sess.ID); err != nil {
				return err
			}
		}
		http.SetCookie(w, sessions.NewCookie(sess.Name(), "", opts))
		return nil
	}
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(sess.Values); err != nil {
		return fmt.Errorf("redisstore: encoding the session's values: %w", err)
	}
	lifetime := s.maxAge
	if opts.MaxAge > 0 {
		lifetime = time.Duration(opts.MaxAge) * time.Second
	}
	e := Entry{Data: buf.Bytes(), ExpiresAt: s.now().Add(lifetime)}
	if len(sess.ID) != idLen {
		id := newID()
		if err := s.put(ctx, id, &e, false); err != nil {
			return err
		}
		sess.ID = id
	} else if err := s.put(ctx, sess.ID, &e, true); err != nil {
		return err
	}
	http.SetCookie(w, sessions.NewCookie(sess.Name(), s.sealer.Sign(sess.ID, s.signCtx), opts))
	return nil
}
