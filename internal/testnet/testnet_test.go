package testnet

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/tcpkeep/tcpkeep/internal/netns"
)

func TestNewNSStartsAtKernelDefaults(t *testing.T) {
	ns := NewNS(t)
	if got := ns.ReadSysctl("net/ipv4/tcp_keepalive_time"); got != "7200" {
		t.Fatalf("tcp_keepalive_time in a fresh namespace = %q, want 7200", got)
	}
}

func TestPairConnectsBothFamilies(t *testing.T) {
	p := NewPair(t)
	for _, addr := range []string{"10.77.0.2:7070", "[fd77::2]:7071"} {
		l := p.B.Listen(addr)
		c := p.A.Dial(addr, Keepalive(time.Second, time.Second, 3))
		s, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if _, err := c.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 1)
		if _, err := io.ReadFull(s, b); err != nil {
			t.Fatal(err)
		}
		if Cookie(t, c) == 0 {
			t.Fatal("SO_COOKIE is 0")
		}
		if ra := s.RemoteAddr().(*net.TCPAddr); !ra.IP.Equal(AddrA.AsSlice()) && !ra.IP.Equal(AddrA6.AsSlice()) {
			t.Fatalf("server sees %v, want an address of A", ra)
		}
	}
}

func TestLinkDownSilencesThePeer(t *testing.T) {
	p := NewPair(t)
	l := p.B.Listen("10.77.0.2:7070")
	c := p.A.Dial("10.77.0.2:7070")
	s, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p.B.LinkDown()
	c.Write([]byte("x"))
	s.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := s.Read(make([]byte, 1)); err == nil {
		t.Fatal("data crossed a link that is down")
	}
}

func TestUnnamedJoinFillKill(t *testing.T) {
	h := Unnamed(t)
	self, err := netns.Self().Inode()
	if err != nil {
		t.Fatal(err)
	}
	ino := h.Inode()
	if ino == self {
		t.Fatal("Unnamed's process runs in the test's own namespace")
	}
	pid := h.Join()
	if other, err := (netns.NS{Path: fmt.Sprintf("/proc/%d/ns/net", pid)}).Inode(); err != nil || other != ino {
		t.Fatalf("Join's process is in %d (%v), want %d", other, err, ino)
	}
	if n := Fill(t, []netns.NS{h.NetNS()}, 7); n != 14 {
		t.Fatalf("Fill = %d sockets, want 14", n)
	}
	h.Kill()
	if _, err := os.Stat(h.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("after Kill, %s: %v, want it gone", h.Path(), err)
	}
}
