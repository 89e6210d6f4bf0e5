package testnet

import (
	"io"
	"net"
	"testing"
	"time"
)

// echo answers every connection on l with what it reads.
func echo(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() { io.Copy(c, c); c.Close() }()
	}
}

// roundTrip writes a byte and says whether it came back within timeout.
func roundTrip(c net.Conn, timeout time.Duration) bool {
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte("x")); err != nil {
		return false
	}
	_, err := io.ReadFull(c, make([]byte, 1))
	return err == nil
}

func TestRouterForgetsIdleFlows(t *testing.T) {
	r := NewRouter(t, 2*time.Second)
	if got := r.Router.ReadSysctl("net/netfilter/nf_conntrack_tcp_timeout_established"); got != "2" {
		t.Fatalf("router's conntrack timeout = %q, want 2", got)
	}
	if got := r.Client.ReadSysctl("net/ipv4/ip_forward"); got != "0" {
		t.Fatalf("client's ip_forward = %q: forwarding belongs to the router only", got)
	}
	l := r.Server.Listen(r.ServerAddr(7000))
	go echo(l)

	idle := r.Client.Dial(r.ServerAddr(7000))
	kept := r.Client.Dial(r.ServerAddr(7000), Keepalive(time.Second, time.Second, 3))
	for _, c := range []net.Conn{idle, kept} {
		if !roundTrip(c, 2*time.Second) {
			t.Fatal("no echo through the router on a fresh connection")
		}
	}
	time.Sleep(4 * time.Second) // the idle period is what is tested
	if roundTrip(idle, time.Second) {
		t.Error("a connection idle for twice the router's timeout still crosses it")
	}
	if !roundTrip(kept, time.Second) {
		t.Error("a connection with 1 s keepalive died behind a 2 s firewall")
	}
	// A new flow starts with a SYN and is let through.
	if !roundTrip(r.Client.Dial(r.ServerAddr(7000)), time.Second) {
		t.Error("a new connection cannot cross the router after an old one was forgotten")
	}
}
