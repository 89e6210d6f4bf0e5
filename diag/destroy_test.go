package diag

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpkeep/tcpkeep/internal/testnet"
)

// ended is one broadcast a test received, and when.
type ended struct {
	s  Socket
	at time.Time
}

// subscribeNS subscribes inside a test namespace and reads in a goroutine
// until the test ends. Sockets arrive on the first channel, errors on the
// second.
func subscribeNS(t testing.TB, ns *testnet.NS) (<-chan ended, <-chan error) {
	t.Helper()
	sub, err := SubscribeDestroyed(ns.NetNS())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	out, errs := make(chan ended, 1024), make(chan error, 1024)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for s, err := range sub.Sockets(ctx) {
			if err != nil {
				errs <- err
				continue
			}
			out <- ended{*s, time.Now()}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		sub.Close()
	})
	return out, errs
}

// waitEnd waits for the broadcast of the socket with this cookie.
func waitEnd(t testing.TB, ch <-chan ended, errs <-chan error, cookie uint64, within time.Duration) ended {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case e := <-ch:
			if e.s.Cookie == cookie {
				return e
			}
		case err := <-errs:
			t.Fatalf("subscription: %v", err)
		case <-deadline:
			t.Fatalf("no broadcast of cookie %#x within %v", cookie, within)
		}
	}
}

// readErr blocks in Read until the connection fails, and returns why.
func readErr(t testing.TB, c net.Conn, within time.Duration) error {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(within))
	buf := make([]byte, 64)
	for {
		if _, err := c.Read(buf); err != nil {
			// Not net.Error's Timeout: ETIMEDOUT, the kernel's drop, is one too.
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("connection still up after %v", within)
			}
			return err
		}
	}
}

// TestDestroyedOwnerClose: both ends of a connection closed by their owners
// are broadcast, with the cookies a dump showed.
func TestDestroyedOwnerClose(t *testing.T) {
	for _, host := range []string{"127.0.0.1", "[::1]"} {
		t.Run(host, func(t *testing.T) {
			ns := testnet.NewNS(t)
			ch, errs := subscribeNS(t, ns)
			l := ns.Listen(host + ":0")
			c := ns.Dial(l.Addr().String())
			srv := acceptHold(t, l)
			cc, sc := testnet.Cookie(t, c), testnet.Cookie(t, srv)
			if _, err := c.Write([]byte("hello")); err != nil {
				t.Fatal(err)
			}
			c.Close() // the active closer: freed when it enters TIME_WAIT
			e := waitEnd(t, ch, errs, cc, 5*time.Second)
			if e.s.Local != c.LocalAddr().(*net.TCPAddr).AddrPort() && e.s.Local.Port() != uint16(c.LocalAddr().(*net.TCPAddr).Port) {
				t.Errorf("client end broadcast as %s, want local %s", e.s.ID(), c.LocalAddr())
			}
			srv.Close() // the passive closer: freed at the end of LAST_ACK
			e2 := waitEnd(t, ch, errs, sc, 5*time.Second)
			for _, x := range []Socket{e.s, e2.s} {
				t.Logf("%s: state %s timer %s info %+v", x.ID(), x.State, x.Timer, x.Info)
				if x.State != StateClose || x.Timer != TimerOff || x.Info.Len == 0 {
					t.Errorf("%s: state %s timer %s tcp_info %d bytes, want CLOSE, off and a tcp_info", x.ID(), x.State, x.Timer, x.Info.Len)
				}
			}
			if e2.s.Info.BytesRecv < 5 {
				t.Errorf("server end: %d bytes received, want the 5 sent", e2.s.Info.BytesRecv)
			}
			// A listener is broadcast too when closed. Its cookie comes from a
			// dump: Go listens with MPTCP where it can (Go 1.24), so SO_COOKIE
			// on its descriptor names the MPTCP socket, not the TCP listener.
			port := uint16(l.Addr().(*net.TCPAddr).Port)
			ls := waitSocket(t, dialNS(t, ns), "the listener", func(s *Socket) bool { return s.State == StateListen && s.Local.Port() == port })
			l.Close()
			waitEnd(t, ch, errs, ls.Cookie, 5*time.Second)
		})
	}
}

// TestDestroyedKeepaliveDrop: a connection the kernel drops after unanswered
// keepalive probes is broadcast when its owner closes it, not before, with the
// probes in its final tcp_info.
func TestDestroyedKeepaliveDrop(t *testing.T) {
	p := testnet.NewPair(t)
	ch, errs := subscribeNS(t, p.A)
	l := p.B.Listen(testnet.AddrB.String() + ":7070")
	c := p.A.Dial(l.Addr().String(), testnet.Keepalive(time.Second, time.Second, 3))
	acceptHold(t, l)
	ck := testnet.Cookie(t, c)
	p.B.LinkDown()
	// tcp_keepalive_timer: the first probe after 1 s of silence, the drop at
	// the firing after the third unanswered one: 1 + 3 x 1 = 4 s.
	start := time.Now()
	err := readErr(t, c, 15*time.Second)
	if !errors.Is(err, syscall.ETIMEDOUT) {
		t.Fatalf("read after the peer vanished: %v, want ETIMEDOUT", err)
	}
	t.Logf("dropped after %v", time.Since(start).Round(time.Millisecond))
	// Dropped but not freed: the descriptor holds it, and a dump no longer
	// lists it (tcp_done unhashed it).
	if s := byCookie(dumpAll(t, dialNS(t, p.A), nil), ck); s != nil {
		t.Errorf("dropped socket still in the dump: %s %s", s.ID(), s.State)
	}
	closed := time.Now()
	c.Close()
	e := waitEnd(t, ch, errs, ck, 5*time.Second)
	if e.at.Before(closed) {
		t.Errorf("broadcast at %v, before the owner closed at %v", e.at, closed)
	}
	t.Logf("%s: state %s info %+v", e.s.ID(), e.s.State, e.s.Info)
	if e.s.State != StateClose || e.s.Info.Probes != 3 || e.s.Info.Retransmits != 0 {
		t.Errorf("final record: state %s, %d probes, %d retransmits; want CLOSE, 3, 0", e.s.State, e.s.Info.Probes, e.s.Info.Retransmits)
	}
}

// TestDestroyedSockDestroy: a socket closed with SOCK_DESTROY is broadcast
// (once its owner lets go of it).
func TestDestroyedSockDestroy(t *testing.T) {
	ns := testnet.NewNS(t)
	ch, errs := subscribeNS(t, ns)
	l := ns.Listen("127.0.0.1:0")
	c := ns.Dial(l.Addr().String())
	acceptHold(t, l)
	ck := testnet.Cookie(t, c)
	dc := dialNS(t, ns)
	s := byCookie(dumpAll(t, dc, nil), ck)
	if s == nil {
		t.Fatal("connection not in the dump")
	}
	if err := dc.Destroy(s); err != nil {
		t.Fatal(err)
	}
	if err := readErr(t, c, 5*time.Second); !errors.Is(err, syscall.ECONNABORTED) {
		t.Fatalf("read after SOCK_DESTROY: %v, want ECONNABORTED", err)
	}
	c.Close()
	e := waitEnd(t, ch, errs, ck, 5*time.Second)
	t.Logf("%s: state %s info %+v", e.s.ID(), e.s.State, e.s.Info)
	if e.s.State != StateClose {
		t.Errorf("final state %s, want CLOSE", e.s.State)
	}
}

// netlinkDrops reads how many messages the kernel dropped for the netlink
// socket with this inode in ns (the Drops column of /proc/net/netlink).
func netlinkDrops(t testing.TB, ns *testnet.NS, inode uint64) int {
	t.Helper()
	var drops int
	ns.Do(func() error {
		// thread-self: /proc/self/net would be the main thread's namespace.
		b, err := os.ReadFile("/proc/thread-self/net/netlink")
		if err != nil {
			return err
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) == 10 && f[9] == strconv.FormatUint(inode, 10) {
				drops, err = strconv.Atoi(f[8])
				return err
			}
		}
		return fmt.Errorf("no netlink socket with inode %d", inode)
	})
	return drops
}

// TestDestroyedOverrun: when broadcasts come faster than they are read and
// the receive buffer fills, the kernel drops some and the stream says so with
// ErrOverrun, once, then goes on delivering.
func TestDestroyedOverrun(t *testing.T) {
	ns := testnet.NewNS(t)
	sub, err := SubscribeDestroyed(ns.NetNS())
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if err := sub.SetReadBuffer(4096); err != nil { // the kernel makes it 8 KiB
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(sub.fd, &st); err != nil {
		t.Fatal(err)
	}

	// 20 connections, 40 sockets freed, nobody reading.
	l := ns.Listen("127.0.0.1:0")
	const n = 20
	for range n {
		c := ns.Dial(l.Addr().String())
		acceptHold(t, l).Close()
		c.Close()
	}
	waitFor(t, "the kernel to drop broadcasts", 10*time.Second, func() bool { return netlinkDrops(t, ns, st.Ino) > 0 })

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, overruns := 0, 0
	var last uint64
	for s, err := range sub.Sockets(ctx) {
		if errors.Is(err, ErrOverrun) {
			if got > 0 {
				t.Errorf("ErrOverrun after %d sockets, want it first: the kernel reports it before what it queued", got)
			}
			overruns++
			// The stream goes on: a socket freed now still comes.
			c := ns.Dial(l.Addr().String())
			acceptHold(t, l)
			last = testnet.Cookie(t, c)
			c.Close()
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		got++
		if s.Cookie == last {
			break
		}
	}
	drops := netlinkDrops(t, ns, st.Ino)
	if lost, err := sub.Lost(); err != nil || lost != uint64(drops) {
		t.Errorf("Lost: %d, %v; want the kernel's count, %d", lost, err, drops)
	}
	t.Logf("8 KiB buffer, %d sockets freed: %d delivered, the kernel counted %d drops", 2*n, got-1, drops)
	if overruns != 1 || got < 2 || got-1+drops < 2*n {
		t.Errorf("%d overruns, %d delivered, %d dropped: want 1 overrun, and every one of the %d freed delivered or dropped", overruns, got, drops, 2*n)
	}
}

// TestDestroyedCancelAndClose: a loop blocked waiting for broadcasts ends at
// ctx's end with ctx's error, the subscription stays usable, and Close from
// another goroutine ends a loop without an error.
func TestDestroyedCancelAndClose(t *testing.T) {
	ns := testnet.NewNS(t)
	sub, err := SubscribeDestroyed(ns.NetNS())
	if err != nil {
		t.Fatal(err)
	}
	run := func(ctx context.Context) <-chan error {
		res := make(chan error, 1)
		go func() {
			var last error
			for _, err := range sub.Sockets(ctx) {
				last = err
			}
			res <- last
		}()
		return res
	}
	wait := func(res <-chan error) error {
		select {
		case err := <-res:
			return err
		case <-time.After(5 * time.Second):
			t.Fatal("the loop did not end within 5s")
			return nil
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	res := run(ctx)
	cancel()
	if err := wait(res); !errors.Is(err, context.Canceled) {
		t.Fatalf("loop ended with %v, want context.Canceled", err)
	}

	// Still usable: the next loop gets the next socket.
	l := ns.Listen("127.0.0.1:0")
	c := ns.Dial(l.Addr().String())
	acceptHold(t, l)
	ck := testnet.Cookie(t, c)
	c.Close()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	found := false
	for s, err := range sub.Sockets(ctx2) {
		if err != nil {
			t.Fatal(err)
		}
		if s.Cookie == ck {
			found = true
			break
		}
	}
	if !found {
		t.Fatal("no broadcast after a cancelled loop")
	}

	res = run(context.Background())
	time.Sleep(50 * time.Millisecond) // let it block in the read; ending sooner passes too
	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}
	if err := wait(res); err != nil {
		t.Fatalf("loop ended by Close with %v, want no error", err)
	}
}

// TestDestroyedBatch: with SetBatch, a burst of closes comes through whole,
// each socket once, read in few wakeups: the first broadcast of the burst
// comes at most the batch wait late.
func TestDestroyedBatch(t *testing.T) {
	ns := testnet.NewNS(t)
	sub, err := SubscribeDestroyed(ns.NetNS())
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	const wait = 50 * time.Millisecond
	sub.SetBatch(wait)
	if err := sub.SetReadBuffer(4 << 20); err != nil {
		t.Fatal(err)
	}
	l := ns.Listen("127.0.0.1:0")
	const n = 300
	want := map[uint64]bool{}
	var conns []net.Conn
	for range n {
		c := ns.Dial(l.Addr().String())
		s, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		want[testnet.Cookie(t, c)] = true
		conns = append(conns, c, s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := map[uint64]int{}
	start := time.Now()
	for _, c := range conns {
		c.Close()
	}
	var first time.Duration
	for s, err := range sub.Sockets(ctx) {
		if err != nil {
			t.Fatalf("after %d sockets: %v", len(got), err)
		}
		if len(got) == 0 {
			first = time.Since(start)
		}
		got[s.Cookie]++
		n := 0
		for c := range want {
			if got[c] > 0 {
				n++
			}
		}
		if n == len(want) {
			break
		}
	}
	for c, k := range got {
		if want[c] && k != 1 {
			t.Errorf("cookie %#x broadcast %d times", c, k)
		}
	}
	if first > wait+time.Second {
		t.Errorf("the first broadcast came %v after the closes, want about the batch wait (%v)", first, wait)
	}
}
