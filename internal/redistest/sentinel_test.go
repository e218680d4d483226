package redistest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestSentinelConfig(t *testing.T) {
	t.Parallel()
	conf := string(sentinelConfig(26000, "/tmp/a dir", "mymaster", 7000, 2))
	for _, want := range []string{
		"port 26000\n",
		"bind 127.0.0.1\n",
		"protected-mode no\n",
		"daemonize no\n",
		"dir \"/tmp/a dir\"\n",
		"sentinel monitor mymaster 127.0.0.1 7000 2\n",
		"sentinel down-after-milliseconds mymaster 1000\n",
		"sentinel failover-timeout mymaster 5000\n",
		"sentinel parallel-syncs mymaster 1\n",
	} {
		check(t, strings.Contains(conf, want), "config lacks %q:\n%s", want, conf)
	}
	// "sentinel monitor" must precede the per-master settings.
	check(t, strings.Index(conf, "sentinel monitor") < strings.Index(conf, "sentinel down-after"),
		"monitor line after per-master settings:\n%s", conf)
}

func TestSentinelFailover(t *testing.T) {
	t.Parallel()
	var pids []int
	t.Run("deployment", func(t *testing.T) {
		began := time.Now()
		s := StartSentinel(t, "mymaster", 1, 3)
		t.Logf("StartSentinel took %s", time.Since(began).Round(time.Millisecond))
		for _, n := range append(s.Sentinels(), s.data...) {
			pids = append(pids, n.Pid())
			must(t, n.Port() != sharedRedisPort, "a process uses the shared port %d", n.Port())
		}

		must(t, s.MasterName() == "mymaster", "MasterName() = %q", s.MasterName())
		must(t, len(s.SentinelAddrs()) == 3, "SentinelAddrs() = %v", s.SentinelAddrs())
		master := s.Master()
		replicas := s.Replicas()
		must(t, master == s.data[0], "Master() = %s, want the started master %s", master.Addr(), s.data[0].Addr())
		must(t, len(replicas) == 1 && replicas[0] == s.data[1], "Replicas() = %v", replicas)
		replica := replicas[0]

		ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
		defer cancel()
		fc := redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName:    s.MasterName(),
			SentinelAddrs: s.SentinelAddrs(),
			DialTimeout:   time.Second,
			ReadTimeout:   time.Second,
			WriteTimeout:  time.Second,
		})
		t.Cleanup(func() { _ = fc.Close() })

		noErr(t, fc.Set(ctx, "k", "v1", 0).Err())
		got, err := fc.Get(ctx, "k").Result()
		noErr(t, err)
		must(t, got == "v1", "failover client GET k = %q", got)
		got, err = master.Client(t).Get(ctx, "k").Result()
		noErr(t, err)
		must(t, got == "v1", "master GET k = %q", got)

		// Replication works: WAIT acknowledges the write on the replica.
		n, err := fc.Do(ctx, "WAIT", 1, 5000).Int()
		noErr(t, err)
		must(t, n == 1, "WAIT 1 5000 = %d replicas", n)
		rc := replica.Client(t)
		got, err = rc.Get(ctx, "k").Result()
		noErr(t, err)
		must(t, got == "v1", "replica GET k = %q", got)

		old, oldPid := master.Addr(), master.Pid()
		killed := time.Now()
		master.Kill()
		must(t, processGone(oldPid), "master pid %d still exists after Kill", oldPid)

		addr := s.WaitFailover(t, old, 30*time.Second)
		t.Logf("sentinels agreed on new master %s %s after the kill", addr, time.Since(killed).Round(time.Millisecond))
		must(t, addr == replica.Addr(), "WaitFailover = %s, want the replica %s", addr, replica.Addr())
		must(t, s.Master() == replica, "Master() = %s after failover, want %s", s.Master().Addr(), replica.Addr())
		rs := s.Replicas()
		must(t, len(rs) == 1 && rs[0] == master, "Replicas() after failover = %v, want the old master", rs)

		// The failover client follows the promotion within 15 s.
		deadline := time.Now().Add(15 * time.Second)
		var lastErr error
		for {
			actx, acancel := context.WithTimeout(ctx, 2*time.Second)
			lastErr = fc.Set(actx, "k2", "v2", 0).Err()
			if lastErr == nil {
				got, lastErr = fc.Get(actx, "k2").Result()
				if lastErr == nil && got != "v2" {
					t.Fatalf("failover client GET k2 = %q after SET v2", got)
				}
			}
			acancel()
			if lastErr == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("failover client still failing 15 s after the failover: %v", lastErr)
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Logf("failover client working %s after the kill", time.Since(killed).Round(time.Millisecond))

		// It writes to the promoted replica, which still has the replicated key.
		got, err = rc.Get(ctx, "k2").Result()
		noErr(t, err)
		check(t, got == "v2", "promoted replica GET k2 = %q", got)
		got, err = fc.Get(ctx, "k").Result()
		noErr(t, err)
		check(t, got == "v1", "failover client GET k = %q after failover", got)
	})

	// The subtest's cleanups killed every process it started.
	must(t, len(pids) == 5, "collected %d pids, want 5", len(pids))
	for _, pid := range pids {
		check(t, processGone(pid), "pid %d still exists after cleanup", pid)
	}
}
