package redisstore

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Timeouts NewClient uses unless the URL sets its own (dial_timeout=,
// read_timeout=, write_timeout=, pool_timeout=, max_retries=,
// dialer_retries=). A session store is on every request's path: when Redis
// is unreachable, requests should fail within about two seconds, not hang.
const (
	DefaultDialTimeout  = time.Second
	DefaultReadTimeout  = time.Second
	DefaultWriteTimeout = time.Second
	DefaultPoolTimeout  = time.Second
	DefaultMaxRetries   = 1
)

// supportedForms is shown when a URL is not understood. It contains no part
// of the URL, which may hold a password.
const supportedForms = "expected redis://[user:password@]host[:port][/db], rediss:// (TLS), unix:///path/to/redis.sock, " +
	"redis+sentinel://[user:password@]sentinel[:26379][/db]?master_name=NAME[&addr=sentinel2:26379], " +
	"or redis+cluster://[user:password@]node[:6379][?addr=node2:6379] (rediss+sentinel and rediss+cluster for TLS)"

// CheckURL reports whether rawURL is a Redis URL that NewClient accepts,
// without connecting. Its message never contains the URL's password.
func CheckURL(rawURL string) error {
	_, err := parseURL(rawURL)
	return err
}

// clientOptions are the parsed options of one of the three kinds of
// client.
type clientOptions struct {
	single   *redis.Options
	failover *redis.FailoverOptions
	cluster  *redis.ClusterOptions
}

func (o *clientOptions) newClient() redis.UniversalClient {
	switch {
	case o.failover != nil:
		return redis.NewFailoverClient(o.failover)
	case o.cluster != nil:
		return redis.NewClusterClient(o.cluster)
	}
	return redis.NewClient(o.single)
}

// NewClient returns a go-redis client for rawURL. It does not connect:
// connections are made when needed, and re-made after Redis comes back.
// The accepted forms:
//
//	redis://[user:password@]host[:port][/db][?option=value...]     one node (port 6379)
//	rediss://...                                                    the same over TLS
//	unix://[user:password@]/path/to/redis.sock[?db=N]              one node, Unix socket
//	redis+sentinel://[user:password@]host[:port][/db]?master_name=NAME[&addr=host2:port...]
//	redis+cluster://[user:password@]host[:port][?addr=host2:port...]
//
// rediss+sentinel and rediss+cluster use TLS. For Sentinel, the hosts are
// the Sentinels (port 26379 unless given) and user:password authenticates
// to the Redis servers; if the Sentinels need their own credentials, add
// sentinel_username= and sentinel_password=. For Cluster, the hosts are
// seed nodes. Options are go-redis's, in snake case (dial_timeout=2s,
// pool_size=20, skip_verify=true, ...); unset timeouts default to the
// Default* constants above rather than go-redis's longer ones.
func NewClient(rawURL string) (redis.UniversalClient, error) {
	o, err := parseURL(rawURL)
	if err != nil {
		return nil, err
	}
	return o.newClient(), nil
}

// parseURL checks rawURL and returns its client's options.
func parseURL(rawURL string) (*clientOptions, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, errors.New("is not a valid URL; " + supportedForms)
	}
	password, _ := u.User.Password()
	redact := func(err error) error {
		msg := strings.TrimPrefix(err.Error(), "redis: ")
		if password != "" {
			msg = strings.ReplaceAll(msg, password, "xxxxx")
		}
		return errors.New(msg)
	}
	scheme, mode, _ := strings.Cut(u.Scheme, "+")
	if scheme != "redis" && scheme != "rediss" && !(scheme == "unix" && mode == "") {
		return nil, fmt.Errorf("scheme %q is not supported; %s", u.Scheme, supportedForms)
	}
	switch mode {
	case "":
		o, err := redis.ParseURL(rawURL)
		if err != nil {
			return nil, redact(err)
		}
		failFast(&o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.PoolTimeout, &o.MaxRetries, &o.DialerRetries)
		o.ContextTimeoutEnabled = true
		return &clientOptions{single: o}, nil

	case "sentinel":
		q := u.Query()
		if q.Get("master_name") == "" {
			return nil, errors.New("a Sentinel URL needs master_name=<the monitored master's name>")
		}
		sentinelUser, sentinelPassword := q.Get("sentinel_username"), q.Get("sentinel_password")
		q.Del("sentinel_username")
		q.Del("sentinel_password")
		user := u.User
		v := *u
		v.Scheme, v.User, v.RawQuery = scheme, nil, q.Encode()
		if v.Port() == "" && v.Hostname() != "" {
			v.Host = net.JoinHostPort(v.Hostname(), "26379")
		}
		o, err := redis.ParseFailoverURL(v.String())
		if err != nil {
			return nil, redact(err)
		}
		if user != nil {
			o.Username, o.Password = user.Username(), password
		}
		o.SentinelUsername, o.SentinelPassword = sentinelUser, sentinelPassword
		failFast(&o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.PoolTimeout, &o.MaxRetries, &o.DialerRetries)
		o.ContextTimeoutEnabled = true
		return &clientOptions{failover: o}, nil

	case "cluster":
		if p := strings.Trim(u.Path, "/"); p != "" && p != "0" {
			return nil, errors.New("Redis Cluster has only database 0: remove the path /" + p)
		}
		v := *u
		v.Scheme, v.Path, v.RawPath = scheme, "", ""
		o, err := redis.ParseClusterURL(v.String())
		if err != nil {
			return nil, redact(err)
		}
		failFast(&o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.PoolTimeout, &o.MaxRetries, &o.DialerRetries)
		o.ContextTimeoutEnabled = true
		return &clientOptions{cluster: o}, nil
	}
	return nil, fmt.Errorf("scheme %q is not supported; %s", u.Scheme, supportedForms)
}

// failFast sets the timeouts and retries the URL left unset.
func failFast(dial, read, write, pool *time.Duration, retries, dialRetries *int) {
	setDuration := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	setDuration(dial, DefaultDialTimeout)
	setDuration(read, DefaultReadTimeout)
	setDuration(write, DefaultWriteTimeout)
	setDuration(pool, DefaultPoolTimeout)
	if *retries == 0 {
		*retries = DefaultMaxRetries
	}
	if *dialRetries == 0 {
		*dialRetries = 1 // one attempt per dial; MaxRetries retries the command
	}
}
