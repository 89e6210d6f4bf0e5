package audit_test

// The kernel-timing suite: sysctl's model of the kernel's clocks against the
// kernel itself, in namespaces with short values. Each case lets the thing
// happen: an idle connection behind a conntrack router, a peer that vanishes,
// a write into silence, a reader that stops, a socket the application closed.
// The cases run in parallel; the whole suite takes about as long as its
// longest case (a minute and a half).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpkeep/tcpkeep/diag"
	"github.com/tcpkeep/tcpkeep/internal/audit"
	"github.com/tcpkeep/tcpkeep/internal/proc"
	"github.com/tcpkeep/tcpkeep/internal/testnet"
	"github.com/tcpkeep/tcpkeep/sysctl"
)

// predictionSlack is how far the predicted drop may be from the kernel's: its
// timers fire late (1 to 3%), and the model rounds nothing else.
const predictionSlack = 1500 * time.Millisecond

// measured collects what the suite measured, logged once at its end.
type measured struct {
	mu    sync.Mutex
	lines []string
}

func (m *measured) add(format string, a ...any) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lines = append(m.lines, fmt.Sprintf(format, a...))
}

func (m *measured) log(t *testing.T) {
	sort.Strings(m.lines)
	t.Logf("measured:\n  %s", strings.Join(m.lines, "\n  "))
}

// cases runs subtests all at once. t.Parallel would hold them to -parallel
// (GOMAXPROCS, 2 here), but these cases mostly wait on the kernel's timers:
// t.Run from several goroutines runs every one now.
type cases struct {
	t  *testing.T
	wg sync.WaitGroup
}

func (c *cases) run(name string, f func(t *testing.T)) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.t.Run(name, f)
	}()
}

func (c *cases) wait() { c.wg.Wait() }

// echo serves an echo on addr in ns, with keepalive off on the accepted
// connections, so that only the client's probes cross the router.
func echo(t *testing.T, ns *testnet.NS, addr string) {
	t.Helper()
	var l net.Listener
	ns.Do(func() (err error) {
		l, err = (&net.ListenConfig{KeepAlive: -1}).Listen(context.Background(), "tcp", addr)
		return err
	})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() { defer wg.Done(); io.Copy(c, c) }()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
}

// ping sends a byte and waits up to 2 s for its echo.
func ping(c *net.TCPConn) error {
	if _, err := c.Write([]byte{'x'}); err != nil {
		return err
	}
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	_, err := io.ReadFull(c, make([]byte, 1))
	return err
}

func soKeepalive(fd int) error { return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1) }

func setOpt(t *testing.T, c *net.TCPConn, level, opt, v int) {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), level, opt, v) }); err != nil || serr != nil {
		t.Fatalf("setsockopt: %v %v", err, serr)
	}
}

// snapshot is the socket with cookie in ns as sock_diag shows it now, and when.
func snapshot(t *testing.T, ns *testnet.NS, cookie uint64) (diag.Socket, time.Time, bool) {
	t.Helper()
	conn, err := diag.Dial(ns.NetNS())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	at := time.Now()
	for s, err := range conn.Sockets(context.Background(), nil) {
		if err != nil {
			t.Fatal(err)
		}
		if s.Cookie == cookie {
			return *s, at, true
		}
	}
	return diag.Socket{}, at, false
}

// lastReceived is when the connection last received anything, as the kernel
// counts it for keepalive: read once the peer is silent.
func lastReceived(t *testing.T, ns *testnet.NS, cookie uint64) time.Time {
	t.Helper()
	s, at, ok := snapshot(t, ns, cookie)
	if !ok {
		t.Fatal("the connection is gone already")
	}
	return at.Add(-min(s.Info.LastDataRecv, s.Info.LastAckRecv))
}

// droppedAt returns a channel that yields when the kernel drops c, from a
// blocking read, which tcp_write_err wakes with the error.
func droppedAt(c *net.TCPConn) <-chan dropped {
	ch := make(chan dropped, 1)
	go func() {
		c.SetReadDeadline(time.Now().Add(3 * time.Minute))
		_, err := c.Read(make([]byte, 1))
		ch <- dropped{time.Now(), err}
	}()
	return ch
}

type dropped struct {
	at  time.Time
	err error
}

// withSockopts reads the owners' real options, as audit --sockopts does: a
// new index for each audit, as each tcpkeep audit scans /proc afresh.
func withSockopts(t *testing.T) func(*audit.Config) {
	root := ourProc(t)
	return func(cfg *audit.Config) {
		x := proc.NewIndex(root, true)
		t.Cleanup(func() { x.Close() })
		cfg.Owners = x
	}
}

// predict audits ns until the socket with cookie has a finding with code that
// predicts a drop, and returns that finding and when the kernel should drop
// it: the dump's time plus drop_in.
func predict(t *testing.T, ns *testnet.NS, cfg func(*audit.Config), code audit.Code, cookie uint64, within time.Duration) (audit.Finding, time.Time) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		tun, err := sysctl.Read(ns.NetNS())
		if err != nil {
			t.Fatal(err)
		}
		c := audit.DefaultConfig(tun)
		if cfg != nil {
			cfg(&c)
		}
		conn, err := diag.Dial(ns.NetNS())
		if err != nil {
			t.Fatal(err)
		}
		a := audit.New(c)
		var got *audit.Finding
		var seen []string
		at := time.Now()
		for s, err := range conn.Sockets(context.Background(), nil) {
			if err != nil {
				t.Fatal(err)
			}
			a.Check(s, func(f *audit.Finding) {
				seen = append(seen, string(f.Code)+": "+words(*f))
				if f.Code == code && f.Socket.Cookie == cookie && f.DropBy != sysctl.DropNone {
					cp := *f
					got = &cp
				}
			})
		}
		conn.Close()
		if x, ok := c.Owners.(*proc.Index); ok {
			x.Close()
		}
		if got != nil {
			return *got, at.Add(got.DropIn)
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v no %s finding with a drop; findings:\n%s", within, code, strings.Join(seen, "\n"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRecommendedKeepaliveHoldsThePath: for paths that forget an idle flow
// after 3, 5 and 8 s, and detection targets, the values sysctl recommend
// gives, written to the client's namespace, keep an idle SO_KEEPALIVE
// connection open through the router for three times its timeout, and when
// the server vanishes the kernel drops the connection when DeadPeerDetect
// says, after its last answer.
func TestRecommendedKeepaliveHoldsThePath(t *testing.T) {
	testnet.RequireRoot(t)
	t.Parallel()
	var m measured
	t.Cleanup(func() { m.log(t) })
	all := &cases{t: t}
	defer all.wait()
	for _, path := range []time.Duration{3 * time.Second, 5 * time.Second, 8 * time.Second} {
		for _, target := range []time.Duration{0, 20 * time.Second, 60 * time.Second} {
			all.run(fmt.Sprintf("path %v target %v", path, target), func(t *testing.T) {
				rec, err := sysctl.Recommend(sysctl.Request{Path: sysctl.Path{IdleTimeout: path, Kind: sysctl.PathGiven}, DetectWithin: target})
				if err != nil {
					t.Fatal(err)
				}
				r := testnet.NewRouter(t, path)
				if _, err := sysctl.Write(r.Client.NetNS(), rec.Keepalive); err != nil {
					t.Fatal(err)
				}
				addr := r.ServerAddr(7070)
				echo(t, r.Server, addr)
				c := r.Client.Dial(addr, testnet.Control(soKeepalive))
				if err := ping(c); err != nil {
					t.Fatalf("no echo through the router: %v", err)
				}
				time.Sleep(3 * path) // the idle period is what is tested
				if err := ping(c); err != nil {
					t.Fatalf("%d/%d/%d: idle for %v behind a %v router, the connection died: %v", rec.Time/time.Second, rec.Intvl/time.Second, rec.Probes, 3*path, path, err)
				}
				ck := cookie(t, c)
				r.Server.Vanish()
				last := lastReceived(t, r.Client, ck)
				d := <-droppedAt(c)
				if !errors.Is(d.err, syscall.ETIMEDOUT) {
					t.Fatalf("read on a connection to a vanished server: %v, want ETIMEDOUT from keepalive", d.err)
				}
				took, stated := d.at.Sub(last), rec.DeadPeerDetect()
				m.add("path %v target %-3v %d/%d/%d: survived %v idle; dead peer dropped %v after its last answer, stated %v (%+.2fs, %.1f%%)",
					path, target, rec.Time/time.Second, rec.Intvl/time.Second, rec.Probes, 3*path, took.Round(time.Millisecond), stated, (took - stated).Seconds(), 100*(took-stated).Seconds()/stated.Seconds())
				if target > 0 && took > target {
					t.Errorf("dropped %v after the last answer, beyond the %v target", took, target)
				}
				// Nominal, and no later than every timer firing as late as the
				// timer wheel allows (8/63).
				if took < stated-300*time.Millisecond || took > stated+stated*8/63 {
					t.Errorf("dropped %v after the last answer; stated %v", took, stated)
				}
			})
		}
	}
	// The cadence is max(time, intvl): 2/10/3 behind a 5 s router dies at
	// the router though its idle time is short, and the audit says so.
	all.run("interval after the path dies", func(t *testing.T) {
		const path = 5 * time.Second
		r := testnet.NewRouter(t, path)
		addr := r.ServerAddr(7070)
		echo(t, r.Server, addr)
		c := r.Client.Dial(addr, testnet.Keepalive(2*time.Second, 10*time.Second, 3))
		if err := ping(c); err != nil {
			t.Fatal(err)
		}
		f, _ := predictPath(t, r.Client, path, cookie(t, c))
		wantIn(t, words(f), "every 10s (the larger of the socket's TCP_KEEPIDLE 2s and TCP_KEEPINTVL 10s)")
		time.Sleep(3 * path)
		if err := ping(c); err == nil {
			t.Fatalf("2/10/3 behind a %v router survived %v idle: the interval does not count?", path, 3*path)
		}
		m.add("path %v 2/10/3 (interval over the path): died at the router as the model says; flagged keepalive_after_path_timeout", path)
	})
}

// predictPath audits for keepalive_after_path_timeout with --sockopts.
func predictPath(t *testing.T, ns *testnet.NS, path time.Duration, ck uint64) (audit.Finding, bool) {
	t.Helper()
	opts := withSockopts(t)
	r := waitFor(t, ns, func(c *audit.Config) { opts(c); c.PathIdleTimeout = path }, 5*time.Second, "keepalive_after_path_timeout", func(r result) bool {
		_, ok := r.about(audit.KeepaliveAfterPathTimeout, ck)
		return ok
	})
	return r.about(audit.KeepaliveAfterPathTimeout, ck)
}

// TestPredictedDropIsTheKernels: what a finding's drop_in says is when the
// kernel drops the connection, within 1.5 s, for each of the kernel's ways to
// give up on a peer.
func TestPredictedDropIsTheKernels(t *testing.T) {
	testnet.RequireRoot(t)
	t.Parallel()
	var m measured
	t.Cleanup(func() { m.log(t) })
	all := &cases{t: t}
	defer all.wait()
	check := func(t *testing.T, name string, f audit.Finding, predicted time.Time, d dropped, wantBy sysctl.DropCause) {
		t.Helper()
		delta := d.at.Sub(predicted)
		m.add("%-52s %-16s predicted drop_in %6dms, kernel %+6dms from it", name, f.DropBy, f.DropIn.Milliseconds(), delta.Milliseconds())
		if f.DropBy != wantBy {
			t.Errorf("drop_by %s, want %s: %s", f.DropBy, wantBy, words(f))
		}
		if delta < -predictionSlack || delta > predictionSlack {
			t.Errorf("kernel dropped it %v from the predicted time (drop_in %v): %s", delta, f.DropIn, words(f))
		}
	}
	keepalive := func(name string, ka sysctl.Keepalive, perSocket bool, uto time.Duration, wantBy sysctl.DropCause) {
		all.run(name, func(t *testing.T) {
			p := testnet.NewPair(t)
			opts := []testnet.DialOption{testnet.Control(soKeepalive)}
			var cfg func(*audit.Config)
			if perSocket {
				opts = []testnet.DialOption{testnet.Keepalive(ka.Time, ka.Intvl, ka.Probes)}
				cfg = withSockopts(t)
			} else if _, err := sysctl.Write(p.A.NetNS(), ka); err != nil {
				t.Fatal(err)
			}
			if uto > 0 {
				opts = append(opts, userTimeout(uto))
			}
			l := p.B.Listen("10.77.0.2:7070")
			c := p.A.Dial("10.77.0.2:7070", opts...)
			s, err := l.Accept()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			// Let probes be answered for a while: the steady state.
			time.Sleep(2 * ka.Cadence())
			drop := droppedAt(c)
			p.B.Vanish()
			f, predicted := predict(t, p.A, cfg, audit.HalfOpenKeepalive, cookie(t, c), 2*ka.DeadPeerDetect()+5*time.Second)
			d := <-drop
			if !errors.Is(d.err, syscall.ETIMEDOUT) {
				t.Fatalf("read: %v, want ETIMEDOUT", d.err)
			}
			check(t, name, f, predicted, d, wantBy)
		})
	}
	keepalive("keepalive 2/1/4, the namespace's values", sysctl.Keepalive{Time: 2 * time.Second, Intvl: time.Second, Probes: 4}, false, 0, sysctl.DropKeepaliveProbes)
	keepalive("keepalive 1/3/2, interval over the idle time", sysctl.Keepalive{Time: time.Second, Intvl: 3 * time.Second, Probes: 2}, true, 0, sysctl.DropKeepaliveProbes)
	keepalive("keepalive 2/2/9 + TCP_USER_TIMEOUT 5000", sysctl.Keepalive{Time: 2 * time.Second, Intvl: 2 * time.Second, Probes: 9}, true, 5*time.Second, sysctl.DropUserTimeout)

	retrans := func(name string, uto time.Duration, wantBy sysctl.DropCause) {
		all.run(name, func(t *testing.T) {
			var opts []testnet.DialOption
			var cfg func(*audit.Config)
			if uto > 0 {
				opts, cfg = append(opts, userTimeout(uto)), withSockopts(t)
			}
			p, c := acrossVeth(t, opts...)
			p.A.Sysctl("net/ipv4/tcp_retries2", "5")
			if _, err := c.Write([]byte("hello")); err != nil {
				t.Fatal(err)
			}
			// Idle longer than the user timeout: idle time is not
			// retransmission time.
			time.Sleep(8 * time.Second)
			p.B.Vanish()
			drop := droppedAt(c)
			if _, err := c.Write([]byte("are you there?")); err != nil {
				t.Fatal(err)
			}
			f, predicted := predict(t, p.A, cfg, audit.HalfOpenRetrans, cookie(t, c), 20*time.Second)
			d := <-drop
			if !errors.Is(d.err, syscall.ETIMEDOUT) {
				t.Fatalf("read: %v, want ETIMEDOUT", d.err)
			}
			check(t, name, f, predicted, d, wantBy)
		})
	}
	retrans("retransmission after 8 s idle, tcp_retries2 5", 0, sysctl.DropRetries2)
	retrans("retransmission after 8 s idle, TCP_USER_TIMEOUT 6000", 6*time.Second, sysctl.DropUserTimeout)

	// A reader that stops reading with a 4 KB receive buffer: set before
	// the connection, the writer probes the zero window with its persist
	// timer; set after it, the window shrinks under data in flight and
	// tcp_retransmit_timer's zero-window path probes (snd_wnd 0, backoff
	// climbing, retransmits 0). TCP_USER_TIMEOUT bounds both.
	stalled := func(name string, late bool, timer diag.Timer) {
		all.run(name, func(t *testing.T) {
			p := testnet.NewPair(t)
			l := p.B.Listen("10.77.0.2:7070")
			var opts []testnet.DialOption
			if !late {
				opts = append(opts, testnet.Control(func(fd int) error { return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4096) }))
			}
			reader := p.A.Dial("10.77.0.2:7070", opts...)
			if late {
				setOpt(t, reader, unix.SOL_SOCKET, unix.SO_RCVBUF, 4096)
			}
			a, err := l.Accept()
			if err != nil {
				t.Fatal(err)
			}
			w := a.(*net.TCPConn)
			t.Cleanup(func() { w.Close() })
			setOpt(t, w, unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, 8000)
			drop := make(chan dropped, 1)
			go func() {
				b := make([]byte, 64<<10)
				for {
					if _, err := w.Write(b); err != nil {
						drop <- dropped{time.Now(), err}
						return
					}
				}
			}()
			f, predicted := predict(t, p.B, withSockopts(t), audit.ZeroWindowStall, cookie(t, w), 15*time.Second)
			d := <-drop
			if !errors.Is(d.err, syscall.ETIMEDOUT) {
				t.Fatalf("write: %v, want ETIMEDOUT", d.err)
			}
			if f.Socket.Timer != timer || f.Socket.Info.SndWnd != 0 {
				t.Errorf("flagged on the %s timer with snd_wnd %d, want %s with 0", f.Socket.Timer, f.Socket.Info.SndWnd, timer)
			}
			check(t, name, f, predicted, d, sysctl.DropUserTimeout)
		})
	}
	stalled("stalled reader, persist timer, TCP_USER_TIMEOUT 8000", false, diag.TimerPersist)
	stalled("stalled reader, retransmit timer, TCP_USER_TIMEOUT 8000", true, diag.TimerRetransmit)

	all.run("orphan, tcp_orphan_retries 3", func(t *testing.T) {
		p, c := acrossVeth(t)
		p.A.Sysctl("net/ipv4/tcp_orphan_retries", "3")
		ck := cookie(t, c)
		p.B.Vanish()
		if _, err := c.Write([]byte("are you there?")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
		c.Close() // the application is done with it; the kernel is not
		f, predicted := predict(t, p.A, nil, audit.HalfOpenRetrans, ck, 20*time.Second)
		if f.Socket.Inode != 0 || f.Socket.State != diag.StateFinWait1 {
			t.Errorf("flagged %s with inode %d, want an orphan in FIN_WAIT1", f.Socket.State, f.Socket.Inode)
		}
		// An orphan has no reader to wake: watch it go from the dump.
		deadline := time.Now().Add(2 * time.Minute)
		for {
			if _, at, ok := snapshot(t, p.A, ck); !ok {
				check(t, "orphan, tcp_orphan_retries 3", f, predicted, dropped{at: at}, sysctl.DropOrphanRetries)
				return
			}
			if time.Now().After(deadline) {
				t.Fatal("the orphan outlived its tcp_orphan_retries by far")
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}
