package oidcauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Error is a failure with the HTTP status and the short, safe text the
// client sees. Err, the cause, is logged but never shown.
type Error struct {
	// Status is the HTTP status code of the response.
	Status int
	// Code is a short machine-readable reason, such as "invalid_state".
	Code string
	// Message is a human-readable explanation, safe to show.
	Message string
	// Err is the underlying cause, if any. It is logged, never shown.
	Err error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return e.Code + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// ErrorHandler writes the response for a failed request. err is usually an
// *Error; use errors.As to get its status.
type ErrorHandler func(w http.ResponseWriter, r *http.Request, err error)

// errorAs turns any error into an *Error, defaulting to a 500.
func errorAs(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Status: http.StatusInternalServerError, Code: "internal_error", Message: "Something went wrong.", Err: err}
}

var errorPage = template.Must(template.New("error").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Title}}</title>
<meta name="viewport" content="width=device-width,initial-scale=1">
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}h1{font-size:1.4rem}a{color:#0b5cad}</style>
</head><body><h1>{{.Title}}</h1><p>{{.Message}}</p><p><a href="/">Home</a></p></body></html>
`))

// DefaultErrorHandler writes a short HTML page to browsers and JSON
// ({"error": code, "error_description": message}) to everything else. The
// texts are escaped; causes are not shown.
func DefaultErrorHandler(w http.ResponseWriter, r *http.Request, err error) {
	e := errorAs(err)
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if wantsHTML(r) {
		h.Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(e.Status)
		_ = errorPage.Execute(w, struct{ Title, Message string }{http.StatusText(e.Status), e.Message})
		return
	}
	writeJSON(w, e.Status, map[string]string{"error": e.Code, "error_description": e.Message})
}

// fail logs err and hands it to the error handler.
func (a *Auth) fail(w http.ResponseWriter, r *http.Request, err error) {
	e := errorAs(err)
	if e.Code == storeUnavailable {
		// An outage fails every request: log it once per burst.
		if suppressed, ok := a.storeErrors.allow(a.now()); ok {
			a.log.ErrorContext(r.Context(), "oidcauth: session store unavailable; failing closed with 503",
				"code", e.Code, "cause", fmt.Sprint(e.Err), "suppressed_since_last", suppressed)
		}
		a.errorHandler(w, r, e)
		return
	}
	logFailure(a.log, r, e, "oidcauth: request failed")
	a.errorHandler(w, r, e)
}

// logFailure logs e for r: Info for a client's mistake, Error for a 5xx,
// with the status, code, request and cause, and any extra attributes.
func logFailure(log *slog.Logger, r *http.Request, e *Error, msg string, extra ...slog.Attr) {
	level := slog.LevelInfo
	if e.Status >= 500 {
		level = slog.LevelError
	}
	attrs := append([]slog.Attr{
		slog.Int("status", e.Status),
		slog.String("code", e.Code),
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path),
	}, extra...)
	if e.Err != nil {
		attrs = append(attrs, slog.String("cause", e.Err.Error()))
	}
	log.LogAttrs(r.Context(), level, msg, attrs...)
}

// wantsHTML reports whether r is from a browser that reads HTML.
func wantsHTML(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "text/html")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// storeUnavailable is the Error code of a session store that cannot answer.
const storeUnavailable = "session_store_unavailable"

// storeErrorLogEvery is how often a store outage is logged.
const storeErrorLogEvery = 10 * time.Second

// burstLog lets one log line through per interval and counts the rest.
type burstLog struct {
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

func (b *burstLog) allow(now time.Time) (suppressed int, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.last.IsZero() && now.Sub(b.last) < storeErrorLogEvery {
		b.suppressed++
		return 0, false
	}
	suppressed, b.suppressed, b.last = b.suppressed, 0, now
	return suppressed, true
}
