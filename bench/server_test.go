package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisServer is the redis-server process the benchmarks started, stopped
// by its pid (through the *exec.Cmd that started it), never by name.
type redisServer struct {
	addr string
	cmd  *exec.Cmd
	dir  string
}

// startRedis starts redis-server on a free loopback port (never 6379) with
// persistence off, in a fresh temporary directory, and waits until it
// answers PING. It retries on another port a few times, in case another
// process took the chosen one meanwhile.
func startRedis() (*redisServer, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, err
	}
	var lastErr error
	for range 5 {
		port, err := freePort()
		if err != nil {
			lastErr = err
			continue
		}
		dir, err := os.MkdirTemp("", "rediscache-bench-")
		if err != nil {
			return nil, err
		}
		s := &redisServer{addr: "127.0.0.1:" + strconv.Itoa(port), dir: dir}
		s.cmd = exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", dir, "--logfile", dir+"/redis.log")
		setDeathSignal(s.cmd)
		if err := s.cmd.Start(); err != nil {
			_ = os.RemoveAll(dir)
			return nil, err
		}
		if err := waitReady(s.addr, 10*time.Second); err != nil {
			log, _ := os.ReadFile(dir + "/redis.log")
			lastErr = fmt.Errorf("redis-server on %s: %w\n%s", s.addr, err, log)
			s.stop()
			continue
		}
		return s, nil
	}
	return nil, lastErr
}

// stop kills the server by its pid and removes its directory.
func (s *redisServer) stop() {
	if s == nil || s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	_ = os.RemoveAll(s.dir)
}

func freePort() (int, error) {
	for range 10 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		if port != 6379 {
			return port, nil
		}
	}
	return 0, errors.New("no free port")
}

func waitReady(addr string, timeout time.Duration) error {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer func() { _ = c.Close() }()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}
