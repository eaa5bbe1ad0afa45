package redisstore

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const pw = "s3cr3t-Pa55"

func TestNewClientForms(t *testing.T) {
	t.Run("one node", func(t *testing.T) {
		c, err := NewClient("redis://user:" + pw + "@cache.internal:6380/2")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		o := c.(*redis.Client).Options()
		if o.Addr != "cache.internal:6380" || o.DB != 2 || o.Username != "user" || o.Password != pw || o.TLSConfig != nil {
			t.Fatalf("options %+v", o)
		}
		if o.DialTimeout != DefaultDialTimeout || o.ReadTimeout != DefaultReadTimeout || o.MaxRetries != DefaultMaxRetries || !o.ContextTimeoutEnabled {
			t.Fatalf("timeouts: dial %v read %v retries %d ctx %v", o.DialTimeout, o.ReadTimeout, o.MaxRetries, o.ContextTimeoutEnabled)
		}
	})
	t.Run("TLS and explicit timeouts", func(t *testing.T) {
		c, err := NewClient("rediss://cache.example.com?dial_timeout=3s&read_timeout=2s&max_retries=4")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		o := c.(*redis.Client).Options()
		if o.Addr != "cache.example.com:6379" || o.TLSConfig == nil || o.TLSConfig.ServerName != "cache.example.com" {
			t.Fatalf("options %+v", o)
		}
		if o.DialTimeout != 3*time.Second || o.ReadTimeout != 2*time.Second || o.MaxRetries != 4 {
			t.Fatalf("the URL's timeouts were overridden: %v %v %d", o.DialTimeout, o.ReadTimeout, o.MaxRetries)
		}
	})
	t.Run("unix socket", func(t *testing.T) {
		c, err := NewClient("unix:///run/redis/redis.sock?db=1")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if o := c.(*redis.Client).Options(); o.Network != "unix" || o.Addr != "/run/redis/redis.sock" || o.DB != 1 {
			t.Fatalf("options %+v", o)
		}
	})
	t.Run("sentinel", func(t *testing.T) {
		raw := "redis+sentinel://:" + pw + "@s1.internal/3?master_name=mymaster&addr=s2.internal:26380&sentinel_username=sen&sentinel_password=sentinel-pw"
		po, err := parseURL(raw)
		if err != nil {
			t.Fatal(err)
		}
		o := po.failover
		if o == nil || o.MasterName != "mymaster" || o.DB != 3 || !slices.Equal(o.SentinelAddrs, []string{"s1.internal:26379", "s2.internal:26380"}) {
			t.Fatalf("options %+v", o)
		}
		// user:password is the data nodes'; the Sentinels' are separate.
		if o.Username != "" || o.Password != pw || o.SentinelUsername != "sen" || o.SentinelPassword != "sentinel-pw" {
			t.Fatalf("credentials: %q %q / sentinel %q %q", o.Username, o.Password, o.SentinelUsername, o.SentinelPassword)
		}
		if o.TLSConfig != nil || o.ReadTimeout != DefaultReadTimeout || !o.ContextTimeoutEnabled {
			t.Fatalf("options %+v", o)
		}
		tls, err := parseURL("rediss+sentinel://s1.internal?master_name=m")
		if err != nil || tls.failover.TLSConfig == nil || tls.failover.SentinelPassword != "" {
			t.Fatalf("rediss+sentinel: %+v %v", tls, err)
		}
		c, err := NewClient(raw)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	})
	t.Run("cluster", func(t *testing.T) {
		c, err := NewClient("rediss+cluster://:" + pw + "@n1.internal:7000?addr=n2.internal:7000&addr=n3.internal:7000")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		o := c.(*redis.ClusterClient).Options()
		if len(o.Addrs) != 3 || o.Password != pw || o.TLSConfig == nil || o.ReadTimeout != DefaultReadTimeout || !o.ContextTimeoutEnabled {
			t.Fatalf("options %+v", o)
		}
	})
}

func TestCheckURLRefusesWithoutEchoingThePassword(t *testing.T) {
	for raw, want := range map[string]string{
		"http://:" + pw + "@host":                                   `scheme "http" is not supported`,
		"redis://:" + pw + "@host:port":                             "is not a valid URL",
		"redis://:" + pw + "@host\x7f":                              "is not a valid URL",
		"redis://:" + pw + "@host/notadb":                           "invalid database number",
		"redis://:" + pw + "@host?max_retries=" + pw:                "invalid max_retries",
		"redis://:" + pw + "@host?bogus=1":                          "unexpected option: bogus",
		"redis+sentinel://:" + pw + "@host":                         "needs master_name",
		"redis+sentinel://:" + pw + "@host?master_name=m&addr=nope": "unable to parse addr param",
		"redis+cluster://:" + pw + "@host/1":                        "only database 0",
		"redis+cluster://:" + pw + "@host?db=1":                     "unexpected option: db",
		"redis+other://:" + pw + "@host":                            `scheme "redis+other" is not supported`,
		"unix+cluster:///sock":                                      "is not supported",
		"":                                                          "is not supported",
	} {
		err := CheckURL(raw)
		if err == nil {
			t.Errorf("%q accepted", raw)
			continue
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v; want %q", raw, err, want)
		}
		if strings.Contains(err.Error(), pw) {
			t.Errorf("%q: the message shows the password: %v", raw, err)
		}
	}
	for _, ok := range []string{
		"redis://localhost:6379", "redis://:" + pw + "@10.0.0.1:6379/0", "rediss://user:" + pw + "@host:6380",
		"redis+sentinel://s1:26379?master_name=m", "rediss+sentinel://s1?master_name=m&addr=s2:26379",
		"redis+cluster://n1:7000?addr=n2:7000", "unix:///tmp/redis.sock",
	} {
		if err := CheckURL(ok); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
}
