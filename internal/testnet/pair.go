package testnet

import (
	"context"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	vnl "github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Addresses of the two ends of a Pair. Each pair is its own isolated network, so
// every test may use the same ones.
var (
	AddrA  = netip.MustParseAddr("10.77.0.1")
	AddrB  = netip.MustParseAddr("10.77.0.2")
	AddrA6 = netip.MustParseAddr("fd77::1")
	AddrB6 = netip.MustParseAddr("fd77::2")
)

// Pair is two namespaces joined by one veth pair: A (10.77.0.1, fd77::1) on
// interface "veth0" and B (10.77.0.2, fd77::2) on its own "veth0".
type Pair struct {
	A, B *NS
}

// NewPair builds two namespaces joined by a veth pair, addressed and up.
func NewPair(t testing.TB) *Pair {
	t.Helper()
	p := &Pair{A: NewNS(t), B: NewNS(t)}
	ha := p.A.handle()
	peerNS := p.B.Fd()
	veth := &vnl.Veth{
		LinkAttrs:     vnl.LinkAttrs{Name: "veth0"},
		PeerName:      "vethb",
		PeerNamespace: vnl.NsFd(peerNS),
	}
	if err := ha.LinkAdd(veth); err != nil {
		t.Fatalf("add veth pair: %v", err)
	}
	hb := p.B.handle()
	// The peer is created in B under a temporary name: rename it so both ends read alike.
	lb, err := hb.LinkByName("vethb")
	if err != nil {
		t.Fatalf("find veth peer in %s: %v", p.B.Name, err)
	}
	if err := hb.LinkSetName(lb, "veth0"); err != nil {
		t.Fatalf("rename veth peer: %v", err)
	}
	p.A.setup(ha, AddrA, AddrA6)
	p.B.setup(hb, AddrB, AddrB6)
	return p
}

func (ns *NS) setup(h *vnl.Handle, v4, v6 netip.Addr) {
	ns.t.Helper()
	l, err := h.LinkByName("veth0")
	if err != nil {
		ns.t.Fatalf("veth0 in %s: %v", ns.Name, err)
	}
	for _, a := range []netip.Prefix{netip.PrefixFrom(v4, 24), netip.PrefixFrom(v6, 64)} {
		addr := &vnl.Addr{IPNet: &net.IPNet{IP: a.Addr().AsSlice(), Mask: net.CIDRMask(a.Bits(), a.Addr().BitLen())}}
		if a.Addr().Is6() {
			addr.Flags = unix.IFA_F_NODAD // usable at once, no duplicate detection wait
		}
		if err := h.AddrAdd(l, addr); err != nil {
			ns.t.Fatalf("add %s in %s: %v", a, ns.Name, err)
		}
	}
	if err := h.LinkSetUp(l); err != nil {
		ns.t.Fatalf("veth0 up in %s: %v", ns.Name, err)
	}
}

// LinkDown sets the namespace's veth0 down: its peer's packets go nowhere and
// nothing answers, no RST, no ICMP. The peer has vanished.
func (ns *NS) LinkDown() {
	ns.t.Helper()
	h := ns.handle()
	l, err := h.LinkByName("veth0")
	if err != nil {
		ns.t.Fatalf("veth0 in %s: %v", ns.Name, err)
	}
	if err := h.LinkSetDown(l); err != nil {
		ns.t.Fatalf("veth0 down in %s: %v", ns.Name, err)
	}
}

// Listen opens a TCP listener inside the namespace (addr as for net.Listen;
// port 0 picks one). It is closed when the test ends.
func (ns *NS) Listen(addr string) *net.TCPListener {
	ns.t.Helper()
	var l net.Listener
	ns.Do(func() (err error) {
		l, err = net.Listen("tcp", addr)
		return err
	})
	ns.t.Cleanup(func() { l.Close() })
	return l.(*net.TCPListener)
}

// ListenBacklog opens a listener on 127.0.0.1:port inside the namespace with an
// exact backlog (net.Listen always asks for somaxconn), so a test can fill its
// accept queue. It is closed when the test ends.
func (ns *NS) ListenBacklog(port, backlog int) {
	ns.t.Helper()
	var fd int
	ns.Do(func() (err error) {
		if fd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0); err != nil {
			return err
		}
		if err = unix.Bind(fd, &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			unix.Close(fd)
			return err
		}
		if err = unix.Listen(fd, backlog); err != nil {
			unix.Close(fd)
		}
		return err
	})
	ns.t.Cleanup(func() { unix.Close(fd) })
}

// DialOption sets up a connection before it connects.
type DialOption func(*net.Dialer)

// Keepalive turns keepalive on with per-socket TCP_KEEPIDLE, TCP_KEEPINTVL and
// TCP_KEEPCNT.
func Keepalive(idle, intvl time.Duration, cnt int) DialOption {
	return func(d *net.Dialer) {
		d.KeepAliveConfig = net.KeepAliveConfig{Enable: true, Idle: idle, Interval: intvl, Count: cnt}
	}
}

// NoKeepalive leaves SO_KEEPALIVE off (Go turns it on by default).
func NoKeepalive() DialOption {
	return func(d *net.Dialer) { d.KeepAlive = -1; d.KeepAliveConfig = net.KeepAliveConfig{Enable: false} }
}

// Control runs fn on the raw socket before it connects, for options the Dialer
// does not have.
func Control(fn func(fd int) error) DialOption {
	return func(d *net.Dialer) {
		d.Control = func(_, _ string, c syscall.RawConn) error {
			var err error
			if cerr := c.Control(func(fd uintptr) { err = fn(int(fd)) }); cerr != nil {
				return cerr
			}
			return err
		}
	}
}

// Dial connects from inside the namespace; the connection is closed when the test
// ends. Without options, keepalive is off.
func (ns *NS) Dial(addr string, opts ...DialOption) *net.TCPConn {
	ns.t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second}
	NoKeepalive()(d)
	for _, o := range opts {
		o(d)
	}
	var c net.Conn
	ns.Do(func() (err error) {
		c, err = d.DialContext(context.Background(), "tcp", addr)
		return err
	})
	ns.t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// Cookie is the kernel's identity of a socket (SO_COOKIE), what sock_diag reports.
func Cookie(t testing.TB, c syscall.Conn) uint64 {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v uint64
	var gerr error
	if err := rc.Control(func(fd uintptr) {
		var ck uint64
		ck, gerr = unix.GetsockoptUint64(int(fd), unix.SOL_SOCKET, unix.SO_COOKIE)
		v = ck
	}); err != nil {
		t.Fatal(err)
	}
	if gerr != nil {
		t.Fatalf("SO_COOKIE: %v", gerr)
	}
	return v
}
