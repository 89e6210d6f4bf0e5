package diag

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"iter"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Errors a caller can test with errors.Is.
var (
	// ErrNotFound: Destroy found no socket with that identity: it is already
	// gone, or its addresses and ports now belong to another socket (a
	// different cookie).
	ErrNotFound = errors.New("no such socket (already closed, or its 4-tuple now belongs to another socket)")
	// ErrDestroyUnsupported: the kernel was built without
	// CONFIG_INET_DIAG_DESTROY and cannot close sockets from outside.
	ErrDestroyUnsupported = errors.New("kernel cannot destroy sockets (CONFIG_INET_DIAG_DESTROY is off)")
	// ErrUnsupported: the kernel has no sock_diag for TCP (the inet_diag and
	// tcp_diag modules are not loaded, or not built).
	ErrUnsupported = errors.New("the kernel has no sock_diag for TCP (inet_diag, tcp_diag)")
	// ErrDumpInterrupted: the kernel flagged the dump as inconsistent
	// (NLM_F_DUMP_INTR) twice in a row; the first time it is retried.
	ErrDumpInterrupted = errors.New("socket dump interrupted by concurrent changes twice (NLM_F_DUMP_INTR)")
)

// Conn is a pair of sock_diag netlink sockets in one network namespace: one
// for dumps, one for Destroy, so that a socket can be destroyed from inside the
// loop over a dump. A Conn is not for concurrent use from several goroutines.
type Conn struct {
	nl   *netlink.Conn // dumps
	ctl  *netlink.Conn // Destroy
	recv *receiver
	send func(netlink.Message) (netlink.Message, error) // nl.Send
	sock Socket                                         // the Socket every dump hands out, reused
}

// Message types and sizes of the sock_diag protocol.
const (
	reqLen = 56 // sizeof(struct inet_diag_req_v2)
	// The original request, TCPDIAG_GETSOCK with a struct inet_diag_req, dumps
	// IPv4 and IPv6 sockets in one walk of the kernel's socket tables
	// (inet_diag_dump_compat sets AF_UNSPEC): half the kernel's work of one
	// SOCK_DIAG_BY_FAMILY dump per family, since each walks every bucket of
	// the established hash, which all namespaces share. The replies are the
	// same inet_diag_msg, typed TCPDIAG_GETSOCK.
	tcpdiagGetsock = 18
	compatReqLen   = 60 // sizeof(struct inet_diag_req)
	attrReqBC      = 1  // INET_DIAG_REQ_BYTECODE
	extInfo        = 1 << (attrInfo - 1)
	msgBufSize     = 32768
)

// Dial opens the sock_diag netlink sockets inside ns; nil is the namespace of
// the calling thread. A socket belongs to the namespace it was made in, so the
// Conn keeps working in ns after Dial returns, on any thread. In the caller's
// own namespace nothing is entered, and no privilege is needed to dump (Destroy
// needs CAP_NET_ADMIN); entering another takes what ns.Do takes.
func Dial(ns Namespace) (*Conn, error) {
	var nls [2]*netlink.Conn
	dial := func() error {
		for i := range nls {
			// Without MessageBufferSize the netlink package peeks at every
			// datagram first, and the kernel sizes its datagrams by the first
			// read: ~4 KB, twice the system calls.
			nl, err := netlink.Dial(unix.NETLINK_SOCK_DIAG, &netlink.Config{MessageBufferSize: msgBufSize})
			if err != nil {
				if i > 0 {
					nls[0].Close()
				}
				return fmt.Errorf("open sock_diag netlink socket: %w", classify(err))
			}
			nls[i] = nl
		}
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
	rc, err := nls[0].SyscallConn()
	if err != nil {
		nls[0].Close()
		nls[1].Close()
		return nil, fmt.Errorf("open sock_diag netlink socket: %w", err)
	}
	return &Conn{nl: nls[0], ctl: nls[1], recv: newReceiver(rc, msgBufSize), send: nls[0].Send}, nil
}

// classify wraps the kernel errors a caller can act on with the package's.
func classify(err error) error {
	if errors.Is(err, unix.EPROTONOSUPPORT) || errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("%w: %w", ErrUnsupported, err)
	}
	return err
}

// Close closes the netlink sockets.
func (c *Conn) Close() error { return errors.Join(c.nl.Close(), c.ctl.Close()) }

// Sockets streams the TCP sockets f selects (nil: all of them), IPv4 and IPv6
// in the kernel's order (one walk of its tables for both; with f.Family, that
// family's). The kernel applies the filter. The *Socket yielded is the same
// value every time, overwritten by the next socket: copy what you keep.
//
// A malformed message, a netlink error or ctx's end stops the stream with an
// error as the last pair yielded. Stopping early (break) or ctx's end drains
// the rest of the kernel's dump, so the Conn stays usable.
//
// If the kernel flags a dump as interrupted (NLM_F_DUMP_INTR), the dump
// restarts once from its beginning (sockets yielded before the flag may
// come again); a second interruption ends the stream with ErrDumpInterrupted.
func (c *Conn) Sockets(ctx context.Context, f *Filter) iter.Seq2[*Socket, error] {
	return func(yield func(*Socket, error) bool) {
		if err := f.Check(); err != nil {
			yield(nil, err)
			return
		}
		if ctx == nil {
			ctx = context.Background()
		}
		var states StateSet = StatesAll
		if f != nil && f.States != 0 {
			states = f.States
		}
		bc := f.bytecode()
		for _, fam := range f.families() {
			for attempt := 0; ; attempt++ {
				r := c.dump(ctx, fam, states, bc, yield)
				if r.stopped {
					return
				}
				if r.err != nil {
					yield(nil, r.err)
					return
				}
				if !r.interrupted {
					break
				}
				if attempt == 1 {
					yield(nil, fmt.Errorf("dump %s sockets: %w", fam, ErrDumpInterrupted))
					return
				}
			}
		}
	}
}

type dumpResult struct {
	stopped     bool // the consumer stopped
	interrupted bool // NLM_F_DUMP_INTR seen
	err         error
}

// request builds a dump request: SOCK_DIAG_BY_FAMILY for one family, or
// TCPDIAG_GETSOCK for both (familyAny).
func request(fam Family, states StateSet, bc []byte) (typ netlink.HeaderType, b []byte) {
	n := reqLen
	if fam == familyAny {
		n = compatReqLen
	}
	at := n
	if bc != nil {
		n += 4 + len(bc)
	}
	b = make([]byte, n)
	if fam == familyAny {
		// struct inet_diag_req: family (unused: the dump is AF_UNSPEC), src_len,
		// dst_len, ext, then the 48-byte sockid, states and dbs.
		b[3] = extInfo
		binary.NativeEndian.PutUint32(b[52:], uint32(states))
		typ = tcpdiagGetsock
	} else {
		b[0] = byte(fam)
		b[1] = unix.IPPROTO_TCP
		b[2] = extInfo
		binary.NativeEndian.PutUint32(b[4:], uint32(states))
		typ = unix.SOCK_DIAG_BY_FAMILY
	}
	if bc != nil {
		binary.NativeEndian.PutUint16(b[at:], uint16(4+len(bc)))
		binary.NativeEndian.PutUint16(b[at+2:], attrReqBC)
		copy(b[at+4:], bc)
	}
	return typ, b
}

// dump runs one family's dump, yielding each socket, and always reads the dump
// to its end unless the socket itself failed.
func (c *Conn) dump(ctx context.Context, fam Family, states StateSet, bc []byte, yield func(*Socket, error) bool) dumpResult {
	var r dumpResult
	if err := ctx.Err(); err != nil {
		r.err = fmt.Errorf("dump %s sockets: %w", fam, err)
		return r
	}
	typ, data := request(fam, states, bc)
	req, err := c.send(netlink.Message{
		Header: netlink.Header{Type: typ, Flags: netlink.Request | netlink.Dump},
		Data:   data,
	})
	if err != nil {
		r.err = fmt.Errorf("dump %s sockets: %w", fam, classify(err))
		return r
	}
	return c.dumpRaw(ctx.Done(), ctx.Err, fam, req.Header.Sequence, yield)
}

// Destroy closes s in the kernel (SOCK_DESTROY): the socket with exactly s's
// addresses, ports, interface and cookie, IPv4 or IPv6. Its owner's next call
// fails with ECONNABORTED. It needs CAP_NET_ADMIN. It may be called from
// inside the loop over Sockets, with the yielded Socket.
func (c *Conn) Destroy(s *Socket) error {
	if s.Family != FamilyInet && s.Family != FamilyInet6 {
		return fmt.Errorf("destroy %s family %d is neither inet nor inet6", s.ID(), s.Family)
	}
	b := make([]byte, reqLen)
	b[0] = byte(s.Family)
	b[1] = unix.IPPROTO_TCP
	binary.NativeEndian.PutUint32(b[4:], uint32(StatesAll))
	id := b[8:] // struct inet_diag_sockid, laid out as in inet_diag_msg at offset 4
	const o = offSport
	binary.BigEndian.PutUint16(id[offSport-o:], s.Local.Port())
	binary.BigEndian.PutUint16(id[offDport-o:], s.Remote.Port())
	src, dst := s.Local.Addr(), s.Remote.Addr()
	if s.Family == FamilyInet {
		src, dst = src.Unmap(), dst.Unmap()
		if !src.Is4() || !dst.Is4() {
			return fmt.Errorf("destroy %s: inet socket with non-IPv4 addresses", s.ID())
		}
	} else if !src.Is6() || !dst.Is6() {
		return fmt.Errorf("destroy %s: inet6 socket with non-IPv6 addresses", s.ID())
	}
	copy(id[offSrc-o:], src.AsSlice())
	copy(id[offDst-o:], dst.AsSlice())
	binary.NativeEndian.PutUint32(id[offIf-o:], s.Interface)
	binary.NativeEndian.PutUint32(id[offCookie-o:], uint32(s.Cookie))
	binary.NativeEndian.PutUint32(id[offCookie-o+4:], uint32(s.Cookie>>32))

	_, err := c.ctl.Execute(netlink.Message{
		Header: netlink.Header{Type: unix.SOCK_DESTROY, Flags: netlink.Request | netlink.Acknowledge},
		Data:   b,
	})
	return destroyError(s, err)
}

// destroyError maps the kernel's answer to SOCK_DESTROY to what a caller can
// test with errors.Is: ErrNotFound, ErrDestroyUnsupported, or the errno
// (EPERM: closing a socket needs CAP_NET_ADMIN).
func destroyError(s *Socket, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.ENOENT):
		return fmt.Errorf("destroy %s: %w", s.ID(), ErrNotFound)
	case errors.Is(err, unix.EOPNOTSUPP):
		return fmt.Errorf("destroy %s: %w", s.ID(), ErrDestroyUnsupported)
	}
	return fmt.Errorf("destroy %s: %w", s.ID(), err)
}
