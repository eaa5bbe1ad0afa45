package redisstore

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/oidcauth/oidcauth/internal/testenv"
)

// exercise runs the store's whole life cycle through client.
func exercise(t *testing.T, client redis.UniversalClient) {
	t.Helper()
	ctx := context.Background()
	s, err := New(client, Options{Secrets: []string{secretA}, IdleTimeout: 30 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	var tokens []string
	for i := range 6 {
		token, err := s.Create(ctx, Entry{Data: fmt.Appendf(nil, "session %d", i), Subject: "alice", SID: fmt.Sprint("sid-", i%3)})
		if err != nil {
			t.Fatal(err)
		}
		tokens = append(tokens, token)
	}
	for i, token := range tokens {
		e, err := s.Load(ctx, token)
		if err != nil || e == nil || string(e.Data) != fmt.Sprint("session ", i) {
			t.Fatalf("Load %d = %+v, %v", i, e, err)
		}
	}
	// An idle refresh: make one session look a few minutes unused.
	if err := client.PExpire(ctx, s.keyOf(tokens[0]), 25*time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if e, err := s.Load(ctx, tokens[0]); e == nil || err != nil {
		t.Fatalf("Load = %v, %v", e, err)
	}
	if d := client.PTTL(ctx, s.keyOf(tokens[0])).Val(); d < 29*time.Minute {
		t.Fatalf("TTL %v not refreshed", d)
	}
	if err := s.Delete(ctx, tokens[5]); err != nil { // sid-2
		t.Fatal(err)
	}
	if n, err := s.DeleteBySID(ctx, "sid-2"); n != 1 || err != nil {
		t.Fatalf("DeleteBySID = %d, %v; want 1", n, err)
	}
	if n, err := s.DeleteBySubject(ctx, "alice"); n != 4 || err != nil {
		t.Fatalf("DeleteBySubject = %d, %v; want 4", n, err)
	}
	for i, token := range tokens {
		if e, err := s.Load(ctx, token); e != nil || err != nil {
			t.Fatalf("session %d survived: %v", i, err)
		}
	}
}

func TestSentinel(t *testing.T) {
	master := testenv.StartRedis(t)
	sentinel := testenv.StartRedisSentinel(t, master, "sessions")
	client, err := NewClient("redis+sentinel://" + sentinel.Addr() + "?master_name=sessions")
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	exercise(t, client)
}

func TestCluster(t *testing.T) {
	nodes := testenv.StartRedisCluster(t, 3)
	client, err := NewClient(fmt.Sprintf("redis+cluster://%s?addr=%s&addr=%s", nodes[0].Addr(), nodes[1].Addr(), nodes[2].Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	exercise(t, client)
}
