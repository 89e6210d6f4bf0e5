package audit_test

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpkeep/tcpkeep/diag"
	"github.com/tcpkeep/tcpkeep/internal/audit"
	"github.com/tcpkeep/tcpkeep/internal/proc"
	"github.com/tcpkeep/tcpkeep/internal/testnet"
)

// endings subscribes to the destroyed sockets of ns for the rest of the test.
func endings(t *testing.T, ns *testnet.NS) <-chan diag.Socket {
	t.Helper()
	sub, err := diag.SubscribeDestroyed(ns.NetNS())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan diag.Socket, 256)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for s, err := range sub.Sockets(ctx) {
			if err != nil {
				if ctx.Err() == nil {
					t.Errorf("destroyed sockets of %s: %v", ns.Name, err)
				}
				return
			}
			ch <- *s
		}
	}()
	t.Cleanup(func() { cancel(); <-done; sub.Close() })
	return ch
}

// finalRecord waits for the broadcast of the socket with this cookie.
func finalRecord(t *testing.T, ch <-chan diag.Socket, cookie uint64) diag.Socket {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		select {
		case s := <-ch:
			if s.Cookie == cookie {
				return s
			}
		case <-deadline:
			t.Fatalf("no broadcast of cookie %#x within 15s", cookie)
		}
	}
}

// failure blocks in Read until the connection fails, and returns why.
func failure(t *testing.T, c net.Conn, within time.Duration) error {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(within))
	buf := make([]byte, 512)
	for {
		_, err := c.Read(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("connection still up after %v", within)
		}
		if err != nil {
			return err
		}
	}
}

// dumpCookie finds a socket of ns in a dump by cookie.
func dumpCookie(t *testing.T, ns *testnet.NS, cookie uint64) (*diag.Conn, *diag.Socket) {
	t.Helper()
	c, err := diag.Dial(ns.NetNS())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	for s, err := range c.Sockets(context.Background(), nil) {
		if err != nil {
			t.Fatal(err)
		}
		if s.Cookie == cookie {
			cp := *s
			return c, &cp
		}
	}
	return c, nil
}

// waitProbes polls until the socket has at least n unanswered keepalive probes.
func waitProbes(t *testing.T, ns *testnet.NS, cookie uint64, n uint8) *diag.Socket {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, s := dumpCookie(t, ns, cookie); s != nil && s.Timer == diag.TimerKeepalive && s.TimerRetrans >= n {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %d unanswered keepalive probes within 15s", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// userTimeout sets TCP_USER_TIMEOUT before connecting.
func userTimeout(d time.Duration) testnet.DialOption {
	return testnet.Control(func(fd int) error {
		return unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(d/time.Millisecond))
	})
}

// linkReady waits until both ends of the pair carry traffic: the kernel turns
// a new veth's carrier on and attaches its qdisc in linkwatch, up to a second
// after the link is set up, and drops what is sent before (a first SYN lost,
// a connection starting with a 1 s RTT sample and a 3 s RTO).
func linkReady(t *testing.T, p *testnet.Pair) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for _, ns := range []*testnet.NS{p.A, p.B} {
		for {
			out, err := exec.Command("ip", "-n", ns.Name, "-o", "link", "show", "dev", "veth0").CombinedOutput()
			if err != nil {
				t.Fatalf("ip link show in %s: %v: %s", ns.Name, err, out)
			}
			if strings.Contains(string(out), "state UP") && !strings.Contains(string(out), "qdisc noop") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("veth0 in %s not up within 5s: %s", ns.Name, out)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// realOpts reads a live socket's options from its owner (this process), as
// an audit with owners' options does: the hints a watcher would hold.
func realOpts(t *testing.T, ns *testnet.NS, cookie uint64) *proc.SockOpts {
	t.Helper()
	_, s := dumpCookie(t, ns, cookie)
	if s == nil {
		t.Fatalf("cookie %#x not in the dump of %s", cookie, ns.Name)
	}
	owners, err := proc.ScanOwners("/proc")
	if err != nil {
		t.Fatal(err)
	}
	o, ok := owners.Lookup(s.Inode)
	if !ok {
		t.Fatalf("no owner of inode %d", s.Inode)
	}
	r := proc.NewOptReader()
	defer r.Close()
	var opts proc.SockOpts
	if err := r.Read(o, s.Inode, &opts); err != nil {
		t.Fatal(err)
	}
	return &opts
}

// played is what an ending leaves for HowEnded besides the record.
type played struct {
	cookie    uint64 // A's end; 0: A's only connection to B
	opts      *proc.SockOpts
	destroyed bool
}

// ending is a way a connection ends, played in a Pair: A is the side whose
// last record is read (the subscriber's namespace), B its peer.
type ending struct {
	name string
	// bare is what HowEnded says from the record alone, hinted with the
	// socket's options and whether the caller destroyed it.
	bare, hinted audit.End
	play         func(t *testing.T, p *testnet.Pair) played
}

const endPort = ":7300"

// connect makes a connection from A to B, with data both ways, and returns
// both ends.
func connect(t *testing.T, p *testnet.Pair, opts ...testnet.DialOption) (a, b *net.TCPConn) {
	t.Helper()
	l := p.B.Listen(testnet.AddrB.String() + endPort)
	a = p.A.Dial(l.Addr().String(), opts...)
	l.SetDeadline(time.Now().Add(5 * time.Second))
	b, err := l.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if _, err := a.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Read(make([]byte, 4)); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Read(make([]byte, 4)); err != nil {
		t.Fatal(err)
	}
	return a, b
}

// wantErr checks why A's connection failed.
func wantErr(t *testing.T, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("A's connection failed with %v, want %v", err, want)
	}
}

// destroy closes a socket of ns with SOCK_DESTROY.
func destroy(t *testing.T, ns *testnet.NS, cookie uint64) {
	t.Helper()
	c, s := dumpCookie(t, ns, cookie)
	if s == nil {
		t.Fatalf("cookie %#x not in the dump of %s", cookie, ns.Name)
	}
	if err := c.Destroy(s); err != nil {
		t.Fatal(err)
	}
}

// The endings, each as the kernel plays it, with what HowEnded says of its
// record alone and with hints. Records are logged; TestHowEnded has those
// of Linux 6.18 as table rows.
var endingCases = []ending{
	{"closed by the owner, first (active close)", audit.EndClosed, audit.EndClosed, func(t *testing.T, p *testnet.Pair) played {
		a, _ := connect(t, p)
		ck, opts := testnet.Cookie(t, a), realOpts(t, p.A, testnet.Cookie(t, a))
		a.Close() // freed on entering TIME_WAIT, once B acknowledges the FIN
		return played{cookie: ck, opts: opts}
	}},
	{"closed by the owner, second (passive close)", audit.EndClosed, audit.EndClosed, func(t *testing.T, p *testnet.Pair) played {
		a, b := connect(t, p)
		ck, opts := testnet.Cookie(t, a), realOpts(t, p.A, testnet.Cookie(t, a))
		b.Close()
		wantErr(t, failure(t, a, 5*time.Second), io.EOF)
		a.Close() // freed when B acknowledges A's FIN (end of LAST_ACK)
		return played{cookie: ck, opts: opts}
	}},
	{"reset by the peer", audit.EndClosed, audit.EndClosed, func(t *testing.T, p *testnet.Pair) played {
		a, b := connect(t, p)
		ck, opts := testnet.Cookie(t, a), realOpts(t, p.A, testnet.Cookie(t, a))
		b.SetLinger(0) // close sends a RST
		b.Close()
		wantErr(t, failure(t, a, 5*time.Second), syscall.ECONNRESET)
		a.Close()
		return played{cookie: ck, opts: opts}
	}},
	{"dropped after unanswered keepalive probes", audit.EndKeepalive, audit.EndKeepalive, func(t *testing.T, p *testnet.Pair) played {
		a, _ := connect(t, p, testnet.Keepalive(time.Second, time.Second, 3))
		ck, opts := testnet.Cookie(t, a), realOpts(t, p.A, testnet.Cookie(t, a))
		p.B.Vanish()
		// tcp_keepalive_timer: probes at 1, 2 and 3 s of silence, the drop at
		// the firing after the third: 4 s.
		wantErr(t, failure(t, a, 15*time.Second), syscall.ETIMEDOUT)
		a.Close()
		return played{cookie: ck, opts: opts}
	}},
	{"keepalive probe answered with a reset (the peer restarted)", audit.EndKeepalive, audit.EndClosed, func(t *testing.T, p *testnet.Pair) played {
		a, b := connect(t, p, testnet.Keepalive(time.Second, time.Second, 5))
		ck, opts := testnet.Cookie(t, a), realOpts(t, p.A, testnet.Cookie(t, a))
		// B forgets the connection without telling A: its RST is dropped.
		// Back, it answers A's next probe with a RST.
		back := p.B.Vanish()
		destroy(t, p.B, testnet.Cookie(t, b))
		waitProbes(t, p.A, ck, 1)
		back()
		wantErr(t, failure(t, a, 15*time.Second), syscall.ECONNRESET)
		a.Close()
		return played{cookie: ck, opts: opts}
	}},
	{"dropped after tcp_retries2 retransmissions", audit.EndRetransmit, audit.EndRetransmit, func(t *testing.T, p *testnet.Pair) played {
		// retransmits_timed_out: 3 gives up 15 x TCP_RTO_MIN = 3 s after the
		// unacknowledged data was sent, at the next RTO firing.
		p.A.Sysctl("net/ipv4/tcp_retries2", "3")
		a, _ := connect(t, p)
		ck, opts := testnet.Cookie(t, a), realOpts(t, p.A, testnet.Cookie(t, a))
		p.B.Vanish()
		a.Write([]byte("are you there?"))
		wantErr(t, failure(t, a, 20*time.Second), syscall.ETIMEDOUT)
		a.Close()
		return played{cookie: ck, opts: opts}
	}},
	{"dropped by TCP_USER_TIMEOUT while retransmitting", audit.EndRetransmit, audit.EndUserTimeout, func(t *testing.T, p *testnet.Pair) played {
		a, _ := connect(t, p, userTimeout(1500*time.Millisecond))
		ck, opts := testnet.Cookie(t, a), realOpts(t, p.A, testnet.Cookie(t, a))
		p.B.Vanish()
		a.Write([]byte("are you there?"))
		wantErr(t, failure(t, a, 20*time.Second), syscall.ETIMEDOUT)
		a.Close()
		return played{cookie: ck, opts: opts}
	}},
	{"dropped by TCP_USER_TIMEOUT while probing (keepalive)", audit.EndKeepalive, audit.EndUserTimeout, func(t *testing.T, p *testnet.Pair) played {
		// Probes at 1 and 2 s of silence; at 3 s the silence passed 2.5 s
		// with a probe out: dropped, 2 probes of the 9 allowed.
		a, _ := connect(t, p, testnet.Keepalive(time.Second, time.Second, 9), userTimeout(2500*time.Millisecond))
		ck, opts := testnet.Cookie(t, a), realOpts(t, p.A, testnet.Cookie(t, a))
		p.B.Vanish()
		wantErr(t, failure(t, a, 20*time.Second), syscall.ETIMEDOUT)
		a.Close()
		return played{cookie: ck, opts: opts}
	}},
	{"dropped after unanswered zero-window probes (the peer stopped reading, then vanished)", audit.EndRetransmit, audit.EndRetransmit, func(t *testing.T, p *testnet.Pair) played {
		p.A.Sysctl("net/ipv4/tcp_retries2", "3") // tcp_probe_timer's max_probes
		// Default buffers: with a small SO_RCVBUF, B left 248 bytes of window,
		// A's window probe carried that much data, and the end went through
		// retransmissions instead.
		l := p.B.Listen(testnet.AddrB.String() + endPort)
		a := p.A.Dial(l.Addr().String())
		l.SetDeadline(time.Now().Add(5 * time.Second))
		b, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		ck, opts := testnet.Cookie(t, a), realOpts(t, p.A, testnet.Cookie(t, a))
		// Fill B's window; B never reads.
		buf := make([]byte, 1<<16)
		for {
			a.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
			if _, err := a.Write(buf); err != nil {
				break
			}
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			if _, s := dumpCookie(t, p.A, ck); s != nil && s.Timer == diag.TimerPersist && s.Info.SndWnd == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("no persist timer with a zero window within 10s")
			}
			time.Sleep(20 * time.Millisecond)
		}
		p.B.Vanish()
		a.SetWriteDeadline(time.Now().Add(30 * time.Second))
		for {
			if _, err = a.Write(buf); err != nil {
				break
			}
		}
		wantErr(t, err, syscall.ETIMEDOUT)
		a.Close()
		return played{cookie: ck, opts: opts}
	}},
	{"destroyed (SOCK_DESTROY), healthy", audit.EndClosed, audit.EndDestroyed, func(t *testing.T, p *testnet.Pair) played {
		a, _ := connect(t, p)
		ck, opts := testnet.Cookie(t, a), realOpts(t, p.A, testnet.Cookie(t, a))
		destroy(t, p.A, ck)
		wantErr(t, failure(t, a, 5*time.Second), syscall.ECONNABORTED)
		a.Close()
		return played{cookie: ck, opts: opts, destroyed: true}
	}},
	{"destroyed (SOCK_DESTROY) while half-open", audit.EndKeepalive, audit.EndDestroyed, func(t *testing.T, p *testnet.Pair) played {
		a, _ := connect(t, p, testnet.Keepalive(time.Second, time.Second, 5))
		ck, opts := testnet.Cookie(t, a), realOpts(t, p.A, testnet.Cookie(t, a))
		p.B.Vanish()
		waitProbes(t, p.A, ck, 2)
		destroy(t, p.A, ck)
		wantErr(t, failure(t, a, 5*time.Second), syscall.ECONNABORTED)
		a.Close()
		return played{cookie: ck, opts: opts, destroyed: true}
	}},
	{"closed by the owner while half-open (its FIN unanswered, tcp_orphan_retries)", audit.EndRetransmit, audit.EndRetransmit, func(t *testing.T, p *testnet.Pair) played {
		p.A.Sysctl("net/ipv4/tcp_orphan_retries", "1")
		a, _ := connect(t, p, testnet.Keepalive(time.Second, time.Second, 5))
		ck, opts := testnet.Cookie(t, a), realOpts(t, p.A, testnet.Cookie(t, a))
		p.B.Vanish()
		waitProbes(t, p.A, ck, 1)
		a.Close() // the FIN goes unanswered; the orphan is dropped after its retries
		return played{cookie: ck, opts: opts}
	}},
	{"connect timed out (tcp_syn_retries)", audit.EndConnectTimeout, audit.EndConnectTimeout, func(t *testing.T, p *testnet.Pair) played {
		p.A.Sysctl("net/ipv4/tcp_syn_retries", "1")
		p.B.Vanish()
		var err error
		p.A.Do(func() error {
			d := net.Dialer{Timeout: 20 * time.Second, KeepAlive: -1}
			var c net.Conn
			if c, err = d.Dial("tcp", testnet.AddrB.String()+endPort); err == nil {
				c.Close()
			}
			return nil
		})
		wantErr(t, err, syscall.ETIMEDOUT)
		return played{}
	}},
}

// TestHowEndedLive plays every ending in namespaces, receives the kernel's
// last record of the connection, and checks what HowEnded makes of it, from
// the record alone and with the hints a watcher holds.
func TestHowEndedLive(t *testing.T) {
	for _, e := range endingCases {
		t.Run(e.name, func(t *testing.T) {
			p := testnet.NewPair(t)
			linkReady(t, p)
			ch := endings(t, p.A)
			start := time.Now()
			pl := e.play(t, p)
			var s diag.Socket
			if pl.cookie == 0 {
				// No descriptor to read the cookie from: A's only broadcast to
				// the port.
				for s = range ch {
					if s.Remote.Port() == 7300 {
						break
					}
				}
			} else {
				s = finalRecord(t, ch, pl.cookie)
			}
			ti := s.Info
			t.Logf("record %v after the start: state %s, retransmits %d, probes %d, backoff %d, ca_state %d, unacked %d, lost %d, total_retrans %d, last_data_sent %v, last_data_recv %v, last_ack_recv %v, rtt %v, rto %v, bytes_acked %d, bytes_received %d, snd_wnd %d, options %d",
				time.Since(start).Round(time.Millisecond), s.State, ti.Retransmits, ti.Probes, ti.Backoff, ti.CAState, ti.Unacked, ti.Lost, ti.TotalRetrans,
				ti.LastDataSent, ti.LastDataRecv, ti.LastAckRecv, ti.RTT, ti.RTO, ti.BytesAcked, ti.BytesRecv, ti.SndWnd, ti.Options)
			if s.State != diag.StateClose || s.Timer != diag.TimerOff {
				t.Errorf("last record in state %s, timer %s: want CLOSE and no timer", s.State, s.Timer)
			}
			if got := audit.HowEnded(&s, audit.EndHints{}); got != e.bare {
				t.Errorf("HowEnded(record) = %s, want %s", got, e.bare)
			}
			if got := audit.HowEnded(&s, audit.EndHints{Destroyed: pl.destroyed, Sockopts: pl.opts}); got != e.hinted {
				t.Errorf("HowEnded(record, hints) = %s, want %s (hints: destroyed %v, options %+v)", got, e.hinted, pl.destroyed, pl.opts)
			}
		})
	}
}
