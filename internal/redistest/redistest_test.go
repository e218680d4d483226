package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// The module's go.sum lacks testify's transitive dependencies, so these
// tests use small stdlib helpers instead.

func noErr(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
}

func check(t *testing.T, ok bool, format string, args ...any) {
	t.Helper()
	if !ok {
		t.Errorf(format, args...)
	}
}

func must(t *testing.T, ok bool, format string, args ...any) {
	t.Helper()
	if !ok {
		t.Fatalf(format, args...)
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// processGone reports whether pid no longer exists.
func processGone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

func TestStartSetGet(t *testing.T) {
	t.Parallel()
	s := Start(t)
	must(t, s.Port() != sharedRedisPort, "Start chose the shared port %d", s.Port())
	must(t, s.Addr() == fmt.Sprintf("127.0.0.1:%d", s.Port()), "Addr() = %q, Port() = %d", s.Addr(), s.Port())
	must(t, s.Pid() > 0, "Pid() = %d", s.Pid())

	ctx := ctxT(t)
	c := s.Client(t)
	noErr(t, c.Set(ctx, "k", "v", 0).Err())
	got, err := c.Get(ctx, "k").Result()
	noErr(t, err)
	check(t, got == "v", "GET k = %q, want v", got)

	// The client really talks to our process, not to some other server.
	info, err := c.Info(ctx, "server").Result()
	noErr(t, err)
	check(t, strings.Contains(info, fmt.Sprintf("process_id:%d\r\n", s.Pid())), "INFO does not show pid %d:\n%s", s.Pid(), info)
	check(t, strings.Contains(info, fmt.Sprintf("tcp_port:%d\r\n", s.Port())), "INFO does not show port %d:\n%s", s.Port(), info)
}

func TestStartExtraArgs(t *testing.T) {
	t.Parallel()
	s := Start(t, "--maxmemory", "2mb", "--maxmemory-policy", "allkeys-lru")
	for key, want := range map[string]string{
		"maxmemory":        "2097152",
		"maxmemory-policy": "allkeys-lru",
		"save":             "",
		"appendonly":       "no",
		"bind":             "127.0.0.1",
		"protected-mode":   "no",
		"dir":              s.Dir(),
	} {
		cfg, err := s.Client(t).ConfigGet(ctxT(t), key).Result()
		noErr(t, err)
		got, ok := cfg[key]
		check(t, ok && got == want, "CONFIG GET %s = %q (present %v), want %q", key, got, ok, want)
	}
}

func TestTwoServersDifferentPorts(t *testing.T) {
	t.Parallel()
	a, b := Start(t), Start(t)
	must(t, a.Port() != b.Port(), "both servers on port %d", a.Port())
	must(t, a.Pid() != b.Pid(), "both servers have pid %d", a.Pid())

	ctx := ctxT(t)
	noErr(t, a.Client(t).Set(ctx, "who", "a", 0).Err())
	noErr(t, b.Client(t).Set(ctx, "who", "b", 0).Err())
	got, err := a.Client(t).Get(ctx, "who").Result()
	noErr(t, err)
	check(t, got == "a", "server a has who=%q, want a", got)
}

func TestKillRestart(t *testing.T) {
	t.Parallel()
	s := Start(t)
	addr, port, oldPid := s.Addr(), s.Port(), s.Pid()
	ctx := ctxT(t)
	c := s.Client(t)
	noErr(t, c.Ping(ctx).Err())

	s.Kill()
	check(t, processGone(oldPid), "pid %d still exists after Kill", oldPid)
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		_ = conn.Close()
	}
	must(t, err != nil, "%s still reachable after Kill", addr)
	must(t, c.Ping(ctx).Err() != nil, "PING succeeded after Kill")
	s.Kill() // idempotent

	s.Restart(t)
	check(t, s.Addr() == addr, "Addr() after Restart = %q, want %q", s.Addr(), addr)
	check(t, s.Port() == port, "Port() after Restart = %d, want %d", s.Port(), port)
	check(t, s.Pid() != oldPid, "Pid() unchanged after Restart")
	// The old client reconnects to the same address.
	noErr(t, c.Set(ctx, "after", "restart", 0).Err())
	got, err := s.Client(t).Get(ctx, "after").Result()
	noErr(t, err)
	check(t, got == "restart", "GET after = %q", got)

	// Restart without a prior Kill also works and stops the old process.
	pid := s.Pid()
	s.Restart(t)
	check(t, processGone(pid), "pid %d still exists after Restart", pid)
	noErr(t, c.Ping(ctx).Err())
}

func TestCleanupKillsProcesses(t *testing.T) {
	t.Parallel()
	lookBinary(t, "redis-server") // skip the parent too when redis is missing
	lookBinary(t, "redis-cli")
	var pids []int
	t.Run("inner", func(t *testing.T) {
		s := Start(t)
		s.Client(t) // a client whose cleanup must run before the kill
		pids = append(pids, s.Pid())
		must(t, !processGone(s.Pid()), "pid %d missing while running", s.Pid())
		c := StartCluster(t, 3, 0)
		for _, n := range c.Nodes() {
			pids = append(pids, n.Pid())
		}
		noErr(t, c.Client(t).Ping(ctxT(t)).Err())
	})
	must(t, len(pids) == 4, "collected pids %v", pids)
	for _, pid := range pids {
		check(t, processGone(pid), "pid %d still exists after cleanup", pid)
	}
}

func TestFreePort(t *testing.T) {
	t.Parallel()
	for i := 0; i < 50; i++ {
		p, err := freePort(true)
		noErr(t, err)
		must(t, p != sharedRedisPort && p <= 55535, "freePort(true) = %d", p)
	}
}

func TestStartFailureReportsLog(t *testing.T) {
	t.Parallel()
	lookBinary(t, "redis-server") // skip here, not in the helper goroutine
	// An invalid argument makes every attempt fail; Start must Fatal with
	// the log tail, which we observe through a fake TB.
	ft := &fakeTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Start(ft, "--no-such-option", "x")
	}()
	<-done
	must(t, ft.failed, "Start should have failed")
	t.Logf("Start failed as expected with:\n%s", ft.msg)
	check(t, strings.Contains(ft.msg, "did not start after 5 attempts"), "message: %s", ft.msg)
	check(t, strings.Contains(ft.msg, "no-such-option"), "log tail missing from message: %s", ft.msg)
}

// fakeTB records Fatalf and ends the goroutine like the real one would.
type fakeTB struct {
	testing.TB
	failed bool
	msg    string
}

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failed = true
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestCluster3x0(t *testing.T) {
	t.Parallel()
	c := StartCluster(t, 3, 0)
	must(t, len(c.Nodes()) == 3 && len(c.Addrs()) == 3, "Nodes %d, Addrs %v", len(c.Nodes()), c.Addrs())
	ports := map[int]bool{}
	for _, n := range c.Nodes() {
		must(t, n.Port() != sharedRedisPort && n.Port() <= 55535, "node port %d", n.Port())
		ports[n.Port()] = true
	}
	must(t, len(ports) == 3, "ports not distinct: %v", c.Addrs())

	ctx := ctxT(t)
	cc := c.Client(t)
	slots := map[int64]bool{}
	for i := 0; i < 200; i++ {
		key := fmt.Sprintf("key:%d", i)
		noErr(t, cc.Set(ctx, key, i, 0).Err())
		slot, err := cc.ClusterKeySlot(ctx, key).Result()
		noErr(t, err)
		slots[slot] = true
	}
	for i := 0; i < 200; i++ {
		got, err := cc.Get(ctx, fmt.Sprintf("key:%d", i)).Int()
		noErr(t, err)
		must(t, got == i, "key:%d = %d", i, got)
	}
	check(t, len(slots) > 150, "keys spread over only %d slots", len(slots))

	// Every master holds some of the keys and reports a healthy cluster.
	for _, n := range c.Nodes() {
		size, err := n.Client(t).DBSize(ctx).Result()
		noErr(t, err)
		check(t, size > 0, "node %s holds no keys", n.Addr())
		info, err := n.Client(t).ClusterInfo(ctx).Result()
		noErr(t, err)
		check(t, strings.Contains(info, "cluster_state:ok"), "node %s CLUSTER INFO:\n%s", n.Addr(), info)
	}
}

func TestCluster3x1(t *testing.T) {
	t.Parallel()
	c := StartCluster(t, 3, 1)
	nodes := c.Nodes()
	must(t, len(nodes) == 6, "got %d nodes", len(nodes))

	ctx := ctxT(t)
	out, err := nodes[0].Client(t).ClusterNodes(ctx).Result()
	noErr(t, err)
	check(t, strings.Count(out, "slave") == 3, "want 3 replicas in CLUSTER NODES:\n%s", out)
	check(t, len(strings.Split(strings.TrimSpace(out), "\n")) == 6, "want 6 nodes in CLUSTER NODES:\n%s", out)

	// Addrs/Nodes list masters first.
	for i, n := range nodes {
		role, err := n.Client(t).Do(ctx, "ROLE").Slice()
		noErr(t, err)
		want := "master"
		if i >= 3 {
			want = "slave"
		}
		check(t, role[0] == want, "node %d (%s) has role %v, want %s", i, n.Addr(), role[0], want)
	}

	cc := c.Client(t)
	for i := 0; i < 50; i++ {
		noErr(t, cc.Set(ctx, fmt.Sprintf("k%d", i), i, 0).Err())
	}
	var total atomic.Int64
	err = cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		n, err := m.DBSize(ctx).Result()
		total.Add(n)
		return err
	})
	noErr(t, err)
	check(t, total.Load() == 50, "masters hold %d keys, want 50", total.Load())
}
