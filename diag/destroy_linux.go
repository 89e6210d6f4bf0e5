package diag

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"sync"
	"time"
	"unsafe"

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
	destroyBufSize = 4096
	// destroyBatchLen is how many datagrams one recvmmsg(2) reads at most.
	destroyBatchLen = 8
	// destroyWake is how long a read waits before it looks whether ctx ended
	// or Close was called: a blocked recvmsg on a netlink socket cannot be
	// woken otherwise (it has no shutdown).
	destroyWake = time.Second
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
//
// Its socket is read with blocking system calls, outside the Go runtime's
// poller, several datagrams a call (recvmmsg): a poller would wake for every
// broadcast, whether or not anyone reads (SetBatch).
type Subscription struct {
	fd    int
	batch time.Duration // SetBatch's
	wake  time.Duration // destroyWake (setWake)

	mu      sync.Mutex
	reading bool // a loop runs: it closes fd when it ends
	closed  bool
	done    chan struct{} // closed by Close

	msgs []unix.Mmsghdr
	iovs []unix.Iovec
	bufs []byte // destroyBatchLen buffers of destroyBufSize
	i, n int    // msgs[i:n] are read and not yet handed out
	sock Socket // the Socket every iteration hands out, reused
}

// newSubscription reads datagrams from fd, a blocking socket.
func newSubscription(fd int) *Subscription {
	s := &Subscription{fd: fd, done: make(chan struct{}),
		msgs: make([]unix.Mmsghdr, destroyBatchLen), iovs: make([]unix.Iovec, destroyBatchLen), bufs: make([]byte, destroyBatchLen*destroyBufSize)}
	for i := range s.msgs {
		s.iovs[i].Base = &s.bufs[i*destroyBufSize]
		s.iovs[i].SetLen(destroyBufSize)
		s.msgs[i].Hdr.Iov = &s.iovs[i]
		s.msgs[i].Hdr.SetIovlen(1)
	}
	s.setWake(destroyWake)
	return s
}

// setWake sets how long a blocking read waits (SO_RCVTIMEO: then EAGAIN);
// reads with MSG_DONTWAIT never wait.
func (s *Subscription) setWake(d time.Duration) {
	s.wake = d
	tv := unix.NsecToTimeval(d.Nanoseconds())
	unix.SetsockoptTimeval(s.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
}

// SubscribeDestroyed subscribes to the destroyed TCP sockets of ns (nil: the
// calling thread's namespace). The kernel lets any user listen
// (NL_CFG_F_NONROOT_RECV); entering another namespace takes what ns.Do takes.
// Sockets freed before the subscription, or after Close, are not seen.
func SubscribeDestroyed(ns Namespace) (*Subscription, error) {
	fd := -1
	open := func() error {
		var err error
		// A socket belongs to the namespace of the thread that makes it.
		fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
		if err != nil {
			return fmt.Errorf("subscribe to destroyed sockets: %w", classify(err))
		}
		return nil
	}
	var err error
	if ns == nil {
		err = open()
	} else {
		err = ns.Do(open)
	}
	if err != nil {
		return nil, err
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("subscribe to destroyed sockets: bind: %w", err)
	}
	for _, g := range []int{groupInetTCPDestroy, groupInet6TCPDestroy} {
		if err := unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_ADD_MEMBERSHIP, g); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("subscribe to destroyed sockets: join group %d: %w", g, classify(err))
		}
	}
	return newSubscription(fd), nil
}

// SetReadBuffer sets the kernel's receive buffer of the subscription, which
// holds broadcasts not yet read: each takes 1,920 bytes of it (the skb's
// truesize, measured on Linux 6.18), so the default (net.core.rmem_default,
// 208 KiB) holds about 110.
// With CAP_NET_ADMIN it may exceed net.core.rmem_max.
func (s *Subscription) SetReadBuffer(bytes int) error {
	err := unix.SetsockoptInt(s.fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, bytes)
	if err != nil {
		err = unix.SetsockoptInt(s.fd, unix.SOL_SOCKET, unix.SO_RCVBUF, bytes)
	}
	if err != nil {
		return fmt.Errorf("set receive buffer of the destroyed-socket subscription: %w", err)
	}
	return nil
}

// Lost is how many broadcasts the kernel dropped for the subscription so far,
// its buffer full (sk_drops, which netlink_overrun counts, read with
// SO_MEMINFO): what ErrOverrun lost.
func (s *Subscription) Lost() (uint64, error) {
	var mem [unix.SK_MEMINFO_VARS]uint32
	l := uint32(unsafe.Sizeof(mem))
	if _, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(s.fd), unix.SOL_SOCKET, unix.SO_MEMINFO, uintptr(unsafe.Pointer(&mem[0])), uintptr(unsafe.Pointer(&l)), 0); errno != 0 {
		return 0, fmt.Errorf("destroyed-socket subscription: SO_MEMINFO: %w", errno)
	}
	if l <= unix.SK_MEMINFO_DROPS*4 {
		return 0, fmt.Errorf("destroyed-socket subscription: SO_MEMINFO of %d bytes has no drops", l)
	}
	return uint64(mem[unix.SK_MEMINFO_DROPS]), nil
}

// SetBatch makes Sockets, whenever it finds no broadcast queued, wait d
// before it waits for the next one: broadcasts that come meanwhile are read
// together, a few per system call, with one wakeup of the reader instead of
// one each (at 2,000 closes a second, 20 wakeups instead of 2,000). The kernel
// holds them meanwhile: the receive buffer (SetReadBuffer) must hold what
// comes in d. A broadcast is then seen up to d late. 0, the default, reads
// each as it comes. Call it before Sockets.
func (s *Subscription) SetBatch(d time.Duration) { s.batch = d }

// Close ends the subscription; a loop over Sockets in another goroutine ends
// without an error, within a second (a read blocked in the kernel waits that
// long before it looks).
func (s *Subscription) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	close(s.done)
	if s.reading {
		return nil // the loop closes the socket as it ends
	}
	return unix.Close(s.fd)
}

// errClosed ends a loop that Close ended.
var errClosed = errors.New("subscription closed")

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
// ctx's end is yielded last (wrapping ctx.Err()), within a second; so is a
// failed socket.
func (s *Subscription) Sockets(ctx context.Context) iter.Seq2[*Socket, error] {
	return func(yield func(*Socket, error) bool) {
		if ctx == nil {
			ctx = context.Background()
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return
		}
		s.reading = true
		s.mu.Unlock()
		defer func() {
			s.mu.Lock()
			s.reading = false
			if s.closed {
				unix.Close(s.fd)
			}
			s.mu.Unlock()
		}()
		fail := func(err error) error {
			return fmt.Errorf("receive destroyed sockets: %w", err)
		}
		for {
			b, err := s.next(ctx)
			switch {
			case errors.Is(err, errClosed):
				return
			case errors.Is(err, unix.ENOBUFS):
				// The kernel reports the overrun once (netlink_overrun) and
				// keeps delivering what fits.
				if !yield(nil, fail(ErrOverrun)) {
					return
				}
				continue
			case err != nil:
				yield(nil, fail(err))
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

// next returns the next datagram: those already read first, then those
// queued, read a batch a call; when none is queued, after SetBatch's wait; else
// it waits in the kernel, looking each wake whether ctx ended or Close was
// called. A truncated datagram is an error; the next call goes on.
func (s *Subscription) next(ctx context.Context) ([]byte, error) {
	waited := false
	for {
		if s.i < s.n {
			m := &s.msgs[s.i]
			b := s.bufs[s.i*destroyBufSize:][:min(int(m.Len), destroyBufSize)]
			s.i++
			if m.Hdr.Flags&unix.MSG_TRUNC != 0 {
				return nil, fmt.Errorf("netlink datagram truncated to %d bytes", destroyBufSize)
			}
			return b, nil
		}
		select {
		case <-s.done:
			return nil, errClosed
		case <-ctx.Done():
			return nil, ctx.Err()
		default:
		}
		n, err := s.recv(unix.MSG_DONTWAIT)
		if err != unix.EAGAIN {
			if err != nil {
				return nil, err
			}
			s.i, s.n = 0, n
			continue
		}
		if s.batch > 0 && !waited {
			// Nothing queued: let broadcasts gather rather than wake for each.
			waited = true
			t := time.NewTimer(s.batch)
			select {
			case <-t.C:
			case <-ctx.Done():
			case <-s.done:
			}
			t.Stop()
			continue
		}
		waited = false
		// Wait in the kernel for the first, up to a wake.
		if n, err = s.recv(unix.MSG_WAITFORONE); err != nil && err != unix.EAGAIN {
			return nil, err
		}
		s.i, s.n = 0, n
	}
}

// recv reads up to destroyBatchLen datagrams with recvmmsg(2). With
// MSG_WAITFORONE it blocks for the first for at most s.wake (then EAGAIN).
func (s *Subscription) recv(flags int) (int, error) {
	for i := range s.msgs {
		s.msgs[i].Hdr.Flags, s.msgs[i].Len = 0, 0
	}
	for {
		n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(s.fd), uintptr(unsafe.Pointer(&s.msgs[0])), uintptr(len(s.msgs)), uintptr(flags|unix.MSG_TRUNC), 0, 0)
		switch errno {
		case 0:
			return int(n), nil
		case unix.EINTR:
			continue
		}
		return 0, errno
	}
}
