package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
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

// Keepalive is a socket's own keepalive setting: SO_KEEPALIVE on, with
// TCP_KEEPIDLE, TCP_KEEPINTVL and TCP_KEEPCNT overriding the namespace's sysctls.
type Keepalive struct {
	// Idle is TCP_KEEPIDLE: silence before the first probe, whole seconds.
	Idle time.Duration
	// Intvl is TCP_KEEPINTVL: time between unanswered probes, whole seconds.
	Intvl time.Duration
	// Count is TCP_KEEPCNT: unanswered probes before the kernel drops the connection.
	Count int
}

// Ranges setsockopt accepts (MAX_TCP_KEEPIDLE, MAX_TCP_KEEPINTVL, MAX_TCP_KEEPCNT).
const (
	maxKeepSeconds = 32767
	maxKeepCount   = 127
)

// Validate checks the values are whole seconds and counts that setsockopt accepts.
func (k Keepalive) Validate() error {
	for _, v := range []struct {
		name string
		d    time.Duration
	}{{"TCP_KEEPIDLE", k.Idle}, {"TCP_KEEPINTVL", k.Intvl}} {
		if v.d < time.Second || v.d%time.Second != 0 || v.d > maxKeepSeconds*time.Second {
			return fmt.Errorf("%s %v: want whole seconds from 1 to %d", v.name, v.d, maxKeepSeconds)
		}
	}
	if k.Count < 1 || k.Count > maxKeepCount {
		return fmt.Errorf("TCP_KEEPCNT %d: want 1 to %d", k.Count, maxKeepCount)
	}
	return nil
}

// SocketOptions are set on a connection's socket before it connects.
type SocketOptions struct {
	// Keepalive, when not nil, turns SO_KEEPALIVE on with these per-socket values.
	// Nil turns it off: Go's net package would otherwise turn it on with its own
	// 15 s, and a probe must not send packets the operator did not ask for.
	Keepalive *Keepalive
	// UserTimeout, when positive, is TCP_USER_TIMEOUT: how long data may stay
	// unacknowledged before the kernel drops the connection (milliseconds
	// precision).
	UserTimeout time.Duration
	// ConnectTimeout bounds the connect; zero means 10 s.
	ConnectTimeout time.Duration
}

// apply sets the options on a raw socket.
func (o SocketOptions) apply(fd int) error {
	set := func(level, opt, v int, name string) error {
		if err := unix.SetsockoptInt(fd, level, opt, v); err != nil {
			return fmt.Errorf("setsockopt %s=%d: %w", name, v, err)
		}
		return nil
	}
	if o.Keepalive == nil {
		if err := set(unix.SOL_SOCKET, unix.SO_KEEPALIVE, 0, "SO_KEEPALIVE"); err != nil {
			return err
		}
	} else {
		k := *o.Keepalive
		if err := k.Validate(); err != nil {
			return err
		}
		for _, v := range []struct {
			level, opt, v int
			name          string
		}{
			{unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1, "SO_KEEPALIVE"},
			{unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, int(k.Idle / time.Second), "TCP_KEEPIDLE"},
			{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, int(k.Intvl / time.Second), "TCP_KEEPINTVL"},
			{unix.IPPROTO_TCP, unix.TCP_KEEPCNT, k.Count, "TCP_KEEPCNT"},
		} {
			if err := set(v.level, v.opt, v.v, v.name); err != nil {
				return err
			}
		}
	}
	if o.UserTimeout > 0 {
		ms := o.UserTimeout.Milliseconds()
		if ms < 1 || ms > 1<<31-1 {
			return fmt.Errorf("TCP_USER_TIMEOUT %v: want 1ms to about 24 days", o.UserTimeout)
		}
		return set(unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(ms), "TCP_USER_TIMEOUT")
	}
	return nil
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

// ReadSocketOptions reads back what a connection's socket has: SO_KEEPALIVE and,
// when on, the per-socket keepalive values, and TCP_USER_TIMEOUT.
func ReadSocketOptions(c syscall.Conn) (SocketOptions, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return SocketOptions{}, err
	}
	var o SocketOptions
	var gerr error
	cerr := rc.Control(func(fd uintptr) {
		get := func(level, opt int) int {
			v, err := unix.GetsockoptInt(int(fd), level, opt)
			if err != nil && gerr == nil {
				gerr = err
			}
			return v
		}
		if get(unix.SOL_SOCKET, unix.SO_KEEPALIVE) != 0 {
			o.Keepalive = &Keepalive{
				Idle:  time.Duration(get(unix.IPPROTO_TCP, unix.TCP_KEEPIDLE)) * time.Second,
				Intvl: time.Duration(get(unix.IPPROTO_TCP, unix.TCP_KEEPINTVL)) * time.Second,
				Count: get(unix.IPPROTO_TCP, unix.TCP_KEEPCNT),
			}
		}
		o.UserTimeout = time.Duration(get(unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT)) * time.Millisecond
	})
	if cerr != nil {
		return SocketOptions{}, cerr
	}
	if gerr != nil {
		return SocketOptions{}, fmt.Errorf("getsockopt: %w", gerr)
	}
	return o, nil
}
