package diag

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"os"
	"sync/atomic"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// The kernel broadcasts a TCP socket when it frees it: __sk_free
// (net/core/sock.c) calls sock_diag_broadcast_destroy (net/core/sock_diag.c)
// if anyone in the socket's namespace listens on its family's group, and a
// workqueue sends one SOCK_DIAG_BY_FAMILY message built by
// inet_diag_handler_get_info (net/ipv4/inet_diag.c): the inet_diag_msg's
// identity (addresses, ports, interface, cookie), the state, the queues and
// tcp_info, but no timer, uid or inode (they stay zero).
//
// Freed means the last reference is gone, so:
//   - a connection the kernel drops (keepalive, retransmissions, a reset,
//     SOCK_DESTROY) while its owner still holds the descriptor is broadcast
//     only when the owner closes it; until then it is in neither a dump (it
//     is unhashed) nor the broadcast;
//   - a connection closed by its owner is broadcast when its full socket is
//     freed: on entering TIME_WAIT (tcp_time_wait replaces it with a
//     minisocket, which is never broadcast) or at the end of LAST_ACK;
//   - request sockets (SYN_RECV) and TIME_WAIT minisockets are never
//     broadcast; listeners are, when closed.

// Multicast groups of NETLINK_SOCK_DIAG (enum sknetlink_groups,
// include/uapi/linux/sock_diag.h).
const (
	groupInetTCPDestroy  = 1 // SKNLGRP_INET_TCP_DESTROY
	groupInet6TCPDestroy = 3 // SKNLGRP_INET6_TCP_DESTROY
	// One broadcast is one datagram of one message: an inet_diag_msg, the
	// protocol and tcp_info, under 400 bytes on 6.18 (sock_diag_nlmsg_size).
	destroyBufSize = 8192
)

// ErrOverrun means the kernel dropped destroyed sockets because the
// subscription's receive buffer was full (ENOBUFS): the stream goes on, but
// some sockets were not delivered. Raise the buffer with SetReadBuffer, or
// read faster.
var ErrOverrun = errors.New("destroyed sockets lost: the subscription's receive buffer overflowed (ENOBUFS)")

// Subscription receives the kernel's broadcast of every TCP socket (IPv4 and
// IPv6) freed in one network namespace, with its final tcp_info. It is not
// for concurrent use, except Close, which may end a loop from another
// goroutine.
type Subscription struct {
	nl   *netlink.Conn
	recv *receiver
	// setDeadline is nl.SetReadDeadline (a socket pair's in tests).
	setDeadline func(time.Time) error
	sock        Socket // the Socket every iteration hands out, reused
	closed      atomic.Bool
	batch       time.Duration // SetBatch's
}

// SubscribeDestroyed subscribes to the destroyed TCP sockets of ns (nil: the
// calling thread's namespace). The kernel lets any user listen
// (NL_CFG_F_NONROOT_RECV); entering another namespace takes what ns.Do takes.
// Sockets freed before the subscription, or after Close, are not seen.
func SubscribeDestroyed(ns Namespace) (*Subscription, error) {
	var nl *netlink.Conn
	dial := func() error {
		c, err := netlink.Dial(unix.NETLINK_SOCK_DIAG, nil)
		if err != nil {
			return fmt.Errorf("subscribe to destroyed sockets: %w", classify(err))
		}
		nl = c
		return nil
	}
	var err error
	if ns == nil {
		err = dial()
	} else {
		err = ns.Do(dial)
	}
	if err != nil {
		return nil, err
	}
	for _, g := range []uint32{groupInetTCPDestroy, groupInet6TCPDestroy} {
		if err := nl.JoinGroup(g); err != nil {
			nl.Close()
			return nil, fmt.Errorf("subscribe to destroyed sockets: join group %d: %w", g, classify(err))
		}
	}
	rc, err := nl.SyscallConn()
	if err != nil {
		nl.Close()
		return nil, fmt.Errorf("subscribe to destroyed sockets: %w", err)
	}
	return &Subscription{nl: nl, recv: newReceiver(rc, destroyBufSize), setDeadline: nl.SetReadDeadline}, nil
}

// SetReadBuffer sets the kernel's receive buffer of the subscription, which
// holds broadcasts not yet read: each takes 1,920 bytes of it (the skb's
// truesize, measured on Linux 6.18), so the default (net.core.rmem_default,
// 208 KiB) holds about 110.
// With CAP_NET_ADMIN it may exceed net.core.rmem_max.
func (s *Subscription) SetReadBuffer(bytes int) error {
	if err := s.nl.SetReadBuffer(bytes); err != nil {
		return fmt.Errorf("set receive buffer of the destroyed-socket subscription: %w", err)
	}
	return nil
}

// SetBatch makes Sockets, whenever it finds no broadcast queued, wait d
// before it waits for the next one: broadcasts that come meanwhile are read
// one after the other, with one wakeup of the reader instead of one each
// (at 2,000 closes a second, 20 wakeups instead of 2,000). The kernel holds
// them meanwhile: the receive buffer (SetReadBuffer) must hold what comes in
// d. A broadcast is then seen up to d late, and Close ends a loop up to d
// late. 0, the default, reads each as it comes. Call it before Sockets.
func (s *Subscription) SetBatch(d time.Duration) { s.batch = d }

// Close ends the subscription; a loop over Sockets blocked in another
// goroutine ends without an error.
func (s *Subscription) Close() error {
	s.closed.Store(true)
	if s.nl == nil {
		return nil // a test's receiver, closed by the test
	}
	return s.nl.Close()
}

// longAgo is a read deadline that has passed: it wakes a blocked read.
var longAgo = time.Unix(1, 0)

// Sockets streams the destroyed sockets as the kernel broadcasts them, until
// ctx ends, Close is called, or the loop breaks. The *Socket yielded is the
// same value every time, overwritten by the next socket: copy what you keep.
//
// Each Socket has the identity (family, addresses, ports, interface, cookie),
// the state at the end (CLOSE for every ending this kernel was seen to
// broadcast), the queues and the final tcp_info; Timer, TimerExpires,
// TimerRetrans, UID and Inode are zero, since the broadcast does not carry them.
//
// Errors that lose sockets but leave the subscription working, ErrOverrun and
// a malformed message, are yielded and the stream goes on if the loop does.
// ctx's end is yielded last (wrapping ctx.Err()); so is a failed socket.
func (s *Subscription) Sockets(ctx context.Context) iter.Seq2[*Socket, error] {
	return func(yield func(*Socket, error) bool) {
		if ctx == nil {
			ctx = context.Background()
		}
		fail := func(err error) error {
			return fmt.Errorf("receive destroyed sockets: %w", err)
		}
		if err := s.setDeadline(time.Time{}); err != nil {
			if !s.closed.Load() {
				yield(nil, fail(err))
			}
			return
		}
		// A blocked read wakes when its deadline passes: ctx's end sets one.
		stop := context.AfterFunc(ctx, func() { s.setDeadline(longAgo) })
		defer stop()
		for {
			b, err := s.next(ctx)
			if err != nil {
				switch {
				case s.closed.Load():
					return
				case ctx.Err() != nil:
					yield(nil, fail(ctx.Err()))
					return
				case errors.Is(err, unix.ENOBUFS):
					// The kernel reports the overrun once (netlink_overrun) and
					// keeps delivering what fits.
					if !yield(nil, fail(ErrOverrun)) {
						return
					}
					continue
				case errors.Is(err, os.ErrDeadlineExceeded):
					// Set by an earlier loop's context that ended just as that
					// loop returned: not this one's.
					if err := s.setDeadline(time.Time{}); err == nil {
						continue
					}
				}
				yield(nil, fail(classify(err)))
				return
			}
			for len(b) > 0 {
				typ, _, _, payload, rest, ok := splitMsg(b)
				if !ok {
					if !yield(nil, fail(errNetlinkFraming)) {
						return
					}
					break
				}
				b = rest
				if typ != unix.SOCK_DIAG_BY_FAMILY {
					continue // not a broadcast of a socket (NLMSG_NOOP, say)
				}
				if err := decode(payload, &s.sock); err != nil {
					if !yield(nil, fail(err)) {
						return
					}
					continue
				}
				if !yield(&s.sock, nil) {
					return
				}
			}
		}
	}
}

// next reads the next datagram, after SetBatch's wait when none is queued.
func (s *Subscription) next(ctx context.Context) ([]byte, error) {
	if s.batch <= 0 {
		return s.recv.next()
	}
	b, ok, err := s.recv.poll()
	if ok || err != nil {
		return b, err
	}
	t := time.NewTimer(s.batch)
	select {
	case <-t.C:
	case <-ctx.Done():
		t.Stop()
	}
	return s.recv.next()
}
