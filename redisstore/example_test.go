package redisstore_test

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/oidcauth/oidcauth/internal/testenv"
	"github.com/oidcauth/oidcauth/redisstore"
)

// TestMain gives the examples a Redis of their own at REDIS_URL. Without
// redis-server they are skipped (a failure under OIDCAUTH_STRICT=1); the
// tests start their own servers.
func TestMain(m *testing.M) {
	flag.Parse()
	r, err := testenv.LaunchRedis()
	if err != nil {
		if testenv.Strict() {
			fmt.Fprintln(os.Stderr, "examples:", err, "(OIDCAUTH_STRICT=1)")
			os.Exit(1)
		}
		fmt.Fprintln(os.Stderr, "examples:", err, "- skipping the examples")
		skip := "^Example"
		if s := flag.Lookup("test.skip").Value.String(); s != "" {
			skip = s + "|" + skip
		}
		_ = flag.Set("test.skip", skip)
		os.Exit(m.Run())
	}
	os.Setenv("REDIS_URL", r.URL())
	os.Setenv("SESSION_SECRET", "example-secret-0123456789-abcdefghijklmnop")
	code := m.Run()
	r.Close()
	os.Exit(code)
}

// A store used directly, as oidcauth does: the token goes into the
// client's cookie, the entry stays in Redis.
func Example() {
	client, err := redisstore.NewClient(os.Getenv("REDIS_URL")) // e.g. redis://localhost:6379/0
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	store, err := redisstore.New(client, redisstore.Options{
		Secrets:     []string{os.Getenv("SESSION_SECRET")},
		MaxAge:      8 * time.Hour,
		IdleTimeout: 30 * time.Minute,
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()

	token, err := store.Create(ctx, redisstore.Entry{Data: []byte("hello"), Subject: "user-1", SID: "idp-session-9"})
	if err != nil {
		log.Fatal(err)
	}
	e, err := store.Load(ctx, token) // one round trip
	if err != nil {
		log.Fatal(err) // Redis down: fail closed
	}
	fmt.Println(string(e.Data), e.Subject)

	// Back-channel logout names the IdP session: end every session of it.
	n, err := store.DeleteBySID(ctx, "idp-session-9")
	fmt.Println("ended:", n, err)
	e, _ = store.Load(ctx, token)
	fmt.Println("after logout:", e)
	// Output:
	// hello user-1
	// ended: 1 <nil>
	// after logout: <nil>
}

// The same store as a gorilla/sessions Store, for any net/http app.
func ExampleStore_Get() {
	client, err := redisstore.NewClient(os.Getenv("REDIS_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	store, err := redisstore.New(client, redisstore.Options{
		Secrets:   []string{os.Getenv("SESSION_SECRET")},
		KeyPrefix: "myapp:",
	})
	if err != nil {
		log.Fatal(err)
	}
	visits := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sess, err := store.Get(r, "myapp")
		if err != nil {
			http.Error(w, "sessions are unavailable", http.StatusServiceUnavailable)
			return
		}
		n, _ := sess.Values["visits"].(int)
		sess.Values["visits"] = n + 1
		if err := sess.Save(r, w); err != nil {
			http.Error(w, "sessions are unavailable", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "visit %d", n+1)
	})

	var cookie *http.Cookie
	for range 3 {
		req := httptest.NewRequest("GET", "/", nil)
		if cookie != nil {
			req.AddCookie(cookie)
		}
		rec := httptest.NewRecorder()
		visits.ServeHTTP(rec, req)
		cookie = rec.Result().Cookies()[0]
		fmt.Println(rec.Body.String())
	}
	// Output:
	// visit 1
	// visit 2
	// visit 3
}
