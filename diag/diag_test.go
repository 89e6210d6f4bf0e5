package diag

import (
	"context"
	"errors"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpkeep/tcpkeep/internal/testnet"
)

// TestMatchesSS puts real sockets in every state tcpkeep cares about, over IPv4
// and IPv6, and checks that diag reports each of them as ss does, field by
// field.
func TestMatchesSS(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		name := "ipv4"
		if v6 {
			name = "ipv6"
		}
		t.Run(name, func(t *testing.T) {
			sc := buildScenario(t, v6)
			a, b, gone := dialNS(t, sc.Live.A), dialNS(t, sc.Live.B), dialNS(t, sc.Gone.A)

			port := func(s *Socket, p uint16) bool { return s.Remote.Port() == p || s.Local.Port() == p }
			// Wait until each socket is in the state the scenario builds.
			want := []struct {
				c    *Conn
				what string
				ok   func(*Socket) bool
			}{
				{b, "LISTEN", func(s *Socket) bool { return s.State == StateListen && port(s, portKeepalive) }},
				{a, "ESTABLISHED, keepalive timer", func(s *Socket) bool {
					armed, known := s.KeepaliveArmed()
					return port(s, portKeepalive) && s.Timer == TimerKeepalive && armed && known
				}},
				{a, "ESTABLISHED, no timer", func(s *Socket) bool {
					armed, known := s.KeepaliveArmed()
					return port(s, portNoKA) && s.State == StateEstablished && !armed && known
				}},
				{a, "FIN_WAIT2, fin_wait2 timer", func(s *Socket) bool {
					return port(s, portCloseWait) && s.State == StateFinWait2 && s.Timer == TimerFinWait2
				}},
				{b, "CLOSE_WAIT", func(s *Socket) bool { return port(s, portCloseWait) && s.State == StateCloseWait }},
				{a, "TIME_WAIT, timewait timer", func(s *Socket) bool {
					return port(s, portTimeWait) && s.State == StateTimeWait && s.Timer == TimerTimeWait && s.Info.Len == 0
				}},
				{a, "persist timer", func(s *Socket) bool { return port(s, portPersist) && s.Timer == TimerPersist }},
				{a, "SYN_SENT as uid 1000", func(s *Socket) bool {
					return port(s, portSynSent) && s.State == StateSynSent && s.Timer == TimerRetransmit && s.UID == 1000
				}},
				{gone, "retransmitting", func(s *Socket) bool {
					return port(s, portRetrans) && s.State == StateEstablished && s.Timer == TimerRetransmit &&
						s.TimerRetrans >= 1 && s.Info.Unacked > 0 && s.Info.Retransmits >= 1
				}},
			}
			for _, w := range want {
				waitSocket(t, w.c, w.what, w.ok)
			}

			for _, x := range []struct {
				ns *testnet.NS
				c  *Conn
			}{{sc.Live.A, a}, {sc.Live.B, b}, {sc.Gone.A, gone}} {
				socks, _ := matchSS(t, x.ns, x.c)
				for _, s := range socks {
					fam := FamilyInet
					if v6 {
						fam = FamilyInet6
					}
					if s.Family != fam || s.Local.Addr().Is4() == v6 {
						t.Errorf("%s: family %s, want %s", s.ID(), s.Family, fam)
					}
				}
			}
		})
	}
}

// TestFilterInKernel checks that the state mask and the bytecode the kernel
// runs select exactly the sockets the same filter selects in Go.
func TestFilterInKernel(t *testing.T) {
	ns := testnet.NewNS(t)
	c := dialNS(t, ns)
	// Listeners on three addresses and two families, a few connections to each.
	for _, host := range []string{"127.0.0.1", "127.0.1.1", "[::1]"} {
		for _, p := range []string{"7001", "7002", "7100"} {
			l := ns.Listen(host + ":" + p)
			for range 2 {
				ns.Dial(l.Addr().String())
				acceptHold(t, l)
			}
		}
	}
	// A dual-stack listener: the connections it accepts from IPv4 clients are
	// IPv6 sockets with IPv4-mapped addresses.
	dual := ns.Listen("[::]:7200")
	for range 2 {
		ns.Dial("127.0.0.1:7200")
		acceptHold(t, dual)
	}
	all := dumpAll(t, c, nil)
	if len(all) != 9+9*2*2+5 {
		t.Fatalf("dumped %d sockets, want 50", len(all))
	}
	pfx := netip.MustParsePrefix
	filters := map[string]Filter{
		"sport 7001":            {SPort: PortRange{7001, 7001}},
		"sport 7001-7002":       {SPort: PortRange{7001, 7002}},
		"sport from 7002":       {SPort: PortRange{7002, 65535}},
		"sport up to 7001":      {SPort: PortRange{0, 7001}},
		"dport 7100":            {DPort: PortRange{7100, 7100}},
		"dport 7002-7100":       {DPort: PortRange{7002, 7100}},
		"src 127.0.1.0/24":      {Src: pfx("127.0.1.0/24")},
		"src 127.0.0.1/32":      {Src: pfx("127.0.0.1/32")},
		"dst 127.0.0.0/8":       {Dst: pfx("127.0.0.0/8")},
		"src ::1/128":           {Src: pfx("::1/128")},
		"dst ::/0":              {Dst: pfx("::/0")},
		"src 127.0.1.1 sport":   {Src: pfx("127.0.1.1/32"), SPort: PortRange{7002, 7002}},
		"dst ::1 dport range":   {Dst: pfx("::1/128"), DPort: PortRange{7001, 7002}},
		"established v6":        {States: Of(StateEstablished), Family: FamilyInet6},
		"listening v4":          {States: Of(StateListen), Family: FamilyInet},
		"listening, sport 7100": {States: Of(StateListen), SPort: PortRange{7100, 7100}},
		"everything in ranges":  {SPort: PortRange{1, 65535}, DPort: PortRange{0, 65535}},
		"nothing":               {SPort: PortRange{9000, 9001}},
		"v6, IPv4 src (mapped)": {Family: FamilyInet6, Src: pfx("127.0.0.0/8")},
		"mapped dst prefix":     {Dst: pfx("::ffff:127.0.0.0/104")},
		"IPv4 src, both":        {Src: pfx("127.0.0.1/32"), SPort: PortRange{7200, 7200}},
	}
	cookies := func(socks []Socket) []uint64 {
		var out []uint64
		for _, s := range socks {
			out = append(out, s.Cookie)
		}
		slices.Sort(out)
		return out
	}
	for name, f := range filters {
		t.Run(name, func(t *testing.T) {
			got := cookies(dumpAll(t, c, &f))
			var inGo []Socket
			for _, s := range all {
				if f.Match(&s) {
					inGo = append(inGo, s)
				}
			}
			want := cookies(inGo)
			if !slices.Equal(got, want) {
				t.Fatalf("kernel selected %d sockets %x, Go %d %x", len(got), got, len(want), want)
			}
			if name != "nothing" && name != "everything in ranges" && (len(want) == 0 || len(want) == len(all)) {
				t.Fatalf("filter selects %d of %d sockets: it tests nothing", len(want), len(all))
			}
		})
	}
}

// TestDestroy closes one socket by its identity and checks that its owner sees
// ECONNABORTED, and that a gone socket, or the same 4-tuple with another
// cookie, is ErrNotFound.
func TestDestroy(t *testing.T) {
	for _, host := range []string{"127.0.0.1", "[::1]"} {
		t.Run(host, func(t *testing.T) {
			ns := testnet.NewNS(t)
			c := dialNS(t, ns)
			l := ns.Listen(host + ":0")
			cl := ns.Dial(l.Addr().String())
			acceptHold(t, l)
			other := ns.Dial(l.Addr().String())
			acceptHold(t, l)

			cookie := testnet.Cookie(t, cl)
			s := byCookie(dumpAll(t, c, nil), cookie)
			if s == nil {
				t.Fatal("the client socket is not in the dump")
			}
			victim := *s

			wrong := victim
			wrong.Cookie ^= 1
			if err := c.Destroy(&wrong); !errors.Is(err, ErrNotFound) {
				t.Fatalf("destroy with another cookie: %v, want ErrNotFound", err)
			}
			if err := c.Destroy(&victim); err != nil {
				t.Fatal(err)
			}
			cl.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := cl.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNABORTED) {
				t.Fatalf("owner's read after destroy: %v, want ECONNABORTED", err)
			}
			if err := c.Destroy(&victim); !errors.Is(err, ErrNotFound) {
				t.Fatalf("destroy of a gone socket: %v, want ErrNotFound", err)
			}
			// The other connection, and the peer's end, are untouched (the peer
			// got a RST, but still exists until it reads).
			after := dumpAll(t, c, nil)
			if byCookie(after, cookie) != nil {
				t.Fatal("the destroyed socket is still in the dump")
			}
			if byCookie(after, testnet.Cookie(t, other)) == nil {
				t.Fatal("destroy closed another socket too")
			}
		})
	}
}

// TestStopDrains stops a dump early, by break and by cancelling the context,
// and checks the Conn still dumps everything afterwards.
func TestStopDrains(t *testing.T) {
	ns := testnet.NewNS(t)
	n := testnet.Many(t, ns, 2000)
	stopDrains(t, dialNS(t, ns), n)

	// The dump allocates per request, never per socket: a dump of n sockets
	// makes far fewer than n allocations.
	c := dialNS(t, ns)
	allocs := testing.AllocsPerRun(3, func() {
		for _, err := range c.Sockets(context.Background(), nil) {
			if err != nil {
				t.Fatal(err)
			}
		}
	})
	if allocs > 100 {
		t.Fatalf("a dump of %d sockets made %.0f allocations, want a constant few (<= 100)", n, allocs)
	}
	var s Socket
	msgs := fixtureMessages(t, fixtures[0])
	if a := testing.AllocsPerRun(10, func() {
		for _, m := range msgs {
			decode(m, &s)
		}
	}); a != 0 {
		t.Fatalf("decoding made %.1f allocations, want 0", a)
	}
}

func stopDrains(t *testing.T, c *Conn, n int) {
	count := func() int { return len(dumpAll(t, c, &Filter{States: Of(StateEstablished)})) }
	if got := count(); got != n {
		t.Fatalf("dumped %d established sockets, want %d", got, n)
	}

	for range c.Sockets(context.Background(), nil) {
		break
	}
	if got := count(); got != n {
		t.Fatalf("after a break: dumped %d, want %d", got, n)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	seen := 0
	var last error
	for _, err := range c.Sockets(ctx, nil) {
		if err != nil {
			last = err
			break
		}
		if seen++; seen == 10 {
			cancel()
		}
	}
	if !errors.Is(last, context.Canceled) || seen != 10 {
		t.Fatalf("after cancel: saw %d sockets and error %v, want 10 and context.Canceled", seen, last)
	}
	if got := count(); got != n {
		t.Fatalf("after cancel: dumped %d, want %d", got, n)
	}
}

// TestDialErrors: a namespace that cannot be entered is Dial's error, as the
// namespace said it.
func TestDialErrors(t *testing.T) {
	_, err := Dial(failingNS{})
	if !errors.Is(err, errCannotEnter) {
		t.Fatalf("Dial in a namespace that cannot be entered: %v, want its error", err)
	}
}

var errCannotEnter = errors.New("cannot enter")

type failingNS struct{}

func (failingNS) Do(func() error) error { return errCannotEnter }

// TestDestroyNeedsCapability destroys as a thread that is not root: the error
// says what is needed, and the socket lives on.
func TestDestroyNeedsCapability(t *testing.T) {
	ns := testnet.NewNS(t)
	c := dialNS(t, ns)
	l := ns.Listen("127.0.0.1:0")
	cl := ns.Dial(l.Addr().String())
	acceptHold(t, l)
	s := byCookie(dumpAll(t, c, nil), testnet.Cookie(t, cl))
	if s == nil {
		t.Fatal("the client socket is not in the dump")
	}
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: this thread, no longer root, dies with the goroutine.
		runtime.LockOSThread()
		// The raw system call changes this thread's effective uid only.
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, ^uintptr(0), 1000, ^uintptr(0)); e != 0 {
			errc <- e
			return
		}
		errc <- c.Destroy(s)
	}()
	err := <-errc
	if !errors.Is(err, unix.EPERM) || !strings.Contains(err.Error(), "destroy "+s.ID()) {
		t.Fatalf("destroy without CAP_NET_ADMIN: %v, want EPERM, naming the socket", err)
	}
	if byCookie(dumpAll(t, c, nil), s.Cookie) == nil {
		t.Fatal("the socket is gone after a denied destroy")
	}
}

// TestDestroyWhileDumping destroys sockets from inside the loop over a dump,
// as a kill command does, and the dump carries on to the end.
func TestDestroyWhileDumping(t *testing.T) {
	ns := testnet.NewNS(t)
	n := testnet.Many(t, ns, 400)
	c := dialNS(t, ns)
	seen := 0
	var destroyed []uint64
	for s, err := range c.Sockets(context.Background(), &Filter{States: Of(StateEstablished), Family: FamilyInet}) {
		if err != nil {
			t.Fatal(err)
		}
		if seen++; seen%4 == 0 {
			// The socket may have been reset already, by the destruction of its
			// peer after the kernel put it in the datagram being read.
			switch err := c.Destroy(s); {
			case err == nil:
				destroyed = append(destroyed, s.Cookie)
			case !errors.Is(err, ErrNotFound):
				t.Fatal(err)
			}
		}
	}
	// A destroyed socket resets its peer, which then leaves the table before the
	// dump reaches it: the dump sees every socket but those.
	if seen < n-len(destroyed) || len(destroyed) < n/8 {
		t.Fatalf("saw %d of %d sockets, destroyed %d", seen, n, len(destroyed))
	}
	after := dumpAll(t, c, &Filter{States: Of(StateEstablished)})
	for _, ck := range destroyed {
		if byCookie(after, ck) != nil {
			t.Fatalf("destroyed socket %x is still there", ck)
		}
	}
	if len(after) > n-len(destroyed) {
		t.Fatalf("%d established sockets left of %d after destroying %d", len(after), n, len(destroyed))
	}
}
