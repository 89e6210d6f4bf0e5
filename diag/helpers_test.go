package diag

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpkeep/tcpkeep/internal/testnet"
)

// dialNS opens a Conn inside a test namespace.
func dialNS(t testing.TB, ns *testnet.NS) *Conn {
	t.Helper()
	c, err := Dial(ns.NetNS())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// dumpAll collects copies of every socket f selects.
func dumpAll(t testing.TB, c *Conn, f *Filter) []Socket {
	t.Helper()
	var out []Socket
	for s, err := range c.Sockets(context.Background(), f) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, *s)
	}
	return out
}

// byCookie finds a socket in a dump.
func byCookie(socks []Socket, cookie uint64) *Socket {
	for i := range socks {
		if socks[i].Cookie == cookie {
			return &socks[i]
		}
	}
	return nil
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	testnet.Wait(t, d, what, cond)
}

// waitSocket polls the dump of c until a socket satisfies cond.
func waitSocket(t testing.TB, c *Conn, what string, cond func(*Socket) bool) Socket {
	t.Helper()
	var got Socket
	waitFor(t, what, 15*time.Second, func() bool {
		for _, s := range dumpAll(t, c, nil) {
			if cond(&s) {
				got = s
				return true
			}
		}
		return false
	})
	return got
}

// scenario is a set of real sockets in known states, in two pairs of
// namespaces: Live (both ends up) and Gone (B's link down after connecting).
type scenario struct {
	Live, Gone *testnet.Pair
}

// Ports of the scenario's listeners (the same in both families).
const (
	portKeepalive = 7001
	portNoKA      = 7002
	portCloseWait = 7003
	portTimeWait  = 7004
	portPersist   = 7005
	portRetrans   = 7006
	portSynSent   = 7007
)

// buildScenario puts sockets into LISTEN, ESTABLISHED with and without
// keepalive, SYN_SENT, CLOSE_WAIT, FIN_WAIT2, TIME_WAIT, a persist timer and a
// retransmit timer, over the family of addr (testnet.AddrB or AddrB6).
func buildScenario(t testing.TB, v6 bool) *scenario {
	t.Helper()
	sc := &scenario{Live: testnet.NewPair(t), Gone: testnet.NewPair(t)}
	hostB, unreachable := testnet.AddrB.String(), "10.77.0.99"
	if v6 {
		hostB, unreachable = "["+testnet.AddrB6.String()+"]", "[fd77::99]"
	}
	at := func(port int) string { return hostB + ":" + strconv.Itoa(port) }
	A, B := sc.Live.A, sc.Live.B

	// ESTABLISHED with keepalive (1 s) and without; LISTEN on B.
	lKA := B.Listen(at(portKeepalive))
	A.Dial(at(portKeepalive), testnet.Keepalive(time.Second, time.Second, 5))
	acceptHold(t, lKA)
	lNo := B.Listen(at(portNoKA))
	A.Dial(at(portNoKA))
	acceptHold(t, lNo)

	// CLOSE_WAIT on B (it never closes), FIN_WAIT2 on A. An orphaned FIN_WAIT2
	// socket becomes a timewait minisocket unless its FIN_WAIT2 timeout
	// (TCP_LINGER2) exceeds 60 s: then it stays a full socket whose sk_timer
	// runs the timeout, reported with the keepalive timer's code.
	lCW := B.Listen(at(portCloseWait))
	cw := A.Dial(at(portCloseWait), testnet.Control(func(fd int) error {
		return unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_LINGER2, 120)
	}))
	acceptHold(t, lCW)
	cw.Close()

	// TIME_WAIT on A: A closes first, then B.
	lTW := B.Listen(at(portTimeWait))
	tw := A.Dial(at(portTimeWait))
	s := acceptHold(t, lTW)
	tw.Close()
	waitFor(t, "the FIN to reach B", 5*time.Second, func() bool {
		s.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
		_, err := s.Read(make([]byte, 1))
		return errors.Is(err, io.EOF)
	})
	s.Close()

	// Persist: B's receive buffer is tiny and B never reads; A writes until the
	// window is shut.
	var lP net.Listener
	B.Do(func() (err error) {
		lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
			return c.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 4096) })
		}}
		lP, err = lc.Listen(context.Background(), "tcp", at(portPersist))
		return err
	})
	t.Cleanup(func() { lP.Close() })
	p := A.Dial(at(portPersist), testnet.Control(func(fd int) error {
		return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4096)
	}))
	acceptHold(t, lP.(*net.TCPListener))
	fill(p)

	// SYN_SENT: a SYN to an address on the link that nobody has, made by uid
	// 1000 so that the uid column is not always 0.
	A.Do(func() error { return synSent(t, unreachable+":"+strconv.Itoa(portSynSent), v6) })

	// Retransmitting: data in flight to a peer whose link went down.
	G := sc.Gone
	lR := G.B.Listen(at(portRetrans))
	r := G.A.Dial(at(portRetrans), testnet.Keepalive(time.Second, time.Second, 5))
	acceptHold(t, lR)
	G.B.LinkDown()
	if _, err := r.Write([]byte("are you there?")); err != nil {
		t.Fatal(err)
	}
	return sc
}

// acceptHold accepts one connection and keeps it open until the test ends.
func acceptHold(t testing.TB, l *net.TCPListener) *net.TCPConn {
	t.Helper()
	l.SetDeadline(time.Now().Add(5 * time.Second))
	c, err := l.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// fill writes to c until the peer's window and the send buffer are full.
func fill(c *net.TCPConn) {
	buf := make([]byte, 4096)
	for {
		c.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
		if _, err := c.Write(buf); err != nil {
			return
		}
	}
}

// synSent starts a non-blocking connect to addr, which nobody answers, as
// uid 1000 (the socket's uid is the creator's fsuid). It runs on a locked
// thread inside the namespace; the socket is closed when the test ends.
func synSent(t testing.TB, addr string, v6 bool) error {
	ap := netip.MustParseAddrPort(addr)
	fam := unix.AF_INET
	var sa unix.Sockaddr
	if !v6 {
		sa = &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	} else {
		fam = unix.AF_INET6
		sa = &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
	}
	old := unix.Getuid() // root: the fsuid follows the euid
	unix.Setfsuid(1000)
	fd, err := unix.Socket(fam, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	unix.Setfsuid(old)
	if err != nil {
		return err
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Connect(fd, sa); err != nil && !errors.Is(err, unix.EINPROGRESS) {
		return err
	}
	return nil
}
