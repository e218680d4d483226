package rediscacheprom

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// requireRedisEnv set to "1" turns a missing redis-server into a failure
// instead of a skip (as in the core module's tests).
const requireRedisEnv = "REDISCACHE_REQUIRE_REDIS"

// startRedis starts a redis-server on a free 127.0.0.1 port (never 6379)
// with persistence off and the extra args, waits until it answers PING, and
// kills it by its pid when the test ends. It returns the address.
func startRedis(t testing.TB, args ...string) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv(requireRedisEnv) == "1" {
			t.Fatalf("redis-server not on PATH and %s=1", requireRedisEnv)
		}
		t.Skip("redis-server not on PATH")
	}
	var lastErr error
	for range 5 {
		addr, err := tryStartRedis(t, bin, args)
		if err == nil {
			return addr
		}
		lastErr = err
	}
	t.Fatalf("starting redis-server: %v", lastErr)
	return ""
}

// tryStartRedis makes one attempt at a port that was free a moment ago.
func tryStartRedis(t testing.TB, bin string, args []string) (string, error) {
	port, err := freePort()
	if err != nil {
		return "", err
	}
	dir := t.TempDir()
	logPath := filepath.Join(dir, "redis.log")
	cmd := exec.Command(bin, append([]string{
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir, "--logfile", logPath,
	}, args...)...)
	setDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		return "", err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	stop := func() {
		_ = cmd.Process.Kill() // by pid: exactly the process started here
		<-done
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-done:
			log, _ := os.ReadFile(logPath)
			return "", fmt.Errorf("redis-server on %s exited: %s", addr, strings.TrimSpace(string(log)))
		default:
		}
		if ping(addr) == nil {
			t.Cleanup(stop)
			return addr, nil
		}
		if time.Now().After(deadline) {
			stop()
			return "", fmt.Errorf("redis-server on %s did not answer PING in time", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// freePort returns a loopback port that was free when asked, never 6379.
func freePort() (int, error) {
	for {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := ln.Addr().(*net.TCPAddr).Port
		_ = ln.Close()
		if port != 6379 {
			return port, nil
		}
	}
}

// ping sends an inline PING and expects +PONG.
func ping(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return errors.New("unexpected PING reply " + strconv.Quote(line))
	}
	return nil
}
