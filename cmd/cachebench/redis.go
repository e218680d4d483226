package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// sharedRedisPort is never used for a server this program starts.
const sharedRedisPort = 6379

// redisServer is the Redis the benchmark runs on.
type redisServer struct {
	Addr     string
	Desc     string // for the report
	Embedded bool   // miniredis: latencies are not Redis's
	Spawned  bool   // started by this program (its whole memory is ours)
	stop     func() error
}

// Close stops the server when this program started it.
func (s *redisServer) Close() error {
	if s.stop == nil {
		return nil
	}
	stop := s.stop
	s.stop = nil
	return stop()
}

// startRedis returns the Redis to use: addr when given; else a
// redis-server started on a free loopback port when one is on PATH; else
// an embedded miniredis.
func startRedis(ctx context.Context, addr string) (*redisServer, error) {
	if addr != "" {
		return &redisServer{Addr: addr, Desc: "redis at " + addr}, nil
	}
	if bin, err := exec.LookPath("redis-server"); err == nil {
		return startRedisServer(ctx, bin)
	}
	return startMiniredis()
}

func startMiniredis() (*redisServer, error) {
	m, err := miniredis.Run()
	if err != nil {
		return nil, err
	}
	return &redisServer{Addr: m.Addr(), Desc: "embedded miniredis (no redis-server on PATH)",
		Embedded: true, Spawned: true, stop: func() error { m.Close(); return nil }}, nil
}

// freePort returns a loopback TCP port that was free a moment ago, never
// 6379.
func freePort() (int, error) {
	for range 10 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		if port != sharedRedisPort {
			return port, nil
		}
	}
	return 0, errors.New("no free port")
}

// startRedisServer runs bin on a free loopback port without persistence,
// in a temporary directory, and waits until it answers PING. Stopping it
// kills exactly that process (by its pid) and removes the directory. A
// port taken between the probe and the start is retried on another port.
func startRedisServer(ctx context.Context, bin string) (*redisServer, error) {
	var lastErr error
	for range 5 {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s, err := tryRedisServer(ctx, bin, port)
		if err == nil {
			return s, nil
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("start redis-server: %w", lastErr)
}

func tryRedisServer(ctx context.Context, bin string, port int) (*redisServer, error) {
	dir, err := os.MkdirTemp("", "cachebench-redis-")
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir, "--daemonize", "no")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	setDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	stop := func() error {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Kill() // by pid: this process only
			select {
			case <-exited:
			case <-time.After(10 * time.Second):
				return fmt.Errorf("redis-server pid %d did not exit", cmd.Process.Pid)
			}
		}
		return os.RemoveAll(dir)
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second})
	defer func() { _ = rdb.Close() }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := rdb.Ping(ctx).Err()
		if err == nil {
			break
		}
		select {
		case <-exited:
			return nil, errors.Join(fmt.Errorf("redis-server exited: %s", strings.TrimSpace(out.String())), stop())
		default:
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return nil, errors.Join(fmt.Errorf("redis-server on %s not ready: %w", addr, err), stop())
		}
		time.Sleep(20 * time.Millisecond)
	}
	version := ""
	if info, err := rdb.Info(ctx, "server").Result(); err == nil {
		version = infoField(info, "redis_version")
	}
	return &redisServer{Addr: addr, Spawned: true, stop: stop,
		Desc: fmt.Sprintf("redis-server %s started on %s (pid %d)", version, addr, cmd.Process.Pid)}, nil
}

// infoField returns field's value from an INFO reply, "" when absent.
func infoField(info, field string) string {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			return v
		}
	}
	return ""
}

// redisMemory reads INFO memory: used_memory in bytes and its human form.
// miniredis has no INFO memory; ok is false then.
func redisMemory(ctx context.Context, rdb redis.UniversalClient) (bytes int64, human string, ok bool) {
	info, err := rdb.Info(ctx, "memory").Result()
	if err != nil {
		return 0, "", false
	}
	n, err := strconv.ParseInt(infoField(info, "used_memory"), 10, 64)
	if err != nil {
		return 0, "", false
	}
	return n, infoField(info, "used_memory_human"), true
}
