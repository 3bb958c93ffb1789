// Package livetest starts a real satlab-server for tests: 127.0.0.1, gRPC
// and HTTP ports chosen at run time, binary from $SATLAB_SERVER_BIN (ctest
// sets it), stopped by its PID (SIGTERM, then SIGKILL after a grace period).
package livetest

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"satlab"
)

// Server is a running satlab-server.
type Server struct {
	// Address is host:port of the gRPC listener.
	Address string
	cmd     *exec.Cmd
	mu      sync.Mutex
	stderr  strings.Builder
	exited  chan struct{}
	exitErr error
}

// Start launches the server with extra flags and waits for its
// "listening on" line. It fails the test loudly when it cannot.
func Start(t testing.TB, extraArgs ...string) *Server {
	t.Helper()
	s, err := StartE(extraArgs...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// StartE is Start for TestMain: it returns the error instead.
func StartE(extraArgs ...string) (*Server, error) {
	bin := os.Getenv("SATLAB_SERVER_BIN")
	if bin == "" {
		return nil, fmt.Errorf("SATLAB_SERVER_BIN is not set: point it at build/server/satlab-server (ctest sets it)")
	}
	args := append([]string{"--host=127.0.0.1", "--port=0", "--http_port=0"}, extraArgs...)
	s := &Server{cmd: exec.Command(bin, args...), exited: make(chan struct{})}
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %v", bin, err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			s.mu.Lock()
			s.stderr.WriteString(sc.Text() + "\n")
			s.mu.Unlock()
		}
	}()
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if line := sc.Text(); strings.HasPrefix(line, "listening on ") {
				f := strings.Fields(line)
				addr <- f[len(f)-1]
			}
		}
	}()
	go func() {
		s.exitErr = s.cmd.Wait()
		close(s.exited)
	}()
	select {
	case s.Address = <-addr:
		return s, nil
	case <-s.exited:
		return nil, fmt.Errorf("satlab-server exited before listening (%v): %s", s.exitErr, s.Log())
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
		return nil, fmt.Errorf("no 'listening on' line from satlab-server in 30 s: %s", s.Log())
	}
}

// Log returns the server's stderr so far.
func (s *Server) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stderr.String()
}

// Stop sends SIGTERM, waits up to grace, then SIGKILL; returns the exit error.
func (s *Server) Stop(grace time.Duration) error {
	select {
	case <-s.exited:
		return s.exitErr
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(grace):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
	return s.exitErr
}

// Client dials the server and waits until it serves.
func (s *Server) Client(t testing.TB) *satlab.Client {
	t.Helper()
	c, err := satlab.Dial(s.Address, satlab.Options{Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.WaitReady(ctx); err != nil {
		t.Fatalf("%v; server log: %s", err, s.Log())
	}
	return c
}

// String names the server in test output.
func (s *Server) String() string { return fmt.Sprintf("satlab-server@%s", s.Address) }
