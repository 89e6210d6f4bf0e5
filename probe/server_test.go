package probe

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tcpkeep/tcpkeep/internal/testnet"
)

// drain reads c until it ends or within passes, and returns what it read and
// whether the server closed it.
func drain(c net.Conn, within time.Duration) (n int, closed bool) {
	c.SetReadDeadline(time.Now().Add(within))
	k, err := io.Copy(io.Discard, c)
	var ne net.Error
	return int(k), !(errors.As(err, &ne) && ne.Timeout())
}

// TestServerUnderBadInput attacks a bounded Server in its own namespace with
// garbage, oversized and half-written frames, too many clients and a flood of
// pings, and checks that it stays up, answers a well-behaved client each time,
// never answers with more bytes than it got (a client beyond the limit gets one
// busy frame), and that its memory stays bounded.
func TestServerUnderBadInput(t *testing.T) {
	noLeak(t)
	ns := testnet.NewNS(t).NetNS()
	srv := &Server{MaxClients: 8, ReadTimeout: time.Second, Rate: 20}
	addr := serve(t, ns, "127.0.0.1:7077", srv)

	wellBehaved := func(t *testing.T) {
		t.Helper()
		c := dial(t, ns, addr)
		p := NewPinger(c)
		for i := 0; i < 3; i++ {
			if _, err := p.Ping(context.Background(), time.Second); err != nil {
				t.Fatalf("a well-behaved client is not answered: %v", err)
			}
		}
		c.Close()
	}
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)

	t.Run("garbage", func(t *testing.T) {
		junk := make([]byte, 4096)
		rand.Read(junk)
		for i := 0; i < 50; i++ {
			c := dial(t, ns, addr)
			c.Write(junk)
			if n, closed := drain(c, 2*time.Second); n != 0 || !closed {
				t.Fatalf("garbage got %d bytes back, closed %v; want none and closed", n, closed)
			}
			c.Close()
		}
		wellBehaved(t)
	})
	t.Run("oversized", func(t *testing.T) {
		big := Frame{Type: TypePing, Seq: 1}.Append(make([]byte, 0, 1<<20))
		big = big[:1<<20]
		c := dial(t, ns, addr)
		go c.Write(big)
		if n, closed := drain(c, 2*time.Second); n > FrameSize || !closed {
			t.Fatalf("a 1 MiB frame got %d bytes back, closed %v; want at most one pong and closed", n, closed)
		}
		wellBehaved(t)
	})
	t.Run("half-written", func(t *testing.T) {
		half := Frame{Type: TypePing, Seq: 1}.Append(nil)[:FrameSize/2]
		start := time.Now()
		c := dial(t, ns, addr)
		c.Write(half)
		n, closed := drain(c, 3*time.Second)
		if n != 0 || !closed {
			t.Fatalf("half a frame got %d bytes back, closed %v; want none and closed", n, closed)
		}
		if el := time.Since(start); el < srv.ReadTimeout/2 {
			t.Fatalf("closed after %v: sooner than the read timeout %v", el, srv.ReadTimeout)
		}
		wellBehaved(t)
	})
	t.Run("too many clients", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		var failed atomic.Int32
		for i := 0; i < srv.MaxClients; i++ {
			c := dial(t, ns, addr)
			wg.Add(1)
			go func() { // a client that beats keeps its slot
				defer wg.Done()
				p := NewPinger(c)
				for ctx.Err() == nil {
					if _, err := p.Ping(ctx, time.Second); err != nil && ctx.Err() == nil {
						failed.Add(1)
					}
					time.Sleep(100 * time.Millisecond)
				}
			}()
		}
		waitFor(t, "the server serves MaxClients", 3*time.Second, func() bool { return srv.Stats().Active == int64(srv.MaxClients) })
		rejected := srv.Stats().Rejected
		// Every slot holds a client that beats: none to evict, so busy.
		extra := dial(t, ns, addr)
		if _, err := NewPinger(extra).Ping(context.Background(), time.Second); !errors.Is(err, ErrBusy) {
			t.Fatalf("a client beyond MaxClients got %v; want ErrBusy", err)
		}
		if srv.Stats().Rejected != rejected+1 {
			t.Fatalf("rejected %d, want %d", srv.Stats().Rejected, rejected+1)
		}
		cancel()
		wg.Wait()
		if failed.Load() > 0 {
			t.Fatalf("%d pings of the clients within the limit failed", failed.Load())
		}
		waitFor(t, "the slots free up when clients leave", 3*time.Second, func() bool { return srv.Stats().Active == 0 })
		wellBehaved(t)
	})
	t.Run("flood", func(t *testing.T) {
		c := dial(t, ns, addr)
		var got atomic.Int64
		readDone := make(chan struct{})
		go func() {
			defer close(readDone)
			n, _ := io.Copy(io.Discard, c)
			got.Store(n)
		}()
		const floodFor = 1500 * time.Millisecond
		var sent int64
		frames := make([]byte, 0, 64*FrameSize)
		for i := 0; i < 64; i++ {
			frames = Frame{Type: TypePing, Seq: uint64(i + 1)}.Append(frames)
		}
		c.SetWriteDeadline(time.Now().Add(floodFor))
		start := time.Now()
		for time.Since(start) < floodFor {
			n, err := c.Write(frames)
			sent += int64(n)
			if err != nil {
				break
			}
		}
		// While the flood is stalled in its buffers, others are answered at once.
		p := NewPinger(dial(t, ns, addr))
		for i := 0; i < 5; i++ {
			rtt, err := p.Ping(context.Background(), time.Second)
			if err != nil || rtt > 500*time.Millisecond {
				t.Fatalf("during a flood a well-behaved ping took %v, %v", rtt, err)
			}
		}
		c.CloseWrite()
		c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		<-readDone
		elapsed := time.Since(start)
		pongs := got.Load() / FrameSize
		limit := int64(srv.Rate) + int64(elapsed.Seconds()*float64(srv.Rate)) + 2
		t.Logf("flood: %d frames sent in %v, %d answered (rate %d/s)", sent/FrameSize, floodFor, pongs, srv.Rate)
		if got.Load() > sent {
			t.Fatalf("answered %d bytes to %d sent", got.Load(), sent)
		}
		if pongs > limit {
			t.Fatalf("answered %d pings in %v, above the rate limit (at most %d)", pongs, elapsed, limit)
		}
		if pongs < int64(srv.Rate) {
			t.Fatalf("answered only %d pings of a flood: the limit should still answer %d/s", pongs, srv.Rate)
		}
	})

	waitFor(t, "every attacker is dropped", 5*time.Second, func() bool { return srv.Stats().Active == 0 })
	runtime.GC()
	runtime.ReadMemStats(&after)
	growth := int64(after.HeapInuse) - int64(before.HeapInuse)
	st := srv.Stats()
	t.Logf("heap in use %d KiB before, %d KiB after (%+d KiB); stats %+v", before.HeapInuse>>10, after.HeapInuse>>10, growth>>10, st)
	if growth > 2<<20 {
		t.Fatalf("heap in use grew by %d KiB under attack: not bounded", growth>>10)
	}
	if st.Malformed < 51 || st.TimedOut < 1 || st.Rejected < 1 || st.Throttled < 1 {
		t.Fatalf("stats %+v: want malformed >= 51, timed out, rejected and throttled >= 1", st)
	}
}

// TestServerShutdown: ending the context closes every connection and Serve
// returns, leaving no goroutine behind.
func TestServerShutdown(t *testing.T) {
	noLeak(t)
	ns := testnet.NewNS(t).NetNS()
	l, err := Listen(ns, "127.0.0.1:7077")
	if err != nil {
		t.Fatal(err)
	}
	srv := &Server{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	c := dial(t, ns, l.Addr().String())
	if _, err := NewPinger(c).Ping(ctx, time.Second); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve = %v, want nil on shutdown", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Serve did not return within 3 s of shutdown")
	}
	if _, closed := drain(c, time.Second); !closed {
		t.Fatal("a client's connection stayed open after shutdown")
	}
}
