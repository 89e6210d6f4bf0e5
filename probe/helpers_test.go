package probe

import (
	"context"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/tcpkeep/tcpkeep/internal/testnet"
)

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	testnet.Wait(t, within, what, cond)
}

// noLeak fails the test if goroutines it started outlive it.
func noLeak(t *testing.T) {
	t.Helper()
	base := runtime.NumGoroutine()
	t.Cleanup(func() {
		if !testnet.Poll(5*time.Second, func() bool { return runtime.NumGoroutine() <= base }) {
			buf := make([]byte, 1<<16)
			t.Errorf("%d goroutines left, %d at the start:\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
	})
}

// serve runs srv on a listener at addr in ns until the test ends, and checks that
// it shuts down cleanly then.
func serve(t *testing.T, ns Namespace, addr string, srv *Server) string {
	t.Helper()
	l, err := Listen(ns, addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve after shutdown: %v", err)
			}
		case <-time.After(3 * time.Second):
			t.Error("Serve did not return within 3 s of its context ending")
		}
	})
	return l.Addr().String()
}

// dial connects from ns with keepalive off, closed when the test ends.
func dial(t *testing.T, ns Namespace, addr string) *net.TCPConn {
	t.Helper()
	c, err := Dial(context.Background(), ns, addr, SocketOptions{ConnectTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
