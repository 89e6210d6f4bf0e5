package kill_test

// Every test builds its sockets in namespaces it creates and checks what the
// kernel shows afterwards: only the selected sockets die.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpkeep/tcpkeep/diag"
	"github.com/tcpkeep/tcpkeep/internal/audit"
	"github.com/tcpkeep/tcpkeep/internal/kernel"
	"github.com/tcpkeep/tcpkeep/internal/kill"
	"github.com/tcpkeep/tcpkeep/internal/testnet"
	"github.com/tcpkeep/tcpkeep/sysctl"
)

// action is a copy of a kill.Action, kept after the emit call.
type action struct {
	sock    diag.Socket
	reason  string
	finding *audit.Finding
	result  kill.Result
	err     error
}

// dialNS opens a sock_diag Conn inside ns.
func dialNS(t testing.TB, ns *testnet.NS) *diag.Conn {
	t.Helper()
	c, err := diag.Dial(ns.NetNS())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// destroyFunc is a Destroyer made of a function: the tests' hook between the
// dump and the destroy.
type destroyFunc func(s *diag.Socket) error

func (f destroyFunc) Destroy(s *diag.Socket) error { return f(s) }

// hooked is a namespace whose connections destroy through a hook.
type hooked struct {
	kernel.NS
	hook func(d kill.Destroyer) kill.Destroyer
}

func (h hooked) Dial() (kernel.Conn, error) {
	c, err := h.NS.Dial()
	if err != nil {
		return nil, err
	}
	return hookedConn{c, h.hook(c)}, nil
}

type hookedConn struct {
	kernel.Conn
	d kill.Destroyer
}

func (c hookedConn) Destroy(s *diag.Socket) error { return c.d.Destroy(s) }

// run runs kill.Run on ns as tcpkeep kill does. hook, when not nil, wraps the
// destroying Conn.
func run(t *testing.T, ns *testnet.NS, cfg kill.Config, hook func(d kill.Destroyer) kill.Destroyer) ([]action, kill.Summary, error) {
	t.Helper()
	var k kernel.NS = kernel.Live(ns.NetNS())
	if hook != nil {
		k = hooked{k, hook}
	}
	var acts []action
	sum, err := kill.Run(context.Background(), k, cfg, func(a *kill.Action) {
		var f *audit.Finding
		if a.Finding != nil {
			cp := *a.Finding
			f = &cp
		}
		acts = append(acts, action{*a.Socket, a.Reason, f, a.Result, a.Err})
	})
	return acts, sum, err
}

// dump returns copies of the sockets f selects in ns.
func dump(t *testing.T, ns *testnet.NS, f *diag.Filter) []diag.Socket {
	t.Helper()
	var out []diag.Socket
	for s, err := range dialNS(t, ns).Sockets(context.Background(), f) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, *s)
	}
	return out
}

func has(socks []diag.Socket, cookie uint64) bool {
	return slices.ContainsFunc(socks, func(s diag.Socket) bool { return s.Cookie == cookie })
}

func cookie(t *testing.T, c net.Conn) uint64 { return testnet.Cookie(t, c.(*net.TCPConn)) }

// serve accepts connections on l, echoes what they send, and hands them out
// on the returned channel.
func serve(t *testing.T, l *net.TCPListener) <-chan net.Conn {
	t.Helper()
	ch := make(chan net.Conn, 64)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
			go io.Copy(c, c)
			ch <- c
		}
	}()
	return ch
}

func accepted(t *testing.T, ch <-chan net.Conn) net.Conn {
	t.Helper()
	select {
	case c := <-ch:
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("no connection accepted within 5s")
	}
	return nil
}

// alive checks that c still carries data both ways (through the echo server).
func alive(t *testing.T, c net.Conn) error {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write([]byte("ping")); err != nil {
		return err
	}
	b := make([]byte, 4)
	_, err := io.ReadFull(c, b)
	return err
}

// from dials from the local address src (port 0: any).
func from(src string) testnet.DialOption {
	return func(d *net.Dialer) { d.LocalAddr = net.TCPAddrFromAddrPort(mustAddrPort(src)) }
}

func mustAddrPort(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// resetClose closes c with SO_LINGER 0: a RST, and the socket is freed at once
// (no FIN_WAIT, no TIME_WAIT).
func resetClose(t *testing.T, c net.Conn) {
	t.Helper()
	if err := c.(*net.TCPConn).SetLinger(0); err != nil {
		t.Fatal(err)
	}
	c.Close()
}

// TestHalfOpenClosedHealthySurvives: --finding half_open_keepalive closes the
// connection whose peer vanished, not the healthy one beside it with the same
// keepalive settings; the owner of the closed one gets ECONNABORTED.
func TestHalfOpenClosedHealthySurvives(t *testing.T) {
	p := testnet.NewPair(t)
	serve(t, p.B.Listen("10.77.0.2:7070"))
	half := p.A.Dial("10.77.0.2:7070", testnet.Keepalive(time.Second, time.Second, 5))
	hl := p.A.Listen("127.0.0.1:7071")
	hch := serve(t, hl)
	healthy := p.A.Dial("127.0.0.1:7071", testnet.Keepalive(time.Second, time.Second, 5))
	healthySrv := accepted(t, hch)
	halfCookie, healthyCookie, srvCookie := cookie(t, half), cookie(t, healthy), cookie(t, healthySrv)
	p.B.LinkDown()

	cfg := kill.Config{
		Filter:   &diag.Filter{States: diag.Of(diag.StateEstablished)},
		Findings: []audit.Code{audit.HalfOpenKeepalive},
		Audit:    audit.DefaultConfig(sysctl.Tunables{}),
	}
	// Probes go out after 1s of silence; the first unanswered one makes the
	// finding, the kernel itself gives up after 5 (about 6s).
	var closed *action
	testnet.Wait(t, 10*time.Second, "half_open_keepalive to select the connection to the vanished peer", func() bool {
		acts, sum, err := run(t, p.A, cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i, a := range acts {
			if a.sock.Cookie != halfCookie {
				t.Fatalf("selected %s (%s), want only the half-open connection", a.sock.ID(), a.reason)
			}
			if a.result != kill.Closed || a.reason != string(audit.HalfOpenKeepalive) || sum.Closed != 1 || sum.Failed != 0 || a.finding == nil {
				t.Fatalf("action %+v, summary %+v: want closed for half_open_keepalive", a, sum)
			}
			closed = &acts[i]
		}
		return closed != nil
	})
	half.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := half.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNABORTED) {
		t.Fatalf("owner's read after kill: %v, want ECONNABORTED", err)
	}
	after := dump(t, p.A, nil)
	if has(after, halfCookie) {
		t.Error("the killed socket is still in the dump")
	}
	if !has(after, healthyCookie) || !has(after, srvCookie) {
		t.Error("a healthy end is gone from the dump")
	}
	if err := alive(t, healthy); err != nil {
		t.Errorf("healthy connection after kill: %v", err)
	}
}

// TestGoneBetweenDumpAndDestroy: a socket that closes after the dump selected
// it and before its destroy is reported gone, which is not a failure.
func TestGoneBetweenDumpAndDestroy(t *testing.T) {
	ns := testnet.NewNS(t)
	l := ns.Listen("127.0.0.1:0")
	serve(t, l)
	c := ns.Dial(l.Addr().String())
	ck := cookie(t, c)
	port := uint16(l.Addr().(*net.TCPAddr).Port)
	cfg := kill.Config{Filter: &diag.Filter{States: diag.Of(diag.StateEstablished), DPort: diag.PortRange{Lo: port, Hi: port}}, All: true}
	acts, sum, err := run(t, ns, cfg, func(d kill.Destroyer) kill.Destroyer {
		return destroyFunc(func(s *diag.Socket) error {
			if s.Cookie == ck {
				resetClose(t, c) // the application closes it first
			}
			return d.Destroy(s)
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(acts) != 1 || acts[0].sock.Cookie != ck || acts[0].result != kill.Gone || acts[0].err != nil {
		t.Fatalf("actions %+v, want the one socket, gone, without an error", acts)
	}
	if sum.Gone != 1 || sum.Failed != 0 || sum.Closed != 0 || sum.Selected != 1 {
		t.Fatalf("summary %+v, want 1 selected, 1 gone, 0 failed", sum)
	}
}

// TestReusedTupleNotClosed: the selected connection closes, and a new one
// takes the same addresses and ports before the destroy: the new one (another
// cookie) is not touched.
func TestReusedTupleNotClosed(t *testing.T) {
	ns := testnet.NewNS(t)
	l := ns.Listen("127.0.0.1:0")
	serve(t, l)
	const src = "127.0.0.1:40123"
	old := ns.Dial(l.Addr().String(), from(src))
	oldCookie := cookie(t, old)
	var reused net.Conn
	cfg := kill.Config{Filter: &diag.Filter{SPort: diag.PortRange{Lo: 40123, Hi: 40123}}, All: true}
	acts, sum, err := run(t, ns, cfg, func(d kill.Destroyer) kill.Destroyer {
		return destroyFunc(func(s *diag.Socket) error {
			if s.Cookie == oldCookie && reused == nil {
				resetClose(t, old)
				reused = ns.Dial(l.Addr().String(), from(src))
			}
			return d.Destroy(s)
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	if reused == nil {
		t.Fatal("the hook never ran: the connection was not selected")
	}
	newCookie := cookie(t, reused)
	if newCookie == oldCookie || reused.LocalAddr().String() != src {
		t.Fatalf("new connection %s cookie %#x, want %s with a cookie other than %#x", reused.LocalAddr(), newCookie, src, oldCookie)
	}
	if len(acts) != 1 || acts[0].result != kill.Gone || sum.Gone != 1 || sum.Closed != 0 {
		t.Fatalf("actions %+v summary %+v, want the old connection reported gone", acts, sum)
	}
	if err := alive(t, reused); err != nil {
		t.Fatalf("the new connection on the same 4-tuple: %v, want it untouched", err)
	}
	if !has(dump(t, ns, nil), newCookie) {
		t.Fatal("the new connection is not in the dump")
	}
}

// TestMaxPerPeerClosesIdlestSurplus: one peer holds 5 connections to a port,
// another 2; with a limit of 2 exactly the 3 idlest of the first peer close.
func TestMaxPerPeerClosesIdlestSurplus(t *testing.T) {
	ns := testnet.NewNS(t)
	l := ns.Listen("127.0.0.1:0")
	ch := serve(t, l)
	var clients, servers []net.Conn
	for i, src := range []string{"127.0.0.2", "127.0.0.2", "127.0.0.2", "127.0.0.2", "127.0.0.2", "127.0.0.3", "127.0.0.3"} {
		clients = append(clients, ns.Dial(l.Addr().String(), from(src+":0")))
		servers = append(servers, accepted(t, ch))
		_ = i
	}
	srvCookie := make([]uint64, len(servers))
	for i, s := range servers {
		srvCookie[i] = cookie(t, s)
	}
	idle := func() map[uint64]time.Duration {
		m := map[uint64]time.Duration{}
		for _, s := range dump(t, ns, nil) {
			m[s.Cookie] = s.Idle()
		}
		return m
	}
	// Make the first peer's idle times differ for real: write on each in turn,
	// each once the kernel counts 20ms of silence since the previous write.
	waitUntil := func(what string, cond func(map[uint64]time.Duration) bool) {
		t.Helper()
		if !testnet.Poll(5*time.Second, func() bool { return cond(idle()) }) {
			t.Fatalf("%s: not within 5s; idle times %v", what, idle())
		}
	}
	waitUntil("connections idle", func(m map[uint64]time.Duration) bool { return m[srvCookie[5]] >= 20*time.Millisecond })
	for i := 0; i < 5; i++ {
		if _, err := clients[i].Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		io.ReadFull(clients[i], make([]byte, 1)) // the echo
		waitUntil(fmt.Sprintf("connection %d written", i), func(m map[uint64]time.Duration) bool {
			return m[srvCookie[i]] >= 20*time.Millisecond && m[srvCookie[i]]+10*time.Millisecond < m[srvCookie[5]]
		})
	}
	waitUntil("idle times ordered", func(m map[uint64]time.Duration) bool {
		for i := 1; i < 5; i++ {
			if m[srvCookie[i]]+10*time.Millisecond > m[srvCookie[i-1]] {
				return false
			}
		}
		return true
	})

	cfg := kill.Config{Filter: &diag.Filter{States: diag.Of(diag.StateEstablished)}, MaxPerPeer: 2}
	acts, sum, err := run(t, ns, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []uint64
	for _, a := range acts {
		if a.result != kill.Closed || a.reason != string(audit.PeerLimitExceeded) || a.finding == nil || a.finding.Count != 5 || a.finding.Limit != 2 {
			t.Errorf("action %+v, want closed for peer_limit_exceeded: 5 connections over 2", a)
		}
		got = append(got, a.sock.Cookie)
	}
	want := srvCookie[:3]
	slices.Sort(got)
	want = slices.Sorted(slices.Values(want))
	if !slices.Equal(got, want) {
		t.Fatalf("closed %x, want the 3 idlest server ends of the first peer %x", got, want)
	}
	if sum.Dumps != 2 || sum.Closed != 3 || sum.Selected != 3 {
		t.Errorf("summary %+v, want 2 dumps, 3 selected and closed", sum)
	}
	after := dump(t, ns, nil)
	for i, ck := range srvCookie {
		if has(after, ck) != (i >= 3) {
			t.Errorf("server end %d (cookie %#x) present %v after kill", i, ck, has(after, ck))
		}
	}
	for i := 3; i < len(clients); i++ {
		if err := alive(t, clients[i]); err != nil {
			t.Errorf("surviving connection %d: %v", i, err)
		}
	}
}

// TestDryRunChangesNothing: a dry run reports would_close for what it selects
// and every socket stays.
func TestDryRunChangesNothing(t *testing.T) {
	ns := testnet.NewNS(t)
	l := ns.Listen("127.0.0.1:0")
	serve(t, l)
	var conns []net.Conn
	for range 3 {
		conns = append(conns, ns.Dial(l.Addr().String()))
	}
	before := dump(t, ns, nil)
	port := uint16(l.Addr().(*net.TCPAddr).Port)
	cfg := kill.Config{Filter: &diag.Filter{DPort: diag.PortRange{Lo: port, Hi: port}}, All: true, DryRun: true}
	d := destroyFunc(func(s *diag.Socket) error { t.Errorf("dry run destroyed %s", s.ID()); return nil })
	acts, sum, err := run(t, ns, cfg, func(kill.Destroyer) kill.Destroyer { return d })
	if err != nil {
		t.Fatal(err)
	}
	if len(acts) != 3 || sum.Selected != 3 || sum.Closed != 0 {
		t.Fatalf("dry run: %d actions, summary %+v, want 3 selected and none closed", len(acts), sum)
	}
	for _, a := range acts {
		if a.result != kill.WouldClose || a.reason != kill.ReasonFilter {
			t.Errorf("action %+v, want would_close for filter", a)
		}
	}
	after := dump(t, ns, nil)
	for _, s := range before {
		if !has(after, s.Cookie) {
			t.Errorf("%s vanished in a dry run", s.ID())
		}
	}
	for i, c := range conns {
		if err := alive(t, c); err != nil {
			t.Errorf("connection %d after a dry run: %v", i, err)
		}
	}
}

// TestListenerSurvivesBroadFilter: a filter that matches a listener and its
// connections closes the connections only, unless Listeners says otherwise.
//
// The listener is plain TCP: Go's listeners are MPTCP by default (Go 1.24),
// and the kernel refuses to destroy the TCP side of an MPTCP listener (EINVAL).
func TestListenerSurvivesBroadFilter(t *testing.T) {
	for _, host := range []string{"127.0.0.1", "[::1]"} {
		t.Run(host, func(t *testing.T) { listenerSurvives(t, host) })
	}
}

func listenerSurvives(t *testing.T, host string) {
	ns := testnet.NewNS(t)
	var l *net.TCPListener
	ns.Do(func() error {
		var lc net.ListenConfig
		lc.SetMultipathTCP(false)
		ln, err := lc.Listen(context.Background(), "tcp", host+":0")
		if err == nil {
			l = ln.(*net.TCPListener)
			t.Cleanup(func() { l.Close() })
		}
		return err
	})
	ch := serve(t, l)
	ns.Dial(l.Addr().String())
	srv := accepted(t, ch)
	port := uint16(l.Addr().(*net.TCPAddr).Port)
	cfg := kill.Config{Filter: &diag.Filter{SPort: diag.PortRange{Lo: port, Hi: port}}, All: true}
	acts, _, err := run(t, ns, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(acts) != 1 || acts[0].sock.Cookie != cookie(t, srv) || acts[0].result != kill.Closed {
		t.Fatalf("actions %+v, want only the accepted connection closed", acts)
	}
	lis := func() bool {
		return slices.ContainsFunc(dump(t, ns, nil), func(s diag.Socket) bool { return s.State == diag.StateListen })
	}
	if !lis() {
		t.Fatal("the listener was closed by a filter that did not name it")
	}
	cfg.Listeners = true
	acts, _, err = run(t, ns, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(acts) != 1 || acts[0].sock.State != diag.StateListen || acts[0].result != kill.Closed || lis() {
		for _, a := range acts {
			t.Logf("%s %s: %s %v", a.sock.ID(), a.sock.State, a.result, a.err)
		}
		t.Fatal("want the listener closed once listeners are named")
	}
}

// TestStopsAtFirstRefusal: a kernel that cannot destroy (or a caller without
// CAP_NET_ADMIN) stops the run at the first socket: one action, one error.
func TestStopsAtFirstRefusal(t *testing.T) {
	ns := testnet.NewNS(t)
	l := ns.Listen("127.0.0.1:0")
	serve(t, l)
	for range 3 {
		ns.Dial(l.Addr().String())
	}
	port := uint16(l.Addr().(*net.TCPAddr).Port)
	for _, tc := range []struct {
		err  error
		want kill.Result
	}{
		{fmt.Errorf("destroy x: %w", diag.ErrDestroyUnsupported), kill.Unsupported},
		{fmt.Errorf("destroy x: %w", unix.EPERM), kill.Denied},
	} {
		cfg := kill.Config{Filter: &diag.Filter{DPort: diag.PortRange{Lo: port, Hi: port}}, All: true}
		acts, sum, err := run(t, ns, cfg, func(kill.Destroyer) kill.Destroyer {
			return destroyFunc(func(*diag.Socket) error { return tc.err })
		})
		if !errors.Is(err, kill.ErrStopped) || !errors.Is(err, tc.err) {
			t.Errorf("%v: Run returned %v, want ErrStopped wrapping it", tc.err, err)
		}
		if len(acts) != 1 || acts[0].result != tc.want || sum.Failed != 1 {
			t.Errorf("%v: actions %+v summary %+v, want one %s action", tc.err, acts, sum, tc.want)
		}
	}
	if n := len(dump(t, ns, &diag.Filter{DPort: diag.PortRange{Lo: port, Hi: port}})); n != 3 {
		t.Errorf("%d connections left, want all 3", n)
	}
}

// TestMaxEndsTheRun: with Max, a run closes that many sockets and leaves the
// rest alone, however many are selected.
func TestMaxEndsTheRun(t *testing.T) {
	ns := testnet.NewNS(t)
	l := ns.Listen("127.0.0.1:0")
	serve(t, l)
	var conns []net.Conn
	for range 5 {
		conns = append(conns, ns.Dial(l.Addr().String()))
	}
	port := uint16(l.Addr().(*net.TCPAddr).Port)
	cfg := kill.Config{Filter: &diag.Filter{DPort: diag.PortRange{Lo: port, Hi: port}}, All: true, Max: 2}
	acts, sum, err := run(t, ns, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(acts) != 2 || sum.Selected != 2 || sum.Closed != 2 {
		t.Fatalf("Max 2: %d actions, summary %+v, want 2 selected and closed", len(acts), sum)
	}
	alives := 0
	for _, c := range conns {
		if alive(t, c) == nil {
			alives++
		}
	}
	if alives != 3 {
		t.Errorf("%d connections alive after closing 2 of 5, want 3", alives)
	}
}
