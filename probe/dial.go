package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tcpkeep/tcpkeep/sysctl"
)

// Namespace is a network namespace to make sockets in: Do runs fn on an OS thread
// that has entered it (internal/netns.NS is one). A nil Namespace is the caller's.
type Namespace interface {
	Do(fn func() error) error
}

// DefaultPort is the heartbeat's TCP port where an address gives none.
const DefaultPort = 7077

// in runs fn inside ns, or right here when ns is nil.
func in(ns Namespace, fn func() error) error {
	if ns == nil {
		return fn()
	}
	return ns.Do(fn)
}

// SocketOptions are set on a connection's socket before it connects.
type SocketOptions struct {
	// Keepalive, when not nil, turns SO_KEEPALIVE on with these per-socket values:
	// TCP_KEEPIDLE (Time), TCP_KEEPINTVL (Intvl) and TCP_KEEPCNT (Probes). Nil
	// turns it off: Go's net package would otherwise turn it on with its own 15 s,
	// and a probe must not send packets the operator did not ask for.
	Keepalive *sysctl.Keepalive
	// UserTimeout, when positive, is TCP_USER_TIMEOUT: how long data may stay
	// unacknowledged before the kernel drops the connection (milliseconds
	// precision).
	UserTimeout time.Duration
	// ConnectTimeout bounds the connect; zero means 10 s.
	ConnectTimeout time.Duration
}

// Dial connects to addr (host:port) over TCP from inside ns (nil: the caller's
// namespace), with o set on the socket before it connects.
func Dial(ctx context.Context, ns Namespace, addr string, o SocketOptions) (*net.TCPConn, error) {
	timeout := o.ConnectTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	d := &net.Dialer{
		Timeout:   timeout,
		KeepAlive: -1, // with KeepAliveConfig.Enable false: Go leaves the socket alone
		Control: func(_, _ string, c syscall.RawConn) error {
			var err error
			if cerr := c.Control(func(fd uintptr) { err = o.apply(int(fd)) }); cerr != nil {
				return cerr
			}
			return err
		},
	}
	if ns != nil {
		// Go resolves names on other threads than the one inside ns: send its
		// DNS queries from inside ns too, or they leave through the host's
		// network and a name only the namespace can resolve fails.
		d.Resolver = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
			var c net.Conn
			err := ns.Do(func() (err error) {
				c, err = (&net.Dialer{}).DialContext(ctx, network, address)
				return err
			})
			return c, err
		}}
	}
	var c net.Conn
	err := in(ns, func() (err error) {
		c, err = d.DialContext(ctx, "tcp", addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		c.Close()
		return nil, errors.New("connect to " + addr + ": not a TCP connection")
	}
	return tc, nil
}

// Listen opens a TCP listener on addr inside ns (nil: the caller's namespace).
// Connections it accepts have keepalive off: a server's keepalive probes would
// refresh the path's idle timer and spoil what DiscoverIdle measures.
func Listen(ns Namespace, addr string) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: -1}
	var l net.Listener
	err := in(ns, func() (err error) {
		l, err = lc.Listen(context.Background(), "tcp", addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return l, nil
}

// Address reads a heartbeat server's address: HOST:PORT, [IPV6]:PORT, or an IP
// address or host name alone for DefaultPort. It returns it as HOST:PORT.
func Address(s string) (string, error) {
	if s == "" {
		return "", errors.New("empty address: want HOST:PORT")
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.AddrPortFrom(a, DefaultPort).String(), nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		if strings.Contains(s, ":") {
			return "", fmt.Errorf("address %q: want HOST:PORT, [IPV6]:PORT or an IP address", s)
		}
		return net.JoinHostPort(s, strconv.Itoa(DefaultPort)), nil
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("address %q: port %q is not 1 to 65535", s, port)
	}
	if host == "" {
		return "", fmt.Errorf("address %q: no host", s)
	}
	return s, nil
}
