package audit_test

// Each rule against a real connection in that condition, in namespaces the test
// builds, next to a healthy connection of the same kind that must not be flagged.

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tcpkeep/tcpkeep/diag"
	"github.com/tcpkeep/tcpkeep/internal/audit"
	"github.com/tcpkeep/tcpkeep/internal/kernel"
	"github.com/tcpkeep/tcpkeep/internal/proc"
	"github.com/tcpkeep/tcpkeep/internal/report"
	"github.com/tcpkeep/tcpkeep/internal/testnet"
	"github.com/tcpkeep/tcpkeep/sysctl"
)

// result is one audit of a namespace.
type result struct {
	findings []audit.Finding
	sockets  int
}

// of returns the findings with code.
func (r result) of(code audit.Code) []audit.Finding {
	var out []audit.Finding
	for _, f := range r.findings {
		if f.Code == code {
			out = append(out, f)
		}
	}
	return out
}

// about returns the finding with code about the socket with cookie.
func (r result) about(code audit.Code, cookie uint64) (audit.Finding, bool) {
	for _, f := range r.of(code) {
		if f.Socket != nil && f.Socket.Cookie == cookie {
			return f, true
		}
	}
	return audit.Finding{}, false
}

// run audits ns once with the engine tcpkeep audit runs.
func run(t *testing.T, ns *testnet.NS, cfg func(*audit.Config)) result {
	t.Helper()
	c := audit.DefaultConfig(sysctl.Tunables{})
	owners := proc.NewIndex(ourProc(t), false)
	c.Owners = owners
	if cfg != nil {
		cfg(&c)
	}
	defer owners.Close()
	var r result
	sum, err := audit.Run(context.Background(), kernel.Live(ns.NetNS()), c, func(f *audit.Finding) { r.findings = append(r.findings, *f) })
	if err != nil {
		t.Fatal(err)
	}
	r.sockets = sum.Counts.Sockets
	return r
}

// withOpts reads the sockets' real options, as audit --sockopts does.
func withOpts(t *testing.T) func(*audit.Config) {
	root := ourProc(t)
	return func(cfg *audit.Config) {
		x := proc.NewIndex(root, true)
		t.Cleanup(func() { x.Close() })
		cfg.Owners = x
	}
}

// words is how tcpkeep audit says a finding.
func words(f audit.Finding) string { return report.Words{Sockopts: true, Remedy: true}.Message(&f) }

// ourProc is a /proc with only this process in it: the sockets the tests make
// are ours, and a scan of the real /proc takes seconds on a machine where other
// work holds half a million descriptors, longer than a connection whose peer
// vanished lives with 1 s keepalive. tcpkeep audit's end-to-end test scans the
// real one.
func ourProc(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	pid := strconv.Itoa(os.Getpid())
	if err := os.Symlink("/proc/"+pid, filepath.Join(dir, pid)); err != nil {
		t.Fatal(err)
	}
	return dir
}

// waitFor audits ns until done says the result is what the test waits for, or
// fails the test at the deadline.
func waitFor(t *testing.T, ns *testnet.NS, cfg func(*audit.Config), within time.Duration, what string, done func(result) bool) result {
	t.Helper()
	var r result
	if !testnet.Poll(within, func() bool { r = run(t, ns, cfg); return done(r) }) {
		ss, _ := exec.Command("ip", "netns", "exec", ns.Name, "ss", "-tinoeaH").CombinedOutput()
		t.Fatalf("after %s, still no %s; findings: %s\nss -tinoeaH:\n%s", within, what, describe(r), ss)
	}
	return r
}

func describe(r result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d sockets", r.sockets)
	for _, f := range r.findings {
		fmt.Fprintf(&b, "\n  %s %s: %s", f.Severity, f.Code, words(f))
	}
	return b.String()
}

func cookie(t *testing.T, c net.Conn) uint64 { return testnet.Cookie(t, c.(*net.TCPConn)) }

// pipe is a connection within ns over loopback: the dialled end and the accepted one.
func pipe(t *testing.T, ns *testnet.NS, opts ...testnet.DialOption) (client, server net.Conn) {
	t.Helper()
	l := ns.Listen("127.0.0.1:0")
	client = ns.Dial(l.Addr().String(), opts...)
	server, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	return client, server
}

// noFinding fails if any socket of cookies was flagged with code.
func noFinding(t *testing.T, r result, code audit.Code, cookies ...uint64) {
	t.Helper()
	for _, c := range cookies {
		if f, ok := r.about(code, c); ok {
			t.Errorf("healthy socket flagged %s: %s", code, words(f))
		}
	}
}

func wantIn(t *testing.T, msg string, subs ...string) {
	t.Helper()
	for _, s := range subs {
		if !strings.Contains(msg, s) {
			t.Errorf("message %q lacks %q", msg, s)
		}
	}
}

// ssTimer is the timer ss -tinoeH shows for the socket whose local address is
// local, in ns: the oracle for what the rules read ("keepalive,1.2sec,3").
func ssTimer(t *testing.T, ns *testnet.NS, local string) string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns.Name, "ss", "-tinoeH", "src", local).CombinedOutput()
	if err != nil {
		t.Fatalf("ss: %v: %s", err, out)
	}
	m := regexp.MustCompile(`timer:\(([^)]*)\)`).FindSubmatch(out)
	if m == nil {
		return ""
	}
	return string(m[1])
}

// acrossVeth connects A to B of a new pair (B's end accepted and closed with the
// test): a connection whose peer a test can make vanish with p.B.LinkDown.
func acrossVeth(t *testing.T, opts ...testnet.DialOption) (*testnet.Pair, *net.TCPConn) {
	t.Helper()
	p := testnet.NewPair(t)
	l := p.B.Listen("10.77.0.2:7070")
	c := p.A.Dial("10.77.0.2:7070", opts...)
	s, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return p, c
}

// ownedByUs is the owner part of messages about this test's own sockets.
func ownedByUs() string { return fmt.Sprintf("pid %d)", os.Getpid()) }

func TestHalfOpenKeepaliveVanishedPeer(t *testing.T) {
	p, c := acrossVeth(t, testnet.Keepalive(time.Second, time.Second, 5))
	// Healthy: the same keepalive on a connection whose peer answers.
	hc, hs := pipe(t, p.A, testnet.Keepalive(time.Second, time.Second, 5))
	p.B.LinkDown()

	r := waitFor(t, p.A, nil, 10*time.Second, "half_open_keepalive finding", func(r result) bool {
		_, ok := r.about(audit.HalfOpenKeepalive, cookie(t, c))
		return ok
	})
	f, _ := r.about(audit.HalfOpenKeepalive, cookie(t, c))
	// ss agrees: the keepalive timer, with probes unanswered.
	if ss := ssTimer(t, p.A, c.LocalAddr().String()); !regexp.MustCompile(`^keepalive,[^,]*,[1-9]`).MatchString(ss) {
		t.Errorf("ss shows timer:(%s), want keepalive with unanswered probes", ss)
	}
	if f.Severity != audit.Critical {
		t.Errorf("severity %s, want critical", f.Severity)
	}
	// Without --sockopts the count and interval are the namespace's: 9 x 75s.
	wantIn(t, words(f), "keepalive probe", "unanswered", "the kernel drops it in about", ownedByUs())
	noFinding(t, r, audit.HalfOpenKeepalive, cookie(t, hc), cookie(t, hs))
	if n := len(r.of(audit.HalfOpenKeepalive)); n != 1 {
		t.Errorf("%d half_open_keepalive findings, want 1: %s", n, describe(r))
	}
}

func TestHalfOpenKeepaliveSockoptsSayWhenDropped(t *testing.T) {
	p, c := acrossVeth(t, testnet.Keepalive(time.Second, time.Second, 5))
	p.B.LinkDown()
	r := waitFor(t, p.A, withOpts(t), 10*time.Second, "half_open_keepalive finding", func(r result) bool {
		_, ok := r.about(audit.HalfOpenKeepalive, cookie(t, c))
		return ok
	})
	f, _ := r.about(audit.HalfOpenKeepalive, cookie(t, c))
	wantIn(t, words(f), "after 5 probes 1s apart, the socket's TCP_KEEPINTVL and TCP_KEEPCNT")
	if f.Opts == nil || f.Opts.Keepalive != (sysctl.Keepalive{Time: time.Second, Intvl: time.Second, Probes: 5}) || f.ValueFrom != audit.SourceSocket {
		t.Errorf("finding's options %+v, want the socket's 1s/1s/5", f.Opts)
	}
}

func TestHalfOpenRetransPeerVanishesWithDataInFlight(t *testing.T) {
	p, c := acrossVeth(t)
	// Healthy: data in flight to a peer that reads it.
	hc, hs := pipe(t, p.A)
	go io.Copy(io.Discard, hs)
	p.B.LinkDown()
	if _, err := c.Write([]byte("are you there?")); err != nil {
		t.Fatal(err)
	}
	// Three retransmissions take 7 RTOs: 1.4 s at the 200 ms minimum, longer
	// when a loaded machine inflated the measured RTT.
	r := waitFor(t, p.A, nil, 30*time.Second, "half_open_retrans finding", func(r result) bool {
		hc.Write(make([]byte, 64<<10))
		_, ok := r.about(audit.HalfOpenRetrans, cookie(t, c))
		return ok
	})
	f, _ := r.about(audit.HalfOpenRetrans, cookie(t, c))
	if ss := ssTimer(t, p.A, c.LocalAddr().String()); !regexp.MustCompile(`^on,[^,]*,([3-9]|\d\d)`).MatchString(ss) {
		t.Errorf("ss shows timer:(%s), want the retransmit timer (on) with 3 or more retransmissions", ss)
	}
	wantIn(t, words(f), "retransmissions and no ACK for", "14 bytes", "tcp_retries2 15 gives up in about", "after the first retransmission", ownedByUs())
	noFinding(t, r, audit.HalfOpenRetrans, cookie(t, hc), cookie(t, hs))
}

func TestZeroWindowStallPeerStopsReading(t *testing.T) {
	ns := testnet.NewNS(t)
	c, _ := pipe(t, ns) // the server never reads
	hc, hs := pipe(t, ns)
	go io.Copy(io.Discard, hs) // healthy: the server reads everything
	for _, w := range []net.Conn{c, hc} {
		go func() {
			b := make([]byte, 64<<10)
			for {
				if _, err := w.Write(b); err != nil {
					return
				}
			}
		}()
	}
	r := waitFor(t, ns, nil, 15*time.Second, "zero_window_stall finding", func(r result) bool {
		_, ok := r.about(audit.ZeroWindowStall, cookie(t, c))
		return ok
	})
	f, _ := r.about(audit.ZeroWindowStall, cookie(t, c))
	if ss := ssTimer(t, ns, c.LocalAddr().String()); !strings.HasPrefix(ss, "persist,") {
		t.Errorf("ss shows timer:(%s), want persist", ss)
	}
	if f.Severity != audit.Warning || f.Socket.Timer != diag.TimerPersist {
		t.Errorf("finding %s with timer %s, want a warning on a persist timer", f.Severity, f.Socket.Timer)
	}
	wantIn(t, words(f), "zero window for about", "zero-window probes went out", "the peer stopped reading", "bytes wait in the send queue")
	noFinding(t, r, audit.ZeroWindowStall, cookie(t, hc), cookie(t, hs))
}

func TestIdleNoKeepalive(t *testing.T) {
	ns := testnet.NewNS(t)
	c, s := pipe(t, ns) // no SO_KEEPALIVE either end
	hc, _ := pipe(t, ns, testnet.Keepalive(time.Minute, time.Second, 3))
	short := func(cfg *audit.Config) { cfg.MaxIdle = time.Second }
	r := waitFor(t, ns, short, 10*time.Second, "idle_no_keepalive finding", func(r result) bool {
		_, ok := r.about(audit.IdleNoKeepalive, cookie(t, c))
		return ok
	})
	f, _ := r.about(audit.IdleNoKeepalive, cookie(t, c))
	wantIn(t, words(f), "idle for", "over --max-idle 1s", "without SO_KEEPALIVE", ownedByUs())
	if f.Owner == nil || f.Owner.PID != os.Getpid() {
		t.Errorf("owner %+v, want this process", f.Owner)
	}
	// Go's listener turns SO_KEEPALIVE on for accepted sockets (15 s): the
	// accepted end is as idle, but protected.
	noFinding(t, r, audit.IdleNoKeepalive, cookie(t, hc), cookie(t, s))
	// With the default --max-idle (10m) nothing that young is flagged.
	if n := len(run(t, ns, nil).of(audit.IdleNoKeepalive)); n != 0 {
		t.Errorf("%d idle_no_keepalive findings at the default --max-idle, want 0", n)
	}
}

func TestIdleOverlong(t *testing.T) {
	ns := testnet.NewNS(t)
	c, _ := pipe(t, ns, testnet.Keepalive(time.Minute, time.Second, 3))
	hc, hs := pipe(t, ns, testnet.Keepalive(time.Minute, time.Second, 3))
	go io.Copy(io.Discard, hs)
	// The healthy one keeps talking, also while an audit scans /proc for the
	// idle one's owner.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if _, err := hc.Write([]byte("busy")); err != nil {
					return
				}
			}
		}
	}()
	limit := func(cfg *audit.Config) { cfg.IdleLimit = time.Second }
	r := waitFor(t, ns, limit, 10*time.Second, "idle_overlong finding", func(r result) bool {
		_, ok := r.about(audit.IdleOverlong, cookie(t, c))
		return ok
	})
	f, _ := r.about(audit.IdleOverlong, cookie(t, c))
	wantIn(t, words(f), "no data sent or received for", "over --idle-limit 1s")
	noFinding(t, r, audit.IdleOverlong, cookie(t, hc))
	if n := len(run(t, ns, nil).of(audit.IdleOverlong)); n != 0 {
		t.Errorf("%d idle_overlong findings without --idle-limit, want 0", n)
	}
}

func TestCloseWaitStale(t *testing.T) {
	ns := testnet.NewNS(t)
	l := ns.Listen("127.0.0.1:7070")
	c := ns.Dial("127.0.0.1:7070")
	s, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Healthy: an application that closes its end on EOF.
	hc := ns.Dial("127.0.0.1:7070")
	hs, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	go func() { io.Copy(io.Discard, hs); hs.Close() }()
	c.Close() // the peer closes; the application (s) never does
	hc.Close()
	after := func(cfg *audit.Config) { cfg.CloseWaitAfter = time.Second }
	r := waitFor(t, ns, after, 10*time.Second, "close_wait_stale finding", func(r result) bool {
		_, ok := r.about(audit.CloseWaitStale, cookie(t, s))
		return ok
	})
	f, _ := r.about(audit.CloseWaitStale, cookie(t, s))
	wantIn(t, words(f), "in CLOSE_WAIT for about", "over --close-wait-after 1s", "close path", ownedByUs())
	if n := len(r.of(audit.CloseWaitStale)); n != 1 {
		t.Errorf("%d close_wait_stale findings, want 1 (the healthy server closed): %s", n, describe(r))
	}
}

func TestListenQueueFull(t *testing.T) {
	ns := testnet.NewNS(t)
	ns.ListenBacklog(7070, 2)   // full: nobody accepts
	ns.ListenBacklog(7071, 5)   // 80%: a warning
	ns.ListenBacklog(7072, 128) // healthy: one waiting
	for range 2 {
		ns.Dial("127.0.0.1:7070")
	}
	for range 4 {
		ns.Dial("127.0.0.1:7071")
	}
	ns.Dial("127.0.0.1:7072")
	r := waitFor(t, ns, nil, 10*time.Second, "two listen_queue_full findings", func(r result) bool {
		return len(r.of(audit.ListenQueueFull)) >= 2
	})
	got := map[uint16]audit.Finding{}
	for _, f := range r.of(audit.ListenQueueFull) {
		got[f.Socket.Local.Port()] = f
	}
	if f := got[7070]; f.Severity != audit.Critical {
		t.Errorf("port 7070 (2 of backlog 2): %s %q, want critical", f.Severity, words(f))
	} else {
		wantIn(t, words(f), "accept queue 2 of backlog 2", "somaxconn", ownedByUs())
	}
	if f := got[7071]; f.Severity != audit.Warning {
		t.Errorf("port 7071 (4 of backlog 5): %s %q, want warning", f.Severity, words(f))
	}
	if f, ok := got[7072]; ok {
		t.Errorf("healthy listener flagged: %s", words(f))
	}
}

func TestPeerLimitExceeded(t *testing.T) {
	p := testnet.NewPair(t)
	l := p.B.Listen("10.77.0.2:7070")
	for range 4 {
		p.A.Dial("10.77.0.2:7070")
		s, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
	}
	r := run(t, p.B, func(c *audit.Config) { c.MaxPerPeer = 3 })
	fs := r.of(audit.PeerLimitExceeded)
	if len(fs) != 1 {
		t.Fatalf("%d peer_limit_exceeded findings, want 1: %s", len(fs), describe(r))
	}
	wantIn(t, words(fs[0]), "10.77.0.1 holds 4 connections to local port 7070 (over --max-per-peer 3)")
	if fs[0].Socket == nil || fs[0].Socket.Remote.Addr() != testnet.AddrA {
		t.Errorf("finding's socket %+v, want one from 10.77.0.1", fs[0].Socket)
	}
	// At the limit, and on the dialling side (one connection per local port), nothing.
	for _, ns := range []*testnet.NS{p.A, p.B} {
		if n := len(run(t, ns, func(c *audit.Config) { c.MaxPerPeer = 4 }).of(audit.PeerLimitExceeded)); n != 0 {
			t.Errorf("netns %s: %d findings at --max-per-peer 4, want 0", ns.Name, n)
		}
	}
	if n := len(run(t, p.A, func(c *audit.Config) { c.MaxPerPeer = 1 }).of(audit.PeerLimitExceeded)); n != 0 {
		t.Errorf("dialling side: %d findings at --max-per-peer 1, want 0", n)
	}
}

func TestKeepaliveAfterPathTimeout(t *testing.T) {
	ns := testnet.NewNS(t)
	late, _ := pipe(t, ns, testnet.Keepalive(30*time.Second, time.Second, 3))
	early, _ := pipe(t, ns, testnet.Keepalive(5*time.Second, time.Second, 3))
	none, _ := pipe(t, ns)
	path := func(cfg *audit.Config) { cfg.PathIdleTimeout = 10 * time.Second }
	r := run(t, ns, path)
	f, ok := r.about(audit.KeepaliveAfterPathTimeout, cookie(t, late))
	if !ok {
		t.Fatalf("keepalive 30s behind a 10s path not flagged: %s", describe(r))
	}
	wantIn(t, words(f), "probes the idle connection every 30s (from its keepalive timer", "the path (--path-idle-timeout) forgets an idle flow after 10s", "to 8s at most")
	noFinding(t, r, audit.KeepaliveAfterPathTimeout, cookie(t, early), cookie(t, none))

	// Without the flag, the namespace's conntrack timeout is the path's.
	ns.LoadConntrack()
	ns.Sysctl("net/netfilter/nf_conntrack_tcp_timeout_established", "10")
	r = run(t, ns, nil)
	f, ok = r.about(audit.KeepaliveAfterPathTimeout, cookie(t, late))
	if !ok {
		t.Fatalf("keepalive 30s behind a 10s conntrack timeout not flagged: %s", describe(r))
	}
	wantIn(t, words(f), "local conntrack (nf_conntrack_tcp_timeout_established) forgets an idle flow after 10s")
	noFinding(t, r, audit.KeepaliveAfterPathTimeout, cookie(t, early), cookie(t, none))
}

func TestSysctlRules(t *testing.T) {
	ns := testnet.NewNS(t) // a fresh namespace: the kernel defaults
	r := run(t, ns, nil)
	if fs := r.of(audit.SysctlKeepaliveDefault); len(fs) != 1 || fs[0].Socket != nil {
		t.Fatalf("fresh namespace: sysctl_keepalive_default findings %+v, want one without a socket", fs)
	} else {
		wantIn(t, words(fs[0]), "kernel default of 2h", "2h11m15s")
	}
	ns.Sysctl("net/ipv4/tcp_keepalive_time", "600")
	if fs := run(t, ns, nil).of(audit.SysctlKeepaliveDefault); len(fs) != 0 {
		t.Fatalf("tcp_keepalive_time 600: %+v, want no finding", fs)
	}
	ns.LoadConntrack()
	ns.Sysctl("net/netfilter/nf_conntrack_tcp_timeout_established", "300")
	fs := run(t, ns, nil).of(audit.SysctlKeepaliveAfterConntrack)
	if len(fs) != 1 {
		t.Fatalf("keepalive 600s, conntrack 300s: %d findings, want 1", len(fs))
	}
	wantIn(t, words(fs[0]), "keepalive probes every 10m (the larger of tcp_keepalive_time 10m and tcp_keepalive_intvl 1m15s), not under nf_conntrack_tcp_timeout_established 5m")
	ns.Sysctl("net/ipv4/tcp_keepalive_time", "240")
	if fs := run(t, ns, nil).of(audit.SysctlKeepaliveAfterConntrack); len(fs) != 0 {
		t.Fatalf("keepalive 240s, conntrack 300s: %+v, want no finding", fs)
	}
}
