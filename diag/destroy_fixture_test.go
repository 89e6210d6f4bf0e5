package diag

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpkeep/tcpkeep/internal/testnet"
)

// destroyedFixture holds real broadcasts of destroyed sockets, one datagram
// (one netlink message) after the other, as this kernel sent them. Which
// ending each is, its port says (see captureEndings). Regenerate with
//
//	go test ./diag -run TestCaptureDestroyed -capture
const destroyedFixture = "testdata/destroyed.nl"

// Ports of the captured endings: the server's port, or the local port of the
// server's own end.
const (
	portEndOwner     = 7101 // closed by the owners, both ends, IPv4
	portEndKeepalive = 7102 // dropped after 3 unanswered keepalive probes
	portEndDestroy   = 7103 // SOCK_DESTROY, then closed by the owner
	portEndOwner6    = 7104 // closed by the owners, both ends, IPv6
)

// TestCaptureDestroyed writes the fixture (only with -capture).
func TestCaptureDestroyed(t *testing.T) {
	if !*capture {
		t.Skip("run with -capture to write testdata/ from this kernel")
	}
	p := testnet.NewPair(t)
	sub, err := SubscribeDestroyed(p.A.NetNS())
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	want := captureEndings(t, p)

	var out []byte
	seen := map[uint64]bool{}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for len(seen) < len(want) {
		b, err := sub.next(ctx)
		if err != nil {
			t.Fatalf("%d of %d broadcasts: %v", len(seen), len(want), err)
		}
		var s Socket
		if _, _, _, payload, _, ok := splitMsg(b); ok && decode(payload, &s) == nil && want[s.Cookie] {
			seen[s.Cookie] = true
			out = append(out, b...)
		}
	}
	if err := os.MkdirAll(filepath.Dir(destroyedFixture), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(destroyedFixture, out, 0o644); err != nil {
		t.Fatal(err)
	}
}

// captureEndings ends connections in A in each way of the fixture and returns
// the cookies of the sockets whose broadcasts it wants.
func captureEndings(t *testing.T, p *testnet.Pair) map[uint64]bool {
	want := map[uint64]bool{}
	at := func(host string, port int) string { return host + ":" + strconv.Itoa(port) }

	// Closed by the owners: both ends live in A (over loopback).
	for _, x := range []struct {
		host string
		port int
	}{{"127.0.0.1", portEndOwner}, {"[::1]", portEndOwner6}} {
		l := p.A.Listen(at(x.host, x.port))
		c := p.A.Dial(l.Addr().String())
		s := acceptHold(t, l)
		c.Write([]byte("hello"))
		want[testnet.Cookie(t, c)], want[testnet.Cookie(t, s)] = true, true
		c.Close()
		waitFor(t, "the FIN", 5*time.Second, func() bool {
			s.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
			_, err := s.Read(make([]byte, 16))
			return err != nil && !errors.Is(err, os.ErrDeadlineExceeded)
		})
		s.Close()
	}

	// SOCK_DESTROY.
	l := p.A.Listen(at("127.0.0.1", portEndDestroy))
	c := p.A.Dial(l.Addr().String())
	acceptHold(t, l)
	ck := testnet.Cookie(t, c)
	dc := dialNS(t, p.A)
	if err := dc.Destroy(byCookie(dumpAll(t, dc, nil), ck)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	want[ck] = true

	// Keepalive: B vanishes.
	l = p.B.Listen(at(testnet.AddrB.String(), portEndKeepalive))
	c = p.A.Dial(l.Addr().String(), testnet.Keepalive(time.Second, time.Second, 3))
	acceptHold(t, l)
	p.B.LinkDown()
	if err := readErr(t, c, 15*time.Second); !errors.Is(err, syscall.ETIMEDOUT) {
		t.Fatalf("keepalive: %v, want ETIMEDOUT", err)
	}
	want[testnet.Cookie(t, c)] = true
	c.Close()
	return want
}

// fakeSubscription is a Subscription reading from a socket pair: the test
// writes datagrams to the returned descriptor.
func fakeSubscription(t testing.TB) (*Subscription, int) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	s := newSubscription(fds[0])
	t.Cleanup(func() { s.Close(); unix.Close(fds[1]) })
	return s, fds[1]
}

// fixtureDatagrams returns the fixture's datagrams (one message each).
func fixtureDatagrams(t testing.TB) [][]byte {
	b, err := os.ReadFile(destroyedFixture)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for len(b) > 0 {
		n := int(binary.NativeEndian.Uint32(b))
		if n < nlHdrLen || n > len(b) {
			t.Fatalf("%s: bad netlink message length %d", destroyedFixture, n)
		}
		m := min((n+3)&^3, len(b))
		out = append(out, b[:m])
		b = b[m:]
	}
	return out
}

// TestDecodeDestroyed runs the kernel's broadcasts through the subscription's
// receive path, and shows what each ending looks like: every one is CLOSE
// with no timer, uid or inode, and the keepalive drop kept its probe count.
func TestDecodeDestroyed(t *testing.T) {
	sub, w := fakeSubscription(t)
	dgrams := fixtureDatagrams(t)
	for _, d := range dgrams {
		if err := unix.Send(w, d, 0); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	byPort := map[uint16][]Socket{}
	n := 0
	for s, err := range sub.Sockets(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		port := s.Remote.Port()
		if s.Local.Port() < 8000 {
			port = s.Local.Port()
		}
		byPort[port] = append(byPort[port], *s)
		if n++; n == len(dgrams) {
			break
		}
	}
	for _, s := range append(append(byPort[portEndOwner], byPort[portEndOwner6]...), append(byPort[portEndKeepalive], byPort[portEndDestroy]...)...) {
		if s.State != StateClose || s.Timer != TimerOff || s.TimerRetrans != 0 || s.UID != 0 || s.Inode != 0 {
			t.Errorf("%s: state %s timer %s retrans %d uid %d inode %d; want CLOSE and the rest zero", s.ID(), s.State, s.Timer, s.TimerRetrans, s.UID, s.Inode)
		}
		if s.Info.Len < 104 || s.Info.State != uint8(StateClose) {
			t.Errorf("%s: tcp_info of %d bytes, state %d", s.ID(), s.Info.Len, s.Info.State)
		}
	}
	if len(byPort[portEndOwner]) != 2 || len(byPort[portEndOwner6]) != 2 || len(byPort[portEndKeepalive]) != 1 || len(byPort[portEndDestroy]) != 1 {
		t.Fatalf("fixture endings by port: %v, want 2, 2, 1, 1", byPort)
	}
	if s := byPort[portEndOwner6][0]; s.Family != FamilyInet6 || !s.Local.Addr().Is6() {
		t.Errorf("IPv6 ending decoded as %s %s", s.Family, s.ID())
	}
	ka := byPort[portEndKeepalive][0]
	if ka.Info.Probes != 3 || ka.Info.Retransmits != 0 || ka.Info.LastAckRecv < 3*time.Second {
		t.Errorf("keepalive drop: %d probes, %d retransmits, last ACK %v ago; want 3, 0, at least 3s", ka.Info.Probes, ka.Info.Retransmits, ka.Info.LastAckRecv)
	}
	for _, s := range append(byPort[portEndOwner], byPort[portEndDestroy]...) {
		if s.Info.Probes != 0 || s.Info.Retransmits != 0 {
			t.Errorf("%s: %d probes, %d retransmits; want none", s.ID(), s.Info.Probes, s.Info.Retransmits)
		}
	}
}

// FuzzSubscription feeds datagrams through the subscription's receive path:
// no panic, each message either a socket or an error, and the stream goes on
// to the next datagram.
func FuzzSubscription(f *testing.F) {
	dgrams := fixtureDatagrams(f)
	for _, d := range dgrams {
		f.Add(d)
	}
	f.Add(append(append([]byte(nil), dgrams[0]...), dgrams[1]...))
	f.Add(nlmsg(nlmsgError, 0, 0, make([]byte, 20)))
	f.Add([]byte{})
	// The sentinel: a real broadcast with a cookie of its own, sent after the
	// fuzzed datagram; when it arrives, the fuzzed one has been handled.
	const sentinel = 0x5e471e1
	last := append([]byte(nil), dgrams[0]...)
	binary.NativeEndian.PutUint32(last[nlHdrLen+offCookie:], sentinel)
	binary.NativeEndian.PutUint32(last[nlHdrLen+offCookie+4:], 0)
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > destroyBufSize {
			return // larger than a datagram the subscription reads
		}
		sub, w := fakeSubscription(t)
		for _, d := range [][]byte{b, last} {
			if err := unix.Send(w, d, 0); err != nil {
				t.Skip(err)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for s, err := range sub.Sockets(ctx) {
			if errors.Is(err, context.DeadlineExceeded) {
				t.Fatal("the sentinel after the fuzzed datagram never came")
			}
			if err != nil {
				continue
			}
			if s.Family != FamilyInet && s.Family != FamilyInet6 {
				t.Fatalf("decoded family %d", s.Family)
			}
			if s.Cookie == sentinel {
				break
			}
		}
	})
}
