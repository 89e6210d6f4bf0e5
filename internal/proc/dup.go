package proc

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpkeep/tcpkeep/sysctl"
)

// Errors about one socket a caller acts on through its owner. Test with
// errors.Is; ErrNotPermitted, ErrUnsupported and ErrGone apply too.
var (
	// ErrNoOwner: no process holds the socket, as far as a scan of /proc
	// shows: the application closed it (an orphan finishing its close holds
	// no descriptor), or its owner is hidden from this process.
	ErrNoOwner = errors.New("no process holds the socket")
	// ErrIdentityMismatch: the owner's descriptor no longer refers to the
	// socket the dump reported (another inode or cookie): it was closed and
	// its number reused. Nothing was done to what it refers to now.
	ErrIdentityMismatch = errors.New("the descriptor no longer refers to that socket")
	// ErrOptionUnsupported: the socket refuses an option: an MPTCP socket has
	// no TCP_USER_TIMEOUT (ENOPROTOOPT on 6.18).
	ErrOptionUnsupported = errors.New("the socket does not support the option")
)

// Sock is this process's duplicate of a socket descriptor another process
// holds (pidfd_getfd, Linux 5.6): not a copy but the very same socket, so
// options set on it are the owner's, and shutting it down ends the owner's
// connection. Close it when done: it keeps the socket alive while open.
type Sock struct {
	// Owner is the process and descriptor it was taken from.
	Owner Owner
	// Inode and Cookie are the identity it was checked against.
	Inode  uint32
	Cookie uint64
	fd     int
	mptcp  bool
}

// Dup duplicates descriptor o.FD of process o.PID and checks that it is the
// socket a dump reported: its inode (fstat) and its cookie (SO_COOKIE) must
// both match, or nothing is returned and the duplicate is closed at once.
// A cookie of 0 is not checked.
//
// An MPTCP socket is the exception to the cookie: sock_diag's TCP dump shows
// its TCP subflow, which shares the MPTCP socket's inode (the subflow is
// grafted onto the same struct socket) but has a cookie of its own. A
// descriptor whose protocol is MPTCP and whose inode matches is that socket;
// MPTCP reports it.
//
// The error wraps ErrGone (the process or the descriptor is gone),
// ErrIdentityMismatch, ErrNotPermitted (a *PermissionError) or ErrUnsupported.
func (r *OptReader) Dup(o Owner, inode uint32, cookie uint64) (*Sock, error) {
	s, err := r.dup(o, inode, cookie)
	if errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE) {
		r.Close() // as Read does: let go of the cached pidfds, try once more
		s, err = r.dup(o, inode, cookie)
	}
	return s, err
}

func (r *OptReader) dup(o Owner, inode uint32, cookie uint64) (*Sock, error) {
	pidfd, err := r.pidfd(o.PID)
	if err != nil {
		return nil, err
	}
	fd, err := unix.PidfdGetfd(pidfd, o.FD, 0) // the new descriptor is close-on-exec
	if err != nil {
		return nil, classify(fmt.Sprintf("pidfd_getfd pid %d fd %d", o.PID, o.FD), o.PID, err)
	}
	s := &Sock{Owner: o, Inode: inode, Cookie: cookie, fd: fd}
	if err := s.check(); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return s, nil
}

// check compares the duplicate with the identity it should have.
func (s *Sock) check() error {
	var st unix.Stat_t
	if err := unix.Fstat(s.fd, &st); err != nil {
		return fmt.Errorf("fstat pid %d fd %d: %w", s.Owner.PID, s.Owner.FD, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK || st.Ino != uint64(s.Inode) {
		return fmt.Errorf("pid %d fd %d is inode %d, not socket inode %d: %w", s.Owner.PID, s.Owner.FD, st.Ino, s.Inode, ErrIdentityMismatch)
	}
	proto, err := unix.GetsockoptInt(s.fd, unix.SOL_SOCKET, unix.SO_PROTOCOL)
	if err != nil {
		return fmt.Errorf("getsockopt SO_PROTOCOL pid %d fd %d: %w", s.Owner.PID, s.Owner.FD, err)
	}
	switch proto {
	case unix.IPPROTO_MPTCP:
		s.mptcp = true
		return nil
	case unix.IPPROTO_TCP:
	default:
		return fmt.Errorf("pid %d fd %d is protocol %d, not TCP: %w", s.Owner.PID, s.Owner.FD, proto, ErrIdentityMismatch)
	}
	if s.Cookie == 0 {
		return nil
	}
	ck, err := unix.GetsockoptUint64(s.fd, unix.SOL_SOCKET, unix.SO_COOKIE)
	if err != nil {
		return fmt.Errorf("getsockopt SO_COOKIE pid %d fd %d: %w", s.Owner.PID, s.Owner.FD, err)
	}
	if ck != s.Cookie {
		return fmt.Errorf("pid %d fd %d is socket cookie %#x, not %#x: %w", s.Owner.PID, s.Owner.FD, ck, s.Cookie, ErrIdentityMismatch)
	}
	return nil
}

// MPTCP says whether the descriptor is an MPTCP socket whose TCP subflow the
// dump reported.
func (s *Sock) MPTCP() bool { return s.mptcp }

// Close closes the duplicate; the owner's descriptor stays open.
func (s *Sock) Close() error {
	if s.fd < 0 {
		return nil
	}
	err := unix.Close(s.fd)
	s.fd = -1
	return err
}

// Options reads the socket's keepalive options.
func (s *Sock) Options() (SockOpts, error) {
	var o SockOpts
	err := getOpts(s.fd, &o)
	return o, err
}

// Keepalive is what arming sets on a socket: SO_KEEPALIVE on, and Time,
// Intvl and Probes as TCP_KEEPIDLE, TCP_KEEPINTVL and TCP_KEEPCNT (the same
// names and ranges as the tunables they override); TCP_USER_TIMEOUT too when
// SetUserTimeout.
type Keepalive struct {
	sysctl.Keepalive
	// UserTimeout is TCP_USER_TIMEOUT, in whole milliseconds; 0 is the
	// kernel's default (tcp_retries2). Set only when SetUserTimeout.
	UserTimeout    time.Duration
	SetUserTimeout bool
}

// maxUserTimeout is the largest TCP_USER_TIMEOUT setsockopt takes: an int of
// milliseconds.
const maxUserTimeout = (1<<31 - 1) * time.Millisecond

// Check says whether every value is one setsockopt accepts.
func (k Keepalive) Check() error {
	for _, v := range []struct {
		name string
		d    time.Duration
		max  time.Duration
	}{{"TCP_KEEPIDLE", k.Time, sysctl.MaxTime}, {"TCP_KEEPINTVL", k.Intvl, sysctl.MaxIntvl}} {
		if v.d < time.Second || v.d > v.max || v.d%time.Second != 0 {
			return fmt.Errorf("%s %v: want whole seconds from 1 to %d", v.name, v.d, v.max/time.Second)
		}
	}
	if k.Probes < 1 || k.Probes > sysctl.MaxProbes {
		return fmt.Errorf("TCP_KEEPCNT %d: want 1 to %d", k.Probes, sysctl.MaxProbes)
	}
	if k.SetUserTimeout && (k.UserTimeout < 0 || k.UserTimeout > maxUserTimeout || k.UserTimeout%time.Millisecond != 0) {
		return fmt.Errorf("TCP_USER_TIMEOUT %v: want whole milliseconds from 0 to %v", k.UserTimeout, maxUserTimeout)
	}
	return nil
}

// Holds says whether a socket with options o already has k: keepalive on and
// the same values (TCP_USER_TIMEOUT compared only when k sets it). Values o
// read back from the namespace's tunables count as the same.
func (k Keepalive) Holds(o SockOpts) bool {
	return o.KeepaliveOn && o.Keepalive.Time == k.Time && o.Keepalive.Intvl == k.Intvl && o.Keepalive.Probes == k.Probes &&
		(!k.SetUserTimeout || o.UserTimeout == k.UserTimeout)
}

// sockopt is one setsockopt call and how to undo it.
type sockopt struct {
	name        string
	level, opt  int
	val, before int
}

// Arm sets k on the socket and reads the options back; before is what Options
// read, for the undo. It fails if a value does not read back as set.
//
// The order follows the kernel: TCP_KEEPINTVL, TCP_KEEPCNT and
// TCP_USER_TIMEOUT only store a value; SO_KEEPALIVE on a socket that had it off
// starts the keepalive timer at TCP_KEEPIDLE from now (tcp_set_keepalive);
// TCP_KEEPIDLE last, with keepalive on, restarts the timer at TCP_KEEPIDLE
// after the last packet received, or at once if that is past
// (tcp_sock_set_keepidle_locked, net/ipv4/tcp.c). So a connection idle for an
// hour and armed with 60 s probes now, not in 60 s; a connection to a dead peer
// is dropped Time + Probes x Intvl after it last heard from it, or
// Probes x Intvl after arming if that is later. A listener has no timer: its
// values pass to the connections it accepts from then on.
//
// If a call fails, those that succeeded are undone (to before's values) and
// the error says which option failed; an MPTCP socket refuses
// TCP_USER_TIMEOUT with ErrOptionUnsupported before anything is set.
func (s *Sock) Arm(k Keepalive, before SockOpts) (SockOpts, error) {
	if err := k.Check(); err != nil {
		return SockOpts{}, err
	}
	if s.mptcp && k.SetUserTimeout {
		return SockOpts{}, fmt.Errorf("setsockopt TCP_USER_TIMEOUT on the MPTCP socket of pid %d fd %d: %w", s.Owner.PID, s.Owner.FD, ErrOptionUnsupported)
	}
	ka := 0
	if before.KeepaliveOn {
		ka = 1
	}
	var buf [5]sockopt
	steps := append(buf[:0],
		sockopt{"TCP_KEEPINTVL", unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, int(k.Intvl / time.Second), int(before.Keepalive.Intvl / time.Second)},
		sockopt{"TCP_KEEPCNT", unix.IPPROTO_TCP, unix.TCP_KEEPCNT, k.Probes, before.Keepalive.Probes},
	)
	if k.SetUserTimeout {
		steps = append(steps, sockopt{"TCP_USER_TIMEOUT", unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(k.UserTimeout / time.Millisecond), int(before.UserTimeout / time.Millisecond)})
	}
	steps = append(steps,
		sockopt{"SO_KEEPALIVE", unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1, ka},
		sockopt{"TCP_KEEPIDLE", unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, int(k.Time / time.Second), int(before.Keepalive.Time / time.Second)},
	)
	for i, st := range steps {
		if err := unix.SetsockoptInt(s.fd, st.level, st.opt, st.val); err != nil {
			for j := i - 1; j >= 0; j-- {
				unix.SetsockoptInt(s.fd, steps[j].level, steps[j].opt, steps[j].before) // best effort
			}
			if errors.Is(err, unix.ENOPROTOOPT) || errors.Is(err, unix.EOPNOTSUPP) {
				err = fmt.Errorf("%w (%w)", ErrOptionUnsupported, err)
			}
			return SockOpts{}, fmt.Errorf("setsockopt %s=%d on pid %d fd %d: %w", st.name, st.val, s.Owner.PID, s.Owner.FD, err)
		}
	}
	after, err := s.Options()
	if err != nil {
		return SockOpts{}, fmt.Errorf("read back pid %d fd %d: %w", s.Owner.PID, s.Owner.FD, err)
	}
	if !k.Holds(after) {
		return after, fmt.Errorf("pid %d fd %d reads back %+v after setting %+v", s.Owner.PID, s.Owner.FD, after, k)
	}
	return after, nil
}

// Shutdown shuts the connection down both ways (shutdown(2), SHUT_RDWR): the
// kernel sends a FIN (tcp_shutdown), the owner's reads return end of file and
// its writes fail with EPIPE; a listener stops listening and its accept
// fails. The socket itself lives on until the owner closes its descriptor. A
// socket no longer connected gives ErrGone.
func (s *Sock) Shutdown() error {
	err := unix.Shutdown(s.fd, unix.SHUT_RDWR)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.ENOTCONN):
		return fmt.Errorf("shutdown pid %d fd %d: %w (%w)", s.Owner.PID, s.Owner.FD, ErrGone, err)
	}
	return fmt.Errorf("shutdown pid %d fd %d: %w", s.Owner.PID, s.Owner.FD, err)
}
