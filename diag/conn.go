package diag

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"strconv"

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
	// ErrDumpInterrupted: the kernel flagged the dump as inconsistent
	// (NLM_F_DUMP_INTR) twice in a row; the first time it is retried.
	ErrDumpInterrupted = errors.New("socket dump interrupted by concurrent changes twice (NLM_F_DUMP_INTR)")
)

// Config says where a Conn works.
type Config struct {
	// NetNS is an open network namespace file (see internal/netns NS.Open);
	// 0 means the namespace of the calling thread.
	NetNS int
	// Name is how errors name the namespace (an operator's spelling such as
	// "web" or "pid:42"); empty means "self" for NetNS 0, else "fd N".
	Name string
}

// Conn is a pair of sock_diag netlink sockets in one network namespace: one
// for dumps, one for Destroy, so that a socket can be destroyed from inside the
// loop over a dump. A Conn is not for concurrent use from several goroutines.
type Conn struct {
	nl   *netlink.Conn // dumps
	ctl  *netlink.Conn // Destroy
	recv *receiver
	send func(netlink.Message) (netlink.Message, error) // nl.Send
	ns   string
	sock Socket // the Socket every dump hands out, reused
	// receiveIter reads dumps with netlink.Conn.ReceiveIter instead of the
	// zero-allocation receiver: for the benchmark that compares them.
	receiveIter bool
}

// Message types and sizes of the sock_diag protocol.
const (
	reqLen     = 56 // sizeof(struct inet_diag_req_v2)
	attrReqBC  = 1  // INET_DIAG_REQ_BYTECODE
	extInfo    = 1 << (attrInfo - 1)
	msgBufSize = 32768
)

// Dial opens a sock_diag netlink socket in cfg's namespace (nil cfg: the
// calling thread's).
func Dial(cfg *Config) (*Conn, error) {
	if cfg == nil {
		cfg = &Config{}
	}
	ns := cfg.nsName()
	// Without MessageBufferSize the netlink package peeks at every datagram
	// first, and the kernel sizes its datagrams by the first read: ~4 KB, twice
	// the system calls.
	var nls [2]*netlink.Conn
	for i := range nls {
		nl, err := netlink.Dial(unix.NETLINK_SOCK_DIAG, &netlink.Config{NetNS: cfg.NetNS, MessageBufferSize: msgBufSize})
		if err != nil {
			if i > 0 {
				nls[0].Close()
			}
			return nil, fmt.Errorf("open sock_diag netlink socket in netns %s: %w%s", ns, err, hint(err))
		}
		nls[i] = nl
	}
	rc, err := nls[0].SyscallConn()
	if err != nil {
		nls[0].Close()
		nls[1].Close()
		return nil, fmt.Errorf("open sock_diag netlink socket in netns %s: %w", ns, err)
	}
	return &Conn{nl: nls[0], ctl: nls[1], recv: newReceiver(rc, msgBufSize), send: nls[0].Send, ns: ns}, nil
}

// nsName is how errors name cfg's namespace.
func (cfg *Config) nsName() string {
	switch {
	case cfg.Name != "":
		return cfg.Name
	case cfg.NetNS == 0:
		return "self"
	}
	return "fd " + strconv.Itoa(cfg.NetNS)
}

// hint explains the kernel errors a person can act on.
func hint(err error) string {
	switch {
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		return " (needs root or CAP_NET_ADMIN, and CAP_SYS_ADMIN to enter another namespace)"
	case errors.Is(err, unix.EPROTONOSUPPORT), errors.Is(err, unix.ENOENT):
		return " (the kernel has no sock_diag for TCP: modprobe inet_diag tcp_diag)"
	}
	return ""
}

// Close closes the netlink sockets.
func (c *Conn) Close() error { return errors.Join(c.nl.Close(), c.ctl.Close()) }

// Sockets streams the TCP sockets f selects (nil: all of them), IPv4 first,
// then IPv6. The kernel applies the filter. The *Socket yielded is the same
// value every time, overwritten by the next socket: copy what you keep.
//
// A malformed message, a netlink error or ctx's end stops the stream with an
// error as the last pair yielded. Stopping early (break) or ctx's end drains
// the rest of the kernel's dump, so the Conn stays usable.
//
// If the kernel flags a dump as interrupted (NLM_F_DUMP_INTR), that family's
// dump restarts once from its beginning (sockets yielded before the flag may
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
					yield(nil, fmt.Errorf("dump %s sockets in netns %s: %w", fam, c.ns, ErrDumpInterrupted))
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

// request builds a SOCK_DIAG_BY_FAMILY dump request for one family.
func request(fam Family, states StateSet, bc []byte) []byte {
	n := reqLen
	if bc != nil {
		n += 4 + len(bc)
	}
	b := make([]byte, n)
	b[0] = byte(fam)
	b[1] = unix.IPPROTO_TCP
	b[2] = extInfo
	binary.NativeEndian.PutUint32(b[4:], uint32(states))
	if bc != nil {
		binary.NativeEndian.PutUint16(b[reqLen:], uint16(4+len(bc)))
		binary.NativeEndian.PutUint16(b[reqLen+2:], attrReqBC)
		copy(b[reqLen+4:], bc)
	}
	return b
}

// dump runs one family's dump, yielding each socket, and always reads the dump
// to its end unless the socket itself failed.
func (c *Conn) dump(ctx context.Context, fam Family, states StateSet, bc []byte, yield func(*Socket, error) bool) dumpResult {
	var r dumpResult
	if err := ctx.Err(); err != nil {
		r.err = fmt.Errorf("dump %s sockets in netns %s: %w", fam, c.ns, err)
		return r
	}
	req, err := c.send(netlink.Message{
		Header: netlink.Header{Type: unix.SOCK_DIAG_BY_FAMILY, Flags: netlink.Request | netlink.Dump},
		Data:   request(fam, states, bc),
	})
	if err != nil {
		r.err = fmt.Errorf("dump %s sockets in netns %s: %w%s", fam, c.ns, err, hint(err))
		return r
	}
	seq := req.Header.Sequence
	done := ctx.Done()
	if !c.receiveIter {
		return c.dumpRaw(done, ctx.Err, fam, seq, yield)
	}
	// quiet: stop handing sockets out but keep reading, so the kernel's dump is
	// consumed and the next request on this Conn reads its own replies.
	quiet := false
	for m, err := range c.nl.ReceiveIter() {
		if err != nil {
			// A netlink error (NLMSG_ERROR) ends the dump in the kernel too.
			if r.err == nil {
				r.err = fmt.Errorf("dump %s sockets in netns %s: %w%s", fam, c.ns, err, hint(err))
			}
			break
		}
		if quiet {
			continue
		}
		if m.Header.Sequence != seq {
			r.err = fmt.Errorf("dump %s sockets in netns %s: reply with sequence %d to request %d", fam, c.ns, m.Header.Sequence, seq)
			quiet = true
			continue
		}
		if m.Header.Flags&netlink.DumpInterrupted != 0 {
			r.interrupted = true
			quiet = true
			continue
		}
		if m.Header.Type != unix.SOCK_DIAG_BY_FAMILY {
			r.err = fmt.Errorf("dump %s sockets in netns %s: unexpected netlink message type %d", fam, c.ns, m.Header.Type)
			quiet = true
			continue
		}
		select {
		case <-done:
			r.err = fmt.Errorf("dump %s sockets in netns %s: %w", fam, c.ns, ctx.Err())
			quiet = true
			continue
		default:
		}
		if err := decode(m.Data, &c.sock); err != nil {
			r.err = fmt.Errorf("dump %s sockets in netns %s: %w", fam, c.ns, err)
			quiet = true
			continue
		}
		if !yield(&c.sock, nil) {
			r.stopped = true
			quiet = true
		}
	}
	if r.stopped {
		// The consumer asked for nothing more: not even an error.
		r.err = nil
	}
	return r
}

// Destroy closes s in the kernel (SOCK_DESTROY): the socket with exactly s's
// addresses, ports, interface and cookie, IPv4 or IPv6. Its owner's next call
// fails with ECONNABORTED. It needs CAP_NET_ADMIN. It may be called from
// inside the loop over Sockets, with the yielded Socket.
func (c *Conn) Destroy(s *Socket) error {
	if s.Family != FamilyInet && s.Family != FamilyInet6 {
		return fmt.Errorf("destroy %s in netns %s: family %d is neither inet nor inet6", s.ID(), c.ns, s.Family)
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
			return fmt.Errorf("destroy %s in netns %s: inet socket with non-IPv4 addresses", s.ID(), c.ns)
		}
	} else if !src.Is6() || !dst.Is6() {
		return fmt.Errorf("destroy %s in netns %s: inet6 socket with non-IPv6 addresses", s.ID(), c.ns)
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
	return destroyError(s, c.ns, err)
}

// destroyError maps the kernel's answer to SOCK_DESTROY to what a caller can
// test with errors.Is.
func destroyError(s *Socket, ns string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.ENOENT):
		return fmt.Errorf("destroy %s in netns %s: %w", s.ID(), ns, ErrNotFound)
	case errors.Is(err, unix.EOPNOTSUPP):
		return fmt.Errorf("destroy %s in netns %s: %w", s.ID(), ns, ErrDestroyUnsupported)
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		return fmt.Errorf("destroy %s in netns %s: %w (closing a socket needs root or CAP_NET_ADMIN)", s.ID(), ns, err)
	}
	return fmt.Errorf("destroy %s in netns %s: %w", s.ID(), ns, err)
}
