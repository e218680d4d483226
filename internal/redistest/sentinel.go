package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	// sentinelTimeout bounds each wait of StartSentinel (replication, then
	// sentinel agreement) and is WaitFailover's default.
	sentinelTimeout  = 30 * time.Second
	sentinelConfName = "sentinel.conf"
	// sentinelQueryTimeout bounds one round of queries to one process.
	sentinelQueryTimeout = time.Second
	sentinelPoll         = 100 * time.Millisecond
)

// dataServerArgs make replication start at once: Redis 7 waits 5 s by
// default before a diskless full sync, to batch replicas together.
var dataServerArgs = []string{"--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"}

// Sentinel is a Redis Sentinel deployment started by StartSentinel: one
// master, its replicas and the sentinels monitoring them. It is safe for
// concurrent use.
type Sentinel struct {
	name      string
	data      []*Server // the master at start first, then the replicas
	sentinels []*Server

	mu     sync.Mutex
	master *Server // the master last reported by the sentinels
}

// StartSentinel starts one master, `replicas` replicas (replicaof the
// master) and `sentinels` sentinel processes monitoring it under
// masterName, all on free 127.0.0.1 ports (never 6379) in their own
// temporary directories. Sentinels run `redis-sentinel sentinel.conf` when
// that binary is on PATH, else `redis-server sentinel.conf --sentinel`, with
// quorum sentinels/2+1, down-after-milliseconds 1000, failover-timeout 5000
// and parallel-syncs 1.
//
// It first waits until the master reports every replica online, then until
// every sentinel reports (SENTINEL MASTER, SENTINEL REPLICAS, SENTINEL
// SENTINELS) the healthy master at its address with exactly `replicas`
// healthy replicas and `sentinels`-1 other healthy sentinels; each wait is
// bounded by 30 s. Every process is killed by its pid in a tb.Cleanup (the
// sentinels first). StartSentinel calls tb.Fatal with the reason and log
// tails when a step fails, and skips the test like Start when redis-server
// is missing. masterName must be a non-empty word; replicas must be at least
// 0 and sentinels at least 1.
func StartSentinel(tb testing.TB, masterName string, replicas, sentinels int) *Sentinel {
	tb.Helper()
	if masterName == "" || strings.ContainsAny(masterName, " \t\r\n\"'\\") || replicas < 0 || sentinels < 1 {
		tb.Fatalf("redistest: StartSentinel(%q, %d, %d): need a non-empty master name without spaces or quotes, replicas >= 0 and sentinels >= 1",
			masterName, replicas, sentinels)
	}
	bin := lookBinary(tb, "redis-server")
	sentinelBin, sentinelFlag := bin, true
	if p, err := exec.LookPath("redis-sentinel"); err == nil {
		sentinelBin, sentinelFlag = p, false
	}

	s := &Sentinel{name: masterName}
	master := startServer(tb, bin, false, dataServerArgs)
	s.data = append(s.data, master)
	s.master = master
	replicaArgs := append(slices.Clone(dataServerArgs), "--replicaof", "127.0.0.1", strconv.Itoa(master.Port()))
	for i := 0; i < replicas; i++ {
		s.data = append(s.data, startServer(tb, bin, false, replicaArgs))
	}
	// Sentinels learn the replicas from the master's INFO, which they read at
	// once on connecting and then only every 10 s: let replication settle
	// first so that they see every replica immediately.
	if err := waitReplication(master, s.data[1:], sentinelTimeout); err != nil {
		tb.Fatalf("redistest: replication to %d replicas not online after %s: %v\n%s",
			replicas, sentinelTimeout, err, logTails(s.data))
	}

	quorum := sentinels/2 + 1
	for i := 0; i < sentinels; i++ {
		s.sentinels = append(s.sentinels,
			startSentinelServer(tb, sentinelBin, sentinelFlag, masterName, master.Port(), quorum))
	}
	if err := s.waitHealthy(sentinelTimeout); err != nil {
		tb.Fatalf("redistest: sentinels %v not agreed on master %q after %s: %v\n%s",
			s.SentinelAddrs(), masterName, sentinelTimeout, err, logTails(s.sentinels))
	}
	return s
}

// startSentinelServer starts one sentinel like startServer starts a data
// server, retrying on a new port when it fails to come up. The config file
// is written (again) for each port; sentinel rewrites it as it runs.
func startSentinelServer(tb testing.TB, bin string, flag bool, name string, masterPort, quorum int) *Server {
	tb.Helper()
	dir := filepath.Join(tb.TempDir(), "redis-sentinel")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		tb.Fatalf("redistest: create sentinel directory: %v", err)
	}
	conf := filepath.Join(dir, sentinelConfName)
	s := &Server{bin: bin, dir: dir, logPath: filepath.Join(dir, logFileName)}
	tb.Cleanup(s.Kill)

	s.args = []string{conf}
	if flag {
		s.args = append(s.args, "--sentinel")
	}
	s.launchOnFreePort(tb, "sentinel", false, func(port int) {
		if err := os.WriteFile(conf, sentinelConfig(port, dir, name, masterPort, quorum), 0o600); err != nil {
			tb.Fatalf("redistest: write %s: %v", conf, err)
		}
	})
	return s
}

func sentinelConfig(port int, dir, name string, masterPort, quorum int) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "port %d\n", port)
	b.WriteString("bind 127.0.0.1\n")
	b.WriteString("protected-mode no\n")
	b.WriteString("daemonize no\n")
	fmt.Fprintf(&b, "dir %s\n", strconv.Quote(dir))
	fmt.Fprintf(&b, "sentinel monitor %s 127.0.0.1 %d %d\n", name, masterPort, quorum)
	fmt.Fprintf(&b, "sentinel down-after-milliseconds %s 1000\n", name)
	fmt.Fprintf(&b, "sentinel failover-timeout %s 5000\n", name)
	fmt.Fprintf(&b, "sentinel parallel-syncs %s 1\n", name)
	return []byte(b.String())
}

// MasterName returns the name the sentinels monitor the master under.
func (s *Sentinel) MasterName() string { return s.name }

// SentinelAddrs returns the sentinels' addresses, "127.0.0.1:PORT", for
// FailoverOptions.SentinelAddrs. The slice is a copy.
func (s *Sentinel) SentinelAddrs() []string {
	addrs := make([]string, len(s.sentinels))
	for i, n := range s.sentinels {
		addrs[i] = n.Addr()
	}
	return addrs
}

// Sentinels returns the sentinel processes. The slice is a copy; the
// Servers are shared.
func (s *Sentinel) Sentinels() []*Server { return slices.Clone(s.sentinels) }

// Master returns the current master as the sentinels know it: of the
// sentinels' answers to GET-MASTER-ADDR-BY-NAME that name a started server,
// the one with the highest config-epoch (the configuration all sentinels
// converge to). Right after a failover it is therefore the promoted replica
// even before every sentinel has heard of the switch. If no sentinel
// answers, it returns the master last known.
func (s *Sentinel) Master() *Server {
	ctx, cancel := context.WithTimeout(context.Background(), 2*sentinelQueryTimeout)
	defer cancel()

	var best *Server
	bestEpoch := int64(-1)
	for _, sn := range s.sentinels {
		addr, epoch, err := masterView(ctx, sn.Addr(), s.name)
		if err != nil {
			continue
		}
		if n := s.server(addr); n != nil && epoch > bestEpoch {
			best, bestEpoch = n, epoch
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if best != nil {
		s.master = best
	}
	return s.master
}

// masterView asks the sentinel at sentinelAddr for the master's address and
// config epoch. Both commands go in one pipeline, which the sentinel runs
// back to back, so the address is at least as new as the epoch.
func masterView(ctx context.Context, sentinelAddr, name string) (string, int64, error) {
	cl := redis.NewClient(probeOptions(sentinelAddr))
	defer func() { _ = cl.Close() }()
	master := redis.NewMapStringStringCmd(ctx, "sentinel", "master", name)
	addr := redis.NewStringSliceCmd(ctx, "sentinel", "get-master-addr-by-name", name)
	if _, err := cl.Pipelined(ctx, func(p redis.Pipeliner) error {
		_ = p.Process(ctx, master)
		_ = p.Process(ctx, addr)
		return nil
	}); err != nil {
		return "", 0, err
	}
	epoch, err := strconv.ParseInt(master.Val()["config-epoch"], 10, 64)
	if err != nil {
		return "", 0, fmt.Errorf("SENTINEL MASTER %s: config-epoch: %w", name, err)
	}
	hp := addr.Val()
	if len(hp) != 2 {
		return "", 0, fmt.Errorf("GET-MASTER-ADDR-BY-NAME %s replied %q", name, hp)
	}
	return net.JoinHostPort(hp[0], hp[1]), epoch, nil
}

// Replicas returns the started data servers other than Master(), in start
// order. After a failover this includes the old master, even while it is
// down. The Servers are shared.
func (s *Sentinel) Replicas() []*Server {
	m := s.Master()
	var rs []*Server
	for _, n := range s.data {
		if n != m {
			rs = append(rs, n)
		}
	}
	return rs
}

// WaitFailover waits until every answering sentinel (at least a quorum of
// them) reports the same master address, different from old, and the
// server there answers ROLE as a master; it returns that address. A timeout
// of zero or less means 30 s. On timeout it calls tb.Fatal with the last
// state seen and the sentinels' log tails.
func (s *Sentinel) WaitFailover(tb testing.TB, old string, timeout time.Duration) string {
	tb.Helper()
	if timeout <= 0 {
		timeout = sentinelTimeout
	}
	clients := s.sentinelClients()
	defer closeAll(clients)
	quorum := len(s.sentinels)/2 + 1

	deadline := time.Now().Add(timeout)
	var lastErr error
	for {
		addr, err := s.agreedMaster(clients, quorum)
		if err == nil && addr == old {
			err = fmt.Errorf("sentinels still report the old master %s", old)
		}
		if err == nil {
			err = checkRole(addr, "master")
		}
		if err == nil {
			if n := s.server(addr); n != nil {
				s.mu.Lock()
				s.master = n
				s.mu.Unlock()
			}
			return addr
		}
		lastErr = err
		if time.Now().After(deadline) {
			tb.Fatalf("redistest: no failover away from %s within %s: %v\n%s",
				old, timeout, lastErr, logTails(s.sentinels))
			return ""
		}
		time.Sleep(sentinelPoll)
	}
}

// agreedMaster returns the master address that every answering sentinel
// reports, provided at least quorum of them answer.
func (s *Sentinel) agreedMaster(clients []*redis.SentinelClient, quorum int) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*sentinelQueryTimeout)
	defer cancel()
	var agreed string
	answered := 0
	var report []string
	for i, cl := range clients {
		me := s.sentinels[i].Addr()
		addr, err := masterAddr(ctx, cl, s.name)
		if err != nil {
			report = append(report, fmt.Sprintf("%s: %v", me, err))
			continue
		}
		report = append(report, fmt.Sprintf("%s says %s", me, addr))
		answered++
		if agreed == "" {
			agreed = addr
		} else if addr != agreed {
			return "", fmt.Errorf("sentinels disagree: %s", strings.Join(report, "; "))
		}
	}
	if answered < quorum {
		return "", fmt.Errorf("only %d of %d sentinels answered (need %d): %s",
			answered, len(clients), quorum, strings.Join(report, "; "))
	}
	return agreed, nil
}

// server returns the started data server at addr, or nil.
func (s *Sentinel) server(addr string) *Server {
	for _, n := range s.data {
		if n.Addr() == addr {
			return n
		}
	}
	return nil
}

func (s *Sentinel) sentinelClients() []*redis.SentinelClient {
	clients := make([]*redis.SentinelClient, len(s.sentinels))
	for i, n := range s.sentinels {
		clients[i] = redis.NewSentinelClient(probeOptions(n.Addr()))
	}
	return clients
}

func probeOptions(addr string) *redis.Options {
	return &redis.Options{
		Addr:         addr,
		DialTimeout:  sentinelQueryTimeout,
		ReadTimeout:  sentinelQueryTimeout,
		WriteTimeout: sentinelQueryTimeout,
		MaxRetries:   -1,
		PoolSize:     1,
	}
}

func closeAll(clients []*redis.SentinelClient) {
	for _, cl := range clients {
		_ = cl.Close()
	}
}

func masterAddr(ctx context.Context, cl *redis.SentinelClient, name string) (string, error) {
	hp, err := cl.GetMasterAddrByName(ctx, name).Result()
	if err != nil {
		return "", err
	}
	if len(hp) != 2 {
		return "", fmt.Errorf("GET-MASTER-ADDR-BY-NAME %s replied %q", name, hp)
	}
	return net.JoinHostPort(hp[0], hp[1]), nil
}

// checkRole reports an error unless the server at addr answers ROLE with
// want ("master" or "slave").
func checkRole(addr, want string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*sentinelQueryTimeout)
	defer cancel()
	cl := redis.NewClient(probeOptions(addr))
	defer func() { _ = cl.Close() }()
	v, err := cl.Do(ctx, "ROLE").Slice()
	if err != nil {
		return fmt.Errorf("ROLE on %s: %w", addr, err)
	}
	if len(v) == 0 || v[0] != want {
		return fmt.Errorf("ROLE on %s replied %v, want %s", addr, v, want)
	}
	return nil
}

// waitReplication waits until master lists every replica as online and
// every replica reports its link to master up.
func waitReplication(master *Server, replicas []*Server, timeout time.Duration) error {
	mc := redis.NewClient(probeOptions(master.Addr()))
	defer func() { _ = mc.Close() }()
	rcs := make([]*redis.Client, len(replicas))
	for i, r := range replicas {
		rcs[i] = redis.NewClient(probeOptions(r.Addr()))
	}
	defer func() {
		for _, c := range rcs {
			_ = c.Close()
		}
	}()

	deadline := time.Now().Add(timeout)
	for {
		err := checkReplication(mc, rcs)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(sentinelPoll)
	}
}

func checkReplication(mc *redis.Client, rcs []*redis.Client) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*sentinelQueryTimeout)
	defer cancel()
	info, err := mc.Info(ctx, "replication").Result()
	if err != nil {
		return fmt.Errorf("master %s: INFO replication: %w", mc.Options().Addr, err)
	}
	f := infoFields(info)
	if f["role"] != "master" || f["connected_slaves"] != strconv.Itoa(len(rcs)) {
		return fmt.Errorf("master %s: want role:master and connected_slaves:%d, INFO replication:\n%s",
			mc.Options().Addr, len(rcs), info)
	}
	for i := range rcs {
		if v := f["slave"+strconv.Itoa(i)]; !strings.Contains(v, "state=online") {
			return fmt.Errorf("master %s: replica %d is not online, INFO replication:\n%s",
				mc.Options().Addr, i, info)
		}
	}
	for _, rc := range rcs {
		info, err := rc.Info(ctx, "replication").Result()
		if err != nil {
			return fmt.Errorf("replica %s: INFO replication: %w", rc.Options().Addr, err)
		}
		if f := infoFields(info); f["role"] != "slave" || f["master_link_status"] != "up" {
			return fmt.Errorf("replica %s: link to master not up, INFO replication:\n%s", rc.Options().Addr, info)
		}
	}
	return nil
}

// infoFields parses INFO output into its key:value fields.
func infoFields(info string) map[string]string {
	f := map[string]string{}
	for _, line := range strings.Split(info, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			f[k] = v
		}
	}
	return f
}

// waitHealthy polls every sentinel until all agree on the deployment.
func (s *Sentinel) waitHealthy(timeout time.Duration) error {
	clients := s.sentinelClients()
	defer closeAll(clients)
	deadline := time.Now().Add(timeout)
	for {
		err := s.checkSentinels(clients)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(sentinelPoll)
	}
}

// checkSentinels returns nil when every sentinel sees the master healthy at
// its address, every replica healthy and every other sentinel healthy.
func (s *Sentinel) checkSentinels(clients []*redis.SentinelClient) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*sentinelQueryTimeout)
	defer cancel()
	master := s.data[0].Addr()
	replicas := s.data[1:]
	for i, cl := range clients {
		me := s.sentinels[i].Addr()
		m, err := cl.Master(ctx, s.name).Result()
		if err != nil {
			return fmt.Errorf("sentinel %s: SENTINEL MASTER %s: %w", me, s.name, err)
		}
		if got := net.JoinHostPort(m["ip"], m["port"]); got != master || m["flags"] != "master" ||
			m["num-slaves"] != strconv.Itoa(len(replicas)) ||
			m["num-other-sentinels"] != strconv.Itoa(len(s.sentinels)-1) {
			return fmt.Errorf("sentinel %s: SENTINEL MASTER %s: want %s flags=master num-slaves=%d num-other-sentinels=%d, got %s flags=%s num-slaves=%s num-other-sentinels=%s",
				me, s.name, master, len(replicas), len(s.sentinels)-1,
				got, m["flags"], m["num-slaves"], m["num-other-sentinels"])
		}

		rs, err := cl.Replicas(ctx, s.name).Result()
		if err != nil {
			return fmt.Errorf("sentinel %s: SENTINEL REPLICAS %s: %w", me, s.name, err)
		}
		if len(rs) != len(replicas) {
			return fmt.Errorf("sentinel %s: SENTINEL REPLICAS %s lists %d replicas, want %d", me, s.name, len(rs), len(replicas))
		}
		for _, r := range rs {
			addr := net.JoinHostPort(r["ip"], r["port"])
			if n := s.server(addr); n == nil || n == s.data[0] {
				return fmt.Errorf("sentinel %s: SENTINEL REPLICAS %s lists unknown replica %s", me, s.name, addr)
			}
			if r["flags"] != "slave" || r["master-link-status"] != "ok" {
				return fmt.Errorf("sentinel %s: replica %s has flags=%s master-link-status=%s", me, addr, r["flags"], r["master-link-status"])
			}
		}

		ss, err := cl.Sentinels(ctx, s.name).Result()
		if err != nil {
			return fmt.Errorf("sentinel %s: SENTINEL SENTINELS %s: %w", me, s.name, err)
		}
		if len(ss) != len(s.sentinels)-1 {
			return fmt.Errorf("sentinel %s: SENTINEL SENTINELS %s lists %d other sentinels, want %d", me, s.name, len(ss), len(s.sentinels)-1)
		}
		for _, o := range ss {
			addr := net.JoinHostPort(o["ip"], o["port"])
			if addr == me || !slices.ContainsFunc(s.sentinels, func(n *Server) bool { return n.Addr() == addr }) {
				return fmt.Errorf("sentinel %s: SENTINEL SENTINELS %s lists unexpected sentinel %s", me, s.name, addr)
			}
			if o["flags"] != "sentinel" {
				return fmt.Errorf("sentinel %s: sentinel %s has flags=%s", me, addr, o["flags"])
			}
		}
	}
	return nil
}

// logTails returns the log tails of servers, each under a header.
func logTails(servers []*Server) string {
	var b strings.Builder
	for _, n := range servers {
		fmt.Fprintf(&b, "--- tail of %s (%s) ---\n%s\n", n.logPath, n.Addr(), logTail(n.logPath))
	}
	return b.String()
}
