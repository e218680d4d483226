// Package redistest starts real redis-server processes on free loopback
// ports for tests and stops exactly the processes it started.
//
// Every server runs in its own temporary directory with persistence
// disabled, writes its stdout and stderr to redis.log in that directory and
// is killed (by its pid, via the *exec.Cmd that started it) when the test
// that started it finishes. On Linux the servers also receive SIGKILL if the
// test binary dies.
//
// If redis-server (or, for clusters, redis-cli) is not on PATH the calling
// test is skipped, unless the environment variable REDISCACHE_REQUIRE_REDIS
// is set to 1, in which case the test fails instead.
package redistest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	// RequireEnv is the environment variable that, when set to "1", turns a
	// missing redis-server or redis-cli binary into a test failure instead of
	// a skip.
	RequireEnv = "REDISCACHE_REQUIRE_REDIS"

	startAttempts  = 5
	readyTimeout   = 10 * time.Second
	killTimeout    = 10 * time.Second
	createTimeout  = 60 * time.Second
	clusterTimeout = 30 * time.Second
	pollInterval   = 20 * time.Millisecond

	// sharedRedisPort is the port of the shared Redis that must never be used.
	sharedRedisPort = 6379
	// clusterBusOffset is the distance between a cluster node's client port
	// and its cluster bus port.
	clusterBusOffset = 10000
	// maxClusterPort keeps port+clusterBusOffset a valid port number.
	maxClusterPort = 65535 - clusterBusOffset
	totalSlots     = 16384
	logFileName    = "redis.log"
	nodesFileName  = "nodes.conf"
)

// Server is a redis-server process started by Start or StartCluster. Its
// address never changes, even across Kill and Restart. A Server is safe for
// concurrent use.
type Server struct {
	bin     string
	port    int
	dir     string
	logPath string
	args    []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	pid  int
}

// Start starts a standalone redis-server on a free 127.0.0.1 port (never
// 6379) in a fresh temporary directory, appending args to its command line
// (for example "--maxmemory", "2mb"). It returns once the server answers
// commands, and registers a tb.Cleanup that kills the process. If the server
// does not come up after 5 attempts on different ports, Start calls
// tb.Fatal with the tail of the server log. If redis-server is not on PATH
// the test is skipped, or fails when REDISCACHE_REQUIRE_REDIS=1.
func Start(tb testing.TB, args ...string) *Server {
	tb.Helper()
	bin := lookBinary(tb, "redis-server")
	return startServer(tb, bin, false, args)
}

// startServer starts one server, retrying on a new port when it fails to
// come up (another process may have taken the chosen port in the meantime).
func startServer(tb testing.TB, bin string, cluster bool, extra []string) *Server {
	tb.Helper()
	// TempDir registers its removal before our kill cleanup, so (cleanups
	// being LIFO) the process is dead before its directory is removed.
	dir := filepath.Join(tb.TempDir(), "redis-server")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		tb.Fatalf("redistest: create server directory: %v", err)
	}
	s := &Server{bin: bin, dir: dir, logPath: filepath.Join(dir, logFileName)}
	tb.Cleanup(s.Kill)
	s.launchOnFreePort(tb, "redis-server", cluster, func(port int) {
		s.args = serverArgs(port, dir, cluster, extra)
		if cluster {
			// A failed attempt may have left a nodes.conf for another port.
			_ = os.Remove(filepath.Join(dir, nodesFileName))
		}
	})
	return s
}

// launchOnFreePort starts s on a free loopback port, trying another port
// when it does not come up (another process may take the chosen one in the
// meantime); setup prepares s for the port (arguments, config file). After
// startAttempts failures it fails the test, naming what (redis-server,
// sentinel) and showing the tail of its log.
func (s *Server) launchOnFreePort(tb testing.TB, what string, cluster bool, setup func(port int)) {
	tb.Helper()
	var lastErr error
	for attempt := 1; attempt <= startAttempts; attempt++ {
		port, err := freePort(cluster)
		if err != nil {
			lastErr = err
			continue
		}
		s.port = port
		setup(port)
		s.mu.Lock()
		err = s.launchLocked()
		s.mu.Unlock()
		if err == nil {
			return
		}
		lastErr = fmt.Errorf("attempt %d on port %d: %w", attempt, port, err)
	}
	tb.Fatalf("redistest: %s did not start after %d attempts: %v\n--- tail of %s ---\n%s",
		what, startAttempts, lastErr, s.logPath, logTail(s.logPath))
}

func serverArgs(port int, dir string, cluster bool, extra []string) []string {
	args := []string{
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", dir,
		"--daemonize", "no",
		"--protected-mode", "no",
	}
	if cluster {
		args = append(args,
			"--cluster-enabled", "yes",
			"--cluster-config-file", nodesFileName,
			"--cluster-node-timeout", "2000",
		)
	}
	return append(args, extra...)
}

// launchLocked starts the process with s.args and waits until it answers on
// s.port. On failure the process is killed and reaped. s.mu must be held.
func (s *Server) launchLocked() error {
	logFile, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open log: %w", err)
	}
	_, _ = fmt.Fprintf(logFile, "=== redistest: %s %s\n", s.bin, strings.Join(quoteArgs(s.args), " "))

	cmd := exec.Command(s.bin, s.args...)
	cmd.Dir = s.dir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	setDeathSignal(cmd)
	err = cmd.Start()
	_ = logFile.Close() // The child has its own copy of the descriptor.
	if err != nil {
		return fmt.Errorf("start %s: %w", s.bin, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait() // Reap the process so it never lingers as a zombie.
		close(done)
	}()
	s.cmd, s.done, s.pid = cmd, done, cmd.Process.Pid

	if err := waitReady(s.Addr(), s.pid, done, readyTimeout); err != nil {
		s.killLocked()
		if errors.Is(err, errExited) && cmd.ProcessState != nil {
			err = fmt.Errorf("%w (%s)", err, cmd.ProcessState)
		}
		return err
	}
	return nil
}

// Addr returns the server address, "127.0.0.1:PORT".
func (s *Server) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// Port returns the TCP port the server listens on.
func (s *Server) Port() int { return s.port }

// Pid returns the process id of the most recently started redis-server
// process for this Server. After Kill it still returns the (now dead) pid.
func (s *Server) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pid
}

// Dir returns the server's working directory, which holds its log file
// (redis.log) and, for cluster nodes, nodes.conf.
func (s *Server) Dir() string { return s.dir }

// Kill sends SIGKILL to the server process and waits (up to 10 s) until it
// has exited and been reaped. It is idempotent: killing a server that is not
// running does nothing. It never fails.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.killLocked()
}

func (s *Server) killLocked() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill() // os.ErrProcessDone if it already exited.
	select {
	case <-s.done:
	case <-time.After(killTimeout):
	}
	s.cmd, s.done = nil, nil
}

// Restart kills the server if it is still running and starts it again on
// the same port, in the same directory and with the same arguments, then
// waits until it answers commands. Data is not preserved (persistence is
// off), but a cluster node keeps its identity through nodes.conf. If the
// server does not come up within 10 s (for example because another process
// took the port), Restart calls tb.Fatal with the tail of the server log.
func (s *Server) Restart(tb testing.TB) {
	tb.Helper()
	s.mu.Lock()
	s.killLocked()
	err := s.launchLocked()
	s.mu.Unlock()
	if err != nil {
		tb.Fatalf("redistest: restart redis-server on %s: %v\n--- tail of %s ---\n%s",
			s.Addr(), err, s.logPath, logTail(s.logPath))
	}
}

// Client returns a go-redis client connected to the server, for test
// assertions. The client is closed by a tb.Cleanup, which runs before the
// server itself is killed. Client does not fail; errors surface on use.
func (s *Server) Client(tb testing.TB) *redis.Client {
	tb.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr()})
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// Cluster is a Redis Cluster of redis-server processes started by
// StartCluster.
type Cluster struct {
	nodes []*Server
}

// StartCluster starts masters*(1+replicasPerMaster) cluster-enabled
// redis-server nodes on free 127.0.0.1 ports (each port and its bus port,
// port+10000, checked free), joins them with `redis-cli --cluster create`,
// and waits up to 30 s until every node reports cluster_state:ok, its
// CLUSTER SLOTS covers all 16384 slots and it knows every node and every
// replica. Each node is killed by a tb.Cleanup. masters must be at least 3
// and replicasPerMaster at least 0. StartCluster calls tb.Fatal with a
// description of the problem (and redis-cli output or server log tails)
// when any step fails, and skips the test like Start when redis-server or
// redis-cli is missing.
func StartCluster(tb testing.TB, masters int, replicasPerMaster int) *Cluster {
	tb.Helper()
	if masters < 3 || replicasPerMaster < 0 {
		tb.Fatalf("redistest: StartCluster(%d, %d): need at least 3 masters and a non-negative replica count",
			masters, replicasPerMaster)
	}
	bin := lookBinary(tb, "redis-server")
	cli := lookBinary(tb, "redis-cli")

	total := masters * (1 + replicasPerMaster)
	c := &Cluster{}
	addrs := make([]string, 0, total)
	for i := 0; i < total; i++ {
		// Redis 7 delays a replica's first sync by 5s by default.
		n := startServer(tb, bin, true, []string{"--repl-diskless-sync-delay", "0"})
		c.nodes = append(c.nodes, n)
		addrs = append(addrs, n.Addr())
	}

	ctx, cancel := context.WithTimeout(context.Background(), createTimeout)
	defer cancel()
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", strconv.Itoa(replicasPerMaster), "--cluster-yes")
	cmd := exec.CommandContext(ctx, cli, args...)
	cmd.WaitDelay = time.Second
	setDeathSignal(cmd)
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (timed out after %s)", err, createTimeout)
		}
		tb.Fatalf("redistest: redis-cli %s: %v\n--- output ---\n%s", strings.Join(args, " "), err, out)
	}

	if err := c.waitHealthy(masters, replicasPerMaster, clusterTimeout); err != nil {
		tb.Fatalf("redistest: cluster %v not healthy after %s: %v\n--- redis-cli output ---\n%s",
			addrs, clusterTimeout, err, out)
	}
	return c
}

// waitHealthy polls every node until the cluster is fully formed, then
// orders c.nodes masters first.
func (c *Cluster) waitHealthy(masters, replicas int, timeout time.Duration) error {
	clients := make([]*redis.Client, len(c.nodes))
	for i, n := range c.nodes {
		clients[i] = redis.NewClient(&redis.Options{
			Addr:         n.Addr(),
			DialTimeout:  time.Second,
			ReadTimeout:  time.Second,
			WriteTimeout: time.Second,
			MaxRetries:   -1,
			PoolSize:     1,
		})
	}
	defer func() {
		for _, cl := range clients {
			_ = cl.Close()
		}
	}()

	deadline := time.Now().Add(timeout)
	for {
		roles, err := checkCluster(clients, masters, replicas)
		if err == nil {
			var ms, rs []*Server
			for i, n := range c.nodes {
				if roles[i] {
					ms = append(ms, n)
				} else {
					rs = append(rs, n)
				}
			}
			c.nodes = append(ms, rs...)
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkCluster returns, per node, whether it is a master, or an error
// describing the first node that is not ready yet.
func checkCluster(clients []*redis.Client, masters, replicas int) ([]bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	isMaster := make([]bool, len(clients))
	for i, cl := range clients {
		addr := cl.Options().Addr
		info, err := cl.ClusterInfo(ctx).Result()
		if err != nil {
			return nil, fmt.Errorf("node %s: CLUSTER INFO: %w", addr, err)
		}
		// cluster_state:ok implies all 16384 slots are served, since
		// cluster-require-full-coverage is on by default.
		if !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_slots_assigned:16384") {
			return nil, fmt.Errorf("node %s: cluster_state is not ok:\n%s", addr, info)
		}
		nodes, err := cl.ClusterNodes(ctx).Result()
		if err != nil {
			return nil, fmt.Errorf("node %s: CLUSTER NODES: %w", addr, err)
		}
		known, slaves := 0, 0
		for _, line := range strings.Split(strings.TrimSpace(nodes), "\n") {
			fields := strings.Fields(line)
			if len(fields) < 3 {
				continue
			}
			known++
			flags := strings.Split(fields[2], ",")
			for _, f := range flags {
				switch f {
				case "slave":
					slaves++
				case "handshake", "fail", "fail?", "noaddr":
					return nil, fmt.Errorf("node %s: CLUSTER NODES has a node flagged %q:\n%s", addr, f, nodes)
				}
			}
			if hasFlag(flags, "myself") {
				isMaster[i] = hasFlag(flags, "master")
			}
		}
		if known != len(clients) || slaves != masters*replicas {
			return nil, fmt.Errorf("node %s: CLUSTER NODES lists %d nodes (%d replicas), want %d (%d):\n%s",
				addr, known, slaves, len(clients), masters*replicas, nodes)
		}
		// A replica that never completed its first sync is never promoted:
		// the cluster is ready when every replica's link is up.
		if !isMaster[i] {
			repl, err := cl.Info(ctx, "replication").Result()
			if err != nil {
				return nil, fmt.Errorf("node %s: INFO replication: %w", addr, err)
			}
			if !strings.Contains(repl, "master_link_status:up") {
				return nil, fmt.Errorf("node %s: replica not in sync with its master yet", addr)
			}
		}
	}
	return isMaster, nil
}

func hasFlag(flags []string, want string) bool {
	for _, f := range flags {
		if f == want {
			return true
		}
	}
	return false
}

// Addrs returns the addresses of all nodes, masters first (roles as of
// cluster creation).
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		addrs[i] = n.Addr()
	}
	return addrs
}

// Nodes returns all nodes, masters first (roles as of cluster creation).
// The returned slice is a copy; the Servers are shared.
func (c *Cluster) Nodes() []*Server {
	return append([]*Server(nil), c.nodes...)
}

// Client returns a go-redis cluster client seeded with every node address.
// The client is closed by a tb.Cleanup, which runs before the nodes are
// killed. Client does not fail; errors surface on use.
func (c *Cluster) Client(tb testing.TB) *redis.ClusterClient {
	tb.Helper()
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	tb.Cleanup(func() { _ = cc.Close() })
	return cc
}

// lookBinary finds name on PATH, skipping the test (or failing it when
// REDISCACHE_REQUIRE_REDIS=1) if it is missing.
func lookBinary(tb testing.TB, name string) string {
	tb.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if os.Getenv(RequireEnv) == "1" {
		tb.Fatalf("redistest: %s not found on PATH (%v) and %s=1", name, err, RequireEnv)
	}
	tb.Skipf("redistest: %s not found on PATH (%v); skipping (set %s=1 to fail instead)", name, err, RequireEnv)
	return ""
}

// freePort returns a port on 127.0.0.1 that was free a moment ago and is
// not 6379. For cluster nodes the bus port (port+10000) must be free too and
// the port must not exceed 55535.
func freePort(cluster bool) (int, error) {
	var lastErr error
	for i := 0; i < 100; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			lastErr = err
			continue
		}
		port := l.Addr().(*net.TCPAddr).Port
		if port == sharedRedisPort || (cluster && port > maxClusterPort) {
			_ = l.Close()
			continue
		}
		if cluster {
			bus, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port+clusterBusOffset)))
			if err != nil {
				_ = l.Close()
				lastErr = err
				continue
			}
			_ = bus.Close()
		}
		_ = l.Close()
		return port, nil
	}
	if lastErr == nil {
		lastErr = errors.New("only unusable ports were offered")
	}
	return 0, fmt.Errorf("no free port found: %w", lastErr)
}

var errExited = errors.New("redis-server exited during startup")

// waitReady polls addr until the server there answers INFO with process_id
// equal to pid, so that a different process that took the port is never
// mistaken for ours.
func waitReady(addr string, pid int, exited <-chan struct{}, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var lastErr error
	for {
		select {
		case <-exited:
			return errExited
		default:
		}
		got, err := serverPid(addr)
		if err == nil {
			if got == pid {
				return nil
			}
			return fmt.Errorf("%s is answered by another process (pid %d, ours is %d)", addr, got, pid)
		}
		lastErr = err
		if time.Now().After(deadline) {
			return fmt.Errorf("not answering on %s after %s: %w", addr, timeout, lastErr)
		}
		select {
		case <-exited:
			return errExited
		case <-time.After(pollInterval):
		}
	}
}

// serverPid sends INFO server over a raw RESP connection and returns the
// reported process_id.
func serverPid(addr string) (int, error) {
	conn, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
	if err != nil {
		return 0, err
	}
	defer func() { _ = conn.Close() }()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := io.WriteString(conn, "*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n"); err != nil {
		return 0, err
	}
	r := bufio.NewReader(conn)
	line, err := r.ReadString('\n')
	if err != nil {
		return 0, err
	}
	line = strings.TrimRight(line, "\r\n")
	if !strings.HasPrefix(line, "$") {
		return 0, fmt.Errorf("INFO replied %q", line) // e.g. -LOADING
	}
	n, err := strconv.Atoi(line[1:])
	if err != nil || n < 0 {
		return 0, fmt.Errorf("INFO replied %q", line)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "process_id:"); ok {
			return strconv.Atoi(v)
		}
	}
	return 0, errors.New("INFO server has no process_id")
}

// logTail returns the last lines of the log file at path.
func logTail(path string) string {
	const maxBytes, maxLines = 4096, 30
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	if len(data) > maxBytes {
		data = data[len(data)-maxBytes:]
	}
	lines := bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n"))
	if len(lines) > maxLines {
		lines = lines[len(lines)-maxLines:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

func quoteArgs(args []string) []string {
	q := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\"'") {
			a = strconv.Quote(a)
		}
		q[i] = a
	}
	return q
}
