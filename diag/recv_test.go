package diag

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// The kernel does not produce interrupted dumps, foreign sequence numbers or
// broken messages on demand, so these tests feed the receive path datagrams
// built from a real fixture message through a real SOCK_SEQPACKET socket pair,
// which keeps datagram boundaries as netlink does.

// fakeKernel is the other end of a Conn's receive socket.
type fakeKernel struct {
	t    *testing.T
	fd   int
	seq  uint32
	sent int // dump requests the Conn sent
	// replies builds the datagrams answering the n-th request (from 0).
	replies func(n int, seq uint32) [][]byte
}

func newFakeConn(t *testing.T, bufSize int) (*Conn, *fakeKernel) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fds[0]), "conn end")
	t.Cleanup(func() { f.Close(); unix.Close(fds[1]) })
	rc, err := f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	k := &fakeKernel{t: t, fd: fds[1], seq: 100}
	c := &Conn{recv: newReceiver(rc, bufSize)}
	c.send = func(m netlink.Message) (netlink.Message, error) {
		k.seq++
		m.Header.Sequence = k.seq
		for _, d := range k.replies(k.sent, k.seq) {
			if err := unix.Send(k.fd, d, 0); err != nil {
				t.Fatal(err)
			}
		}
		k.sent++
		return m, nil
	}
	return c, k
}

// nlmsg builds one netlink message.
func nlmsg(typ, flags uint16, seq uint32, payload []byte) []byte {
	b := make([]byte, nlHdrLen, nlHdrLen+len(payload)+3)
	binary.NativeEndian.PutUint32(b[0:], uint32(nlHdrLen+len(payload)))
	binary.NativeEndian.PutUint16(b[4:], typ)
	binary.NativeEndian.PutUint16(b[6:], flags)
	binary.NativeEndian.PutUint32(b[8:], seq)
	b = append(b, payload...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

const nlmFMulti = uint16(netlink.Multi)

func done(seq uint32) []byte { return nlmsg(nlmsgDone, nlmFMulti, seq, make([]byte, 4)) }

func nlerr(seq uint32, errno unix.Errno) []byte {
	p := make([]byte, 4+nlHdrLen)
	binary.NativeEndian.PutUint32(p, uint32(-int32(errno)))
	return nlmsg(nlmsgError, 0, seq, p)
}

func sock(seq uint32, flags uint16, payload []byte) []byte {
	return nlmsg(unix.SOCK_DIAG_BY_FAMILY, nlmFMulti|flags, seq, payload)
}

func cat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

// collect runs a dump of one family and returns the cookies seen and the
// error, stopping after stopAfter sockets (0: never).
func collect(c *Conn, stopAfter int) (cookies []uint64, err error) {
	for s, e := range c.Sockets(context.Background(), &Filter{Family: FamilyInet}) {
		if e != nil {
			return cookies, e
		}
		cookies = append(cookies, s.Cookie)
		if len(cookies) == stopAfter {
			break
		}
	}
	return cookies, nil
}

// leftover reports whether a datagram is still waiting on the Conn's socket:
// after a dump, none should be, but the sentinel a test sent after the dump.
func leftover(t *testing.T, c *Conn) string {
	b, err := c.recv.next()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestReceiveProtocol(t *testing.T) {
	fx := fixtureMessages(t, fixtures[0])
	var first, second Socket
	if err := decode(fx[0], &first); err != nil {
		t.Fatal(err)
	}
	if err := decode(fx[1], &second); err != nil {
		t.Fatal(err)
	}
	const sentinel = "next request's reply"

	cases := []struct {
		name      string
		replies   func(n int, seq uint32) [][]byte
		stopAfter int
		bufSize   int
		want      []uint64 // cookies yielded
		wantErr   string   // substring; "" = none
		is        error
		requests  int
	}{
		{
			name: "two sockets in two datagrams",
			replies: func(_ int, seq uint32) [][]byte {
				return [][]byte{sock(seq, 0, fx[0]), cat(sock(seq, 0, fx[1]), done(seq))}
			},
			want: []uint64{first.Cookie, second.Cookie}, requests: 1,
		},
		{
			name: "a malformed message is an error, and the dump is drained",
			replies: func(_ int, seq uint32) [][]byte {
				return [][]byte{cat(sock(seq, 0, fx[0]), sock(seq, 0, fx[1][:40]), sock(seq, 0, fx[1])), done(seq)}
			},
			want: []uint64{first.Cookie}, wantErr: "inet_diag_msg too short", is: errMalformed, requests: 1,
		},
		{
			name: "NLMSG_ERROR ends the dump with the kernel's errno",
			replies: func(_ int, seq uint32) [][]byte {
				return [][]byte{cat(sock(seq, 0, fx[0]), nlerr(seq, unix.EPERM))}
			},
			want: []uint64{first.Cookie}, wantErr: "operation not permitted", is: unix.EPERM, requests: 1,
		},
		{
			name: "a dump the kernel cut short: DONE carries the error",
			replies: func(_ int, seq uint32) [][]byte {
				d := done(seq)
				e := -int32(unix.ENOMEM)
				binary.NativeEndian.PutUint32(d[nlHdrLen:], uint32(e))
				return [][]byte{cat(sock(seq, 0, fx[0]), d)}
			},
			want: []uint64{first.Cookie}, wantErr: "dump ended early", is: unix.ENOMEM, requests: 1,
		},
		{
			name: "missing inet_diag: ENOENT is ErrUnsupported",
			replies: func(_ int, seq uint32) [][]byte {
				return [][]byte{nlerr(seq, unix.ENOENT)}
			},
			wantErr: "no sock_diag for TCP", is: ErrUnsupported, requests: 1,
		},
		{
			name: "a reply to another request is an error; the dump still ends at its own DONE",
			replies: func(_ int, seq uint32) [][]byte {
				return [][]byte{cat(sock(seq-7, 0, fx[0]), done(seq-7)), cat(sock(seq, 0, fx[1]), done(seq))}
			},
			wantErr: "sequence", requests: 1,
		},
		{
			name: "a broken header skips the datagram, not the dump's end",
			replies: func(_ int, seq uint32) [][]byte {
				bad := sock(seq, 0, fx[0])
				binary.NativeEndian.PutUint32(bad, 9999)
				return [][]byte{bad, done(seq)}
			},
			wantErr: "malformed netlink message header", requests: 1,
		},
		{
			name: "a datagram larger than the buffer is an error, not a silent cut",
			replies: func(_ int, seq uint32) [][]byte {
				return [][]byte{cat(sock(seq, 0, fx[0]), sock(seq, 0, fx[1])), done(seq)}
			},
			bufSize: 400, wantErr: "truncated", requests: 1,
		},
		{
			name: "interrupted once: retried, the retry's sockets come",
			replies: func(n int, seq uint32) [][]byte {
				if n == 0 {
					return [][]byte{cat(sock(seq, 0, fx[0]), sock(seq, nlmFDumpIntr, fx[1]), done(seq))}
				}
				return [][]byte{cat(sock(seq, 0, fx[0]), sock(seq, 0, fx[1]), done(seq))}
			},
			want: []uint64{first.Cookie, first.Cookie, second.Cookie}, requests: 2,
		},
		{
			name: "interrupted twice: ErrDumpInterrupted",
			replies: func(_ int, seq uint32) [][]byte {
				return [][]byte{cat(sock(seq, 0, fx[0]), sock(seq, nlmFDumpIntr, fx[1]), nlmsg(nlmsgDone, nlmFMulti|nlmFDumpIntr, seq, make([]byte, 4)))}
			},
			want: []uint64{first.Cookie, first.Cookie}, is: ErrDumpInterrupted, wantErr: "interrupted", requests: 2,
		},
		{
			name: "the consumer stops: no error, the dump is drained",
			replies: func(_ int, seq uint32) [][]byte {
				return [][]byte{cat(sock(seq, 0, fx[0]), sock(seq, 0, fx[1])), cat(sock(seq, 0, fx[1]), done(seq))}
			},
			stopAfter: 1, want: []uint64{first.Cookie}, requests: 1,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			size := tc.bufSize
			if size == 0 {
				size = msgBufSize
			}
			c, k := newFakeConn(t, size)
			k.replies = func(n int, seq uint32) [][]byte {
				d := tc.replies(n, seq)
				if n+1 == tc.requests {
					d = append(d, []byte(sentinel))
				}
				return d
			}
			got, err := collect(c, tc.stopAfter)
			if tc.wantErr == "" && err != nil {
				t.Fatalf("error %v", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("error %v, want one saying %q", err, tc.wantErr)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Fatalf("error %v is not %v", err, tc.is)
			}
			if err != nil && !strings.HasPrefix(err.Error(), "dump inet sockets: ") {
				t.Fatalf("error %v does not say what failed", err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("yielded %x, want %x", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("yielded %x, want %x", got, tc.want)
				}
			}
			if k.sent != tc.requests {
				t.Fatalf("sent %d requests, want %d", k.sent, tc.requests)
			}
			if tc.bufSize == 0 {
				if l := leftover(t, c); l != sentinel {
					t.Fatalf("after the dump the socket holds %q, want only the sentinel: the dump was not drained to its end", l)
				}
			}
		})
	}
}

// FuzzReceive feeds arbitrary kernel bytes, as one datagram answering a dump, to
// the receive path (netlink header walk, sequence, NLMSG_ERROR, DONE, DUMP_INTR,
// then the decoder), followed by a proper DONE. The only claim: no panic, no
// hang, and the stream ends with sockets and at most one error.
func FuzzReceive(f *testing.F) {
	for _, path := range fixtures {
		b, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(nlmsg(nlmsgError, 0, 0, make([]byte, 20)))
	f.Add(nlmsg(nlmsgDone, nlmFMulti|nlmFDumpIntr, 0, make([]byte, 4)))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, k := newFakeConn(t, msgBufSize)
		k.replies = func(_ int, seq uint32) [][]byte {
			// Give every plausible header this request's sequence number, so the
			// bytes reach the decoder and not only the foreign-sequence check.
			d := append([]byte(nil), b...)
			for p := d; len(p) >= nlHdrLen; {
				n := int(binary.NativeEndian.Uint32(p))
				binary.NativeEndian.PutUint32(p[8:], seq)
				if n < nlHdrLen || n > len(p) {
					break
				}
				p = p[min((n+3)&^3, len(p)):]
			}
			if len(d) == 0 {
				return [][]byte{done(seq)}
			}
			return [][]byte{d, done(seq)}
		}
		errs := 0
		for s, err := range c.Sockets(context.Background(), &Filter{Family: FamilyInet}) {
			if err != nil {
				errs++
				continue
			}
			if s == nil {
				t.Fatal("a nil socket without an error")
			}
		}
		if errs > 1 {
			t.Fatalf("%d errors: the stream must end at the first", errs)
		}
	})
}
