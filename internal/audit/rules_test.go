package audit

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/tcpkeep/tcpkeep/diag"
	"github.com/tcpkeep/tcpkeep/internal/proc"
	"github.com/tcpkeep/tcpkeep/sysctl"
)

func ptr[T any](v T) *T { return &v }

// tunables are a namespace's values in these tests: tuned time, default rest.
var tunables = sysctl.Tunables{Keepalive: sysctl.Keepalive{Time: 300 * time.Second, Intvl: 75 * time.Second, Probes: 9}, Retries2: ptr(15)}

// est is an idle-for-a-second ESTABLISHED socket with tcp_info; mods change it.
func est(mods ...func(*diag.Socket)) *diag.Socket {
	s := &diag.Socket{
		Family: diag.FamilyInet, State: diag.StateEstablished,
		Local:  netip.MustParseAddrPort("10.77.0.1:40000"),
		Remote: netip.MustParseAddrPort("10.77.0.2:7070"),
		Cookie: 7, Inode: 1234,
		Info: diag.TCPInfo{Len: 232, LastDataSent: time.Second, LastDataRecv: time.Second, LastAckRecv: time.Second},
	}
	for _, m := range mods {
		m(s)
	}
	return s
}

func state(st diag.State) func(*diag.Socket) { return func(s *diag.Socket) { s.State = st } }
func timer(t diag.Timer, expires time.Duration, retrans uint8) func(*diag.Socket) {
	return func(s *diag.Socket) { s.Timer, s.TimerExpires, s.TimerRetrans = t, expires, retrans }
}
func rto(d time.Duration, backoff uint8) func(*diag.Socket) {
	return func(s *diag.Socket) { s.Info.RTO, s.Info.Backoff = d, backoff }
}
func idle(d time.Duration) func(*diag.Socket) {
	return func(s *diag.Socket) { s.Info.LastDataSent, s.Info.LastDataRecv, s.Info.LastAckRecv = d, d, d }
}
func noInfo(s *diag.Socket) { s.Info = diag.TCPInfo{} }

type ruleCase struct {
	name string
	cfg  func(*Config)
	s    *diag.Socket
	opts *proc.SockOpts
	sev  Severity // 0: not flagged
	want []string // substrings of the message
}

func runRule(t *testing.T, check func(*sockCtx, *diag.Socket) (Severity, string, bool), cases []ruleCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig(tunables)
			cfg.Owner = func(*diag.Socket) (Owner, bool) { return Owner{PID: 812, Comm: "nginx"}, true }
			if tc.opts != nil {
				cfg.Sockopts = func(*diag.Socket) (proc.SockOpts, bool) { return *tc.opts, true }
			}
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			a := New(cfg)
			c := &a.sock
			c.reset(a, tc.s)
			sev, msg, ok := check(c, tc.s)
			if ok != (tc.sev != 0) || sev != tc.sev {
				t.Fatalf("flagged %v severity %v, want severity %v; message %q", ok, sev, tc.sev, msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("message %q lacks %q", msg, w)
				}
			}
		})
	}
}

func TestHalfOpenKeepaliveRule(t *testing.T) {
	runRule(t, halfOpenKeepalive, []ruleCase{
		{name: "armed, no probe unanswered", s: est(timer(diag.TimerKeepalive, 290*time.Second, 0))},
		{name: "two probes unanswered, tunables", s: est(timer(diag.TimerKeepalive, 30*time.Second, 2), idle(480*time.Second)),
			sev: Critical, want: []string{"2 keepalive probes unanswered", "8m", "drops it in about 9m15s", "9 probes 1m15s apart", "nginx, pid 812"}},
		{name: "one probe, socket's own options", s: est(timer(diag.TimerKeepalive, 500*time.Millisecond, 1)),
			opts: &proc.SockOpts{KeepAlive: true, KeepIdle: time.Second, KeepIntvl: time.Second, KeepCnt: 5},
			sev:  Critical, want: []string{"1 keepalive probe unanswered", "about 4.5s", "5 probes 1s apart", "TCP_KEEPINTVL"}},
		{name: "last probe out", s: est(timer(diag.TimerKeepalive, 200*time.Millisecond, 9)), sev: Critical, want: []string{"about 200ms"}},
		{name: "more probes out than the namespace allows: its own TCP_KEEPCNT", s: est(timer(diag.TimerKeepalive, time.Second, 12)),
			sev: Critical, want: []string{"12 keepalive probes", "depends on the socket's own TCP_KEEPCNT"}},
		{name: "FIN_WAIT2 timer reported as keepalive", s: est(state(diag.StateFinWait2), timer(diag.TimerKeepalive, 30*time.Second, 1))},
		{name: "FIN_WAIT2 timer named", s: est(state(diag.StateFinWait2), timer(diag.TimerFinWait2, 30*time.Second, 1))},
		{name: "retransmit timer", s: est(timer(diag.TimerRetransmit, time.Second, 5))},
		{name: "CLOSE_WAIT probed too", s: est(state(diag.StateCloseWait), timer(diag.TimerKeepalive, time.Second, 1)), sev: Critical},
	})
}

func TestHalfOpenRetransRule(t *testing.T) {
	inFlight := func(s *diag.Socket) { s.SendQ = 1000; s.Info.LastAckRecv = 100 * time.Second }
	runRule(t, halfOpenRetrans, []ruleCase{
		{name: "below threshold", s: est(inFlight, timer(diag.TimerRetransmit, time.Second, 2))},
		// Three RTO firings from 200 ms: the first 1.2 s ago, the next in 1 s.
		{name: "at threshold", s: est(inFlight, timer(diag.TimerRetransmit, time.Second, 3), rto(1600*time.Millisecond, 3)),
			sev: Critical, want: []string{"3 retransmissions", "no ACK for 1m40s", "1000 bytes", "tcp_retries2 15 gives up in about 15m23s", "15m24s after the first retransmission"}},
		{name: "threshold flag", cfg: func(c *Config) { c.RetransThreshold = 6 }, s: est(inFlight, timer(diag.TimerRetransmit, time.Second, 5))},
		// The idle time before the write (no ACK for 1m40s) is not
		// retransmission time: the first retransmission was 5 s ago.
		{name: "user timeout", s: est(inFlight, timer(diag.TimerRetransmit, time.Second, 4), rto(3200*time.Millisecond, 4)), opts: &proc.SockOpts{UserTimeout: 30 * time.Second},
			sev: Critical, want: []string{"TCP_USER_TIMEOUT gives up in about 25s (30s after the first retransmission, 5s ago)"}},
		{name: "orphan: tcp_orphan_retries governs", s: est(inFlight, state(diag.StateFinWait1), func(s *diag.Socket) { s.Inode = 0 }, timer(diag.TimerRetransmit, time.Second, 3), rto(1600*time.Millisecond, 3)),
			sev: Critical, want: []string{"tcp_orphan_retries (8 retransmissions)", "gives up in about 1m40s (1m42s after the first retransmission)", "orphaned"}},
		{name: "SYN_SENT is the handshake", s: est(state(diag.StateSynSent), timer(diag.TimerRetransmit, time.Second, 5))},
		{name: "keepalive timer", s: est(timer(diag.TimerKeepalive, time.Second, 5))},
	})
}

func zeroWindow(s *diag.Socket) {
	s.Info.SndWnd, s.Info.Unacked, s.SendQ = 0, 1, 159280
}

func TestZeroWindowStallRule(t *testing.T) {
	backoff := func(n uint8) func(*diag.Socket) {
		return func(s *diag.Socket) { s.Info.Backoff = n; s.SendQ = 4096; s.Info.LastDataSent = 20 * time.Second }
	}
	runRule(t, zeroWindowStall, []ruleCase{
		{name: "window just closed", s: est(timer(diag.TimerPersist, time.Second, 0), backoff(2))},
		{name: "live peer stopped reading", s: est(timer(diag.TimerPersist, time.Second, 0), backoff(5)),
			sev: Warning, want: []string{"zero window for about 20s", "5 zero-window probes", "stopped reading", "4096 bytes"}},
		{name: "probes unanswered", s: est(timer(diag.TimerPersist, time.Second, 3), backoff(3)),
			sev: Warning, want: []string{"last 3 went unanswered"}},
		{name: "no persist timer, window open", s: est(timer(diag.TimerRetransmit, time.Second, 0), backoff(5))},
		// tcp_retransmit_timer's zero-window path: retransmissions as probes,
		// the backoff climbing, the retransmission count not.
		{name: "zero window through the retransmit timer", s: est(timer(diag.TimerRetransmit, 3428*time.Millisecond, 0), zeroWindow, rto(6528*time.Millisecond, 5)),
			sev: Warning, want: []string{"zero window for about 9.2s", "5 zero-window probes", "the peer stopped reading", "159280 bytes"}},
		{name: "... with TCP_USER_TIMEOUT", s: est(timer(diag.TimerRetransmit, 3428*time.Millisecond, 0), zeroWindow, rto(6528*time.Millisecond, 5)),
			opts: &proc.SockOpts{UserTimeout: 10 * time.Second}, sev: Warning, want: []string{"TCP_USER_TIMEOUT 10s drops it in about 3.4s"}},
		{name: "... backoff still low", s: est(timer(diag.TimerRetransmit, time.Second, 0), zeroWindow, rto(816*time.Millisecond, 2))},
		{name: "... tcp_info too short to tell the window", s: est(timer(diag.TimerRetransmit, time.Second, 0), zeroWindow, rto(6528*time.Millisecond, 5), func(s *diag.Socket) { s.Info.Len = 200 })},
		{name: "persist with TCP_USER_TIMEOUT", s: est(timer(diag.TimerPersist, 3212*time.Millisecond, 0), backoff(5), rto(208*time.Millisecond, 5), func(s *diag.Socket) { s.Info.LastDataSent = 7040 * time.Millisecond }),
			opts: &proc.SockOpts{UserTimeout: 10 * time.Second}, sev: Warning, want: []string{"drops it in about 3.2s"}},
		{name: "persist to a silent peer", s: est(timer(diag.TimerPersist, time.Second, 3), backoff(3), rto(200*time.Millisecond, 3)),
			sev: Warning, want: []string{"if nothing answers, tcp_retries2 drops it in about"}},
	})
}

func TestIdleNoKeepaliveRule(t *testing.T) {
	runRule(t, idleNoKeepalive, []ruleCase{
		{name: "idle, no keepalive", s: est(idle(11 * time.Minute)), sev: Warning, want: []string{"idle for 11m", "--max-idle 10m", "nginx, pid 812"}},
		{name: "recently sent", s: est(idle(11*time.Minute), func(s *diag.Socket) { s.Info.LastDataSent = time.Minute })},
		{name: "keepalive armed", s: est(idle(11*time.Minute), timer(diag.TimerKeepalive, time.Minute, 0))},
		{name: "shorter max-idle", cfg: func(c *Config) { c.MaxIdle = 2 * time.Second }, s: est(idle(3 * time.Second)), sev: Warning, want: []string{"idle for 3s"}},
		{name: "retransmitting, unknown", s: est(idle(11*time.Minute), timer(diag.TimerRetransmit, time.Second, 1))},
		{name: "retransmitting, sockopts say off", s: est(idle(11*time.Minute), timer(diag.TimerRetransmit, time.Second, 1)), opts: &proc.SockOpts{}, sev: Warning},
		{name: "retransmitting, sockopts say on", s: est(idle(11*time.Minute), timer(diag.TimerRetransmit, time.Second, 1)), opts: &proc.SockOpts{KeepAlive: true}},
		{name: "CLOSE_WAIT", s: est(state(diag.StateCloseWait), idle(11*time.Minute))},
		{name: "no tcp_info", s: est(noInfo)},
	})
}

func TestIdleOverlongRule(t *testing.T) {
	limit := func(c *Config) { c.IdleLimit = time.Hour }
	runRule(t, idleOverlong, []ruleCase{
		{name: "off by default", s: est(idle(48 * time.Hour))},
		{name: "over limit", cfg: limit, s: est(idle(2*time.Hour), timer(diag.TimerKeepalive, time.Minute, 0)), sev: Warning, want: []string{"for 2h", "--idle-limit 1h"}},
		{name: "under limit", cfg: limit, s: est(idle(59 * time.Minute))},
		{name: "listener", cfg: limit, s: est(state(diag.StateListen), idle(2*time.Hour))},
	})
}

func TestKeepaliveAfterPathTimeoutRule(t *testing.T) {
	path := func(d time.Duration) func(*Config) { return func(c *Config) { c.PathIdleTimeout = d } }
	conntrack := func(c *Config) { c.Tunables.ConntrackEstablished = ptr(120 * time.Second) }
	runRule(t, keepaliveAfterPathTimeout, []ruleCase{
		{name: "no path timeout", s: est(timer(diag.TimerKeepalive, 7199*time.Second, 0))},
		{name: "inferred after the path", cfg: path(350 * time.Second), s: est(timer(diag.TimerKeepalive, 7000*time.Second, 0), idle(200*time.Second)),
			sev: Warning, want: []string{"every 2h (from its keepalive timer", "--path-idle-timeout forgets", "5m50s", "to 5m6s at most"}},
		// The interval, once a probe was answered: 2/10/x behind a 5 s path.
		{name: "inferred interval after the path", cfg: path(5 * time.Second), s: est(timer(diag.TimerKeepalive, 9*time.Second, 0), idle(time.Second)),
			sev: Warning, want: []string{"every 10s (from its keepalive timer", "to 4s at most"}},
		{name: "inferred within the margin", cfg: path(8 * time.Second), s: est(timer(diag.TimerKeepalive, 7500*time.Millisecond, 0), idle(500*time.Millisecond)),
			sev: Warning, want: []string{"every 8s", "up to an eighth late"}},
		{name: "inferred at the cadence limit", cfg: path(8 * time.Second), s: est(timer(diag.TimerKeepalive, 6500*time.Millisecond, 0), idle(500*time.Millisecond))},
		{name: "inferred before the path", cfg: path(350 * time.Second), s: est(timer(diag.TimerKeepalive, 14*time.Second, 0), idle(time.Second))},
		{name: "local conntrack", cfg: conntrack, s: est(timer(diag.TimerKeepalive, 250*time.Second, 0), idle(50*time.Second)),
			sev: Warning, want: []string{"every 5m", "nf_conntrack_tcp_timeout_established forgets an idle flow after 2m"}},
		{name: "flag beats conntrack", cfg: func(c *Config) { conntrack(c); c.PathIdleTimeout = time.Hour }, s: est(timer(diag.TimerKeepalive, 250*time.Second, 0), idle(50*time.Second))},
		{name: "sockopts TCP_KEEPIDLE", cfg: path(60 * time.Second), s: est(timer(diag.TimerRetransmit, time.Second, 1)),
			opts: &proc.SockOpts{KeepAlive: true, KeepIdle: 90 * time.Second, KeepIntvl: 10 * time.Second}, sev: Warning, want: []string{"every 1m30s", "the socket's TCP_KEEPIDLE"}},
		// 2/10/3 behind a 5 s path dies at the middlebox before its first probe
		// is even due: the interval decides.
		{name: "sockopts TCP_KEEPINTVL after the path", cfg: path(5 * time.Second), s: est(timer(diag.TimerKeepalive, time.Second, 0)),
			opts: &proc.SockOpts{KeepAlive: true, KeepIdle: 2 * time.Second, KeepIntvl: 10 * time.Second, KeepCnt: 3}, sev: Warning, want: []string{"every 10s (the larger of the socket's TCP_KEEPIDLE 2s and TCP_KEEPINTVL 10s)"}},
		{name: "sockopts keepalive off", cfg: path(60 * time.Second), s: est(timer(diag.TimerKeepalive, 250*time.Second, 0)), opts: &proc.SockOpts{}},
		{name: "no keepalive", cfg: path(60 * time.Second), s: est()},
		{name: "retransmitting, unknown", cfg: path(60 * time.Second), s: est(timer(diag.TimerRetransmit, time.Second, 1))},
		{name: "probing: no guess (half_open_keepalive speaks)", cfg: path(60 * time.Second), s: est(timer(diag.TimerKeepalive, time.Second, 2))},
		{name: "probing, socket's own TCP_KEEPIDLE", cfg: path(60 * time.Second), s: est(timer(diag.TimerKeepalive, time.Second, 2)),
			opts: &proc.SockOpts{KeepAlive: true, KeepIdle: 2 * time.Hour}, sev: Warning, want: []string{"the socket's TCP_KEEPIDLE"}},
		{name: "FIN_WAIT2 timer", cfg: path(60 * time.Second), s: est(state(diag.StateFinWait2), timer(diag.TimerKeepalive, 7000*time.Second, 0))},
	})
}

func TestCloseWaitStaleRule(t *testing.T) {
	runRule(t, closeWaitStale, []ruleCase{
		{name: "stale", s: est(state(diag.StateCloseWait), idle(5*time.Minute)), sev: Warning, want: []string{"about 5m", "--close-wait-after 1m", "nginx", "close path"}},
		{name: "fresh", s: est(state(diag.StateCloseWait), idle(30*time.Second))},
		{name: "shorter flag", cfg: func(c *Config) { c.CloseWaitAfter = time.Second }, s: est(state(diag.StateCloseWait), idle(2*time.Second)), sev: Warning},
		{name: "established", s: est(idle(5 * time.Minute))},
	})
}

func TestListenQueueFullRule(t *testing.T) {
	listen := func(q, backlog uint32) *diag.Socket {
		return est(state(diag.StateListen), func(s *diag.Socket) { s.RecvQ, s.SendQ, s.Remote = q, backlog, netip.AddrPort{} })
	}
	runRule(t, listenQueueFull, []ruleCase{
		{name: "empty", s: listen(0, 128)},
		{name: "backlog 0, empty", s: listen(0, 0)},
		{name: "below 80%", s: listen(100, 128)},
		{name: "at 80%", s: listen(4, 5), sev: Warning, want: []string{"accept queue 4 of backlog 5"}},
		{name: "full", s: listen(5, 5), sev: Critical, want: []string{"accept queue 5 of backlog 5", "somaxconn", "nginx"}},
		{name: "over", s: listen(6, 5), sev: Critical},
		{name: "established with a receive queue", s: est(func(s *diag.Socket) { s.RecvQ, s.SendQ = 5, 5 })},
	})
}

func TestTunableRules(t *testing.T) {
	def := sysctl.Tunables{Keepalive: sysctl.Defaults}
	for _, tc := range []struct {
		name  string
		check func(sysctl.Tunables) (Severity, string, bool)
		t     sysctl.Tunables
		sev   Severity
		want  string
	}{
		{"default time", sysctlKeepaliveDefault, def, Warning, "kernel default of 2h: a dead idle peer is found after 2h11m15s"},
		{"tuned time", sysctlKeepaliveDefault, tunables, 0, ""},
		{"no conntrack", sysctlKeepaliveAfterConntrack, def, 0, ""},
		{"after conntrack", sysctlKeepaliveAfterConntrack, sysctl.Tunables{Keepalive: sysctl.Defaults, ConntrackEstablished: ptr(3600 * time.Second)}, Warning, "keepalive probes every 2h (the larger of tcp_keepalive_time 2h and tcp_keepalive_intvl 1m15s), not under nf_conntrack_tcp_timeout_established 1h"},
		{"before conntrack", sysctlKeepaliveAfterConntrack, sysctl.Tunables{Keepalive: sysctl.Defaults, ConntrackEstablished: ptr(432000 * time.Second)}, 0, ""},
		// Equal loses: timers fire late.
		{"equal to conntrack", sysctlKeepaliveAfterConntrack, sysctl.Tunables{Keepalive: sysctl.Defaults, ConntrackEstablished: ptr(7200 * time.Second)}, Warning, "less an eighth"},
		{"the interval decides", sysctlKeepaliveAfterConntrack, sysctl.Tunables{Keepalive: sysctl.Keepalive{Time: 2 * time.Second, Intvl: 10 * time.Second, Probes: 3}, ConntrackEstablished: ptr(5 * time.Second)}, Warning, "every 10s"},
		{"at the cadence limit", sysctlKeepaliveAfterConntrack, sysctl.Tunables{Keepalive: sysctl.Keepalive{Time: 4 * time.Second, Intvl: time.Second, Probes: 3}, ConntrackEstablished: ptr(5 * time.Second)}, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sev, msg, ok := tc.check(tc.t)
			if ok != (tc.sev != 0) || sev != tc.sev || !strings.Contains(msg, tc.want) {
				t.Fatalf("got %v %v %q, want %v with %q", ok, sev, msg, tc.sev, tc.want)
			}
		})
	}
}

func TestPeerLimit(t *testing.T) {
	for _, tc := range []struct {
		name  string
		limit int
		conns int
		want  int // findings
	}{
		{"off", 0, 50, 0},
		{"at limit", 5, 5, 0},
		{"over", 5, 6, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig(tunables)
			cfg.MaxPerPeer = tc.limit
			a := New(cfg)
			for i := range tc.conns {
				s := est(func(s *diag.Socket) {
					s.Local = netip.MustParseAddrPort("10.77.0.2:7070")
					s.Remote = netip.AddrPortFrom(netip.MustParseAddr("10.77.0.1"), uint16(40000+i))
				})
				a.Check(s, func(Finding) {})
				// Another peer, and a listener on the port: neither counts.
				a.Check(est(func(s *diag.Socket) {
					s.Local = netip.MustParseAddrPort("10.77.0.2:7070")
					s.Remote = netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 77, 1, byte(i)}), 40000)
				}), func(Finding) {})
				a.Check(est(state(diag.StateListen), func(s *diag.Socket) { s.Local = netip.MustParseAddrPort("10.77.0.2:7070"); s.Remote = netip.AddrPort{} }), func(Finding) {})
			}
			var got []Finding
			a.Finish(func(f Finding) { got = append(got, f) })
			if len(got) != tc.want {
				t.Fatalf("%d findings, want %d: %+v", len(got), tc.want, got)
			}
			if tc.want > 0 {
				f := got[0]
				if f.Code != PeerLimitExceeded || f.Socket == nil || f.Socket.Remote.Addr().String() != "10.77.0.1" || !strings.Contains(f.Message, "10.77.0.1 holds 6 connections to local port 7070 (over --max-per-peer 5)") {
					t.Fatalf("finding %+v", f)
				}
				if a.Summary().Total(PeerLimitExceeded) != 1 || a.Summary().Worst != Warning {
					t.Fatalf("summary %+v", a.Summary())
				}
			}
		})
	}
}

func TestCheckCopiesAndCounts(t *testing.T) {
	cfg := DefaultConfig(tunables)
	calls := 0
	cfg.Owner = func(*diag.Socket) (Owner, bool) { calls++; return Owner{PID: 1, Comm: "x"}, true }
	a := New(cfg)
	var got []Finding
	emit := func(f Finding) { got = append(got, f) }
	s := est(idle(time.Hour))
	a.Check(s, emit)              // idle_no_keepalive
	a.Check(est(), emit)          // healthy: no owner lookup
	s.State = diag.StateCloseWait // the caller reuses its Socket
	a.Check(s, emit)              // close_wait_stale
	if len(got) != 2 || got[0].Code != IdleNoKeepalive || got[1].Code != CloseWaitStale {
		t.Fatalf("findings %+v", got)
	}
	if got[0].Socket.State != diag.StateEstablished || got[0].Owner == nil || got[0].Owner.PID != 1 {
		t.Fatalf("finding kept the caller's socket, or lost its owner: %+v", got[0])
	}
	if calls != 2 {
		t.Fatalf("owner looked up %d times, want 2 (flagged sockets only)", calls)
	}
	sum := a.Summary()
	if sum.Total(IdleNoKeepalive) != 1 || sum.Findings[CloseWaitStale][Warning] != 1 || sum.Worst != Warning {
		t.Fatalf("summary %+v", sum)
	}
}

func TestParseSeverity(t *testing.T) {
	for _, s := range []Severity{Info, Warning, Critical} {
		if got, err := ParseSeverity(s.String()); err != nil || got != s {
			t.Fatalf("ParseSeverity(%q) = %v, %v", s, got, err)
		}
	}
	if _, err := ParseSeverity("fatal"); err == nil {
		t.Fatal("ParseSeverity(fatal): no error")
	}
}

// healthy is a mix of sockets no rule flags.
func healthy() []*diag.Socket {
	return []*diag.Socket{
		est(timer(diag.TimerKeepalive, 250*time.Second, 0)),
		est(),
		est(timer(diag.TimerRetransmit, 200*time.Millisecond, 1)),
		est(state(diag.StateListen), func(s *diag.Socket) { s.RecvQ, s.SendQ = 1, 128 }),
		est(state(diag.StateTimeWait), noInfo),
	}
}

func TestCheckHealthyAllocatesNothing(t *testing.T) {
	cfg := DefaultConfig(tunables)
	cfg.PathIdleTimeout = time.Hour
	cfg.IdleLimit = time.Hour
	a := New(cfg)
	socks := healthy()
	emit := func(f Finding) { t.Errorf("flagged: %s", f.Message) }
	if n := testing.AllocsPerRun(100, func() {
		for _, s := range socks {
			a.Check(s, emit)
		}
	}); n != 0 {
		t.Fatalf("%v allocations per healthy batch, want 0", n)
	}
}

func BenchmarkCheck(b *testing.B) {
	cfg := DefaultConfig(tunables)
	cfg.PathIdleTimeout = time.Hour
	a := New(cfg)
	socks := healthy()
	emit := func(Finding) {}
	b.ReportAllocs()
	for b.Loop() {
		for _, s := range socks {
			a.Check(s, emit)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(socks)), "ns/socket")
}

// FuzzCheck feeds the rules sockets and tunables with any field values: no
// panic, and every finding has a code, a severity and a message.
func FuzzCheck(f *testing.F) {
	f.Add(uint8(1), uint8(2), uint8(3), int64(1e9), uint32(5), uint32(5), int64(7200), int64(75), 9, int64(60e9), 3)
	f.Add(uint8(10), uint8(0), uint8(0), int64(0), uint32(0), uint32(0), int64(0), int64(0), 0, int64(0), 0)
	f.Fuzz(func(t *testing.T, st, tm, retrans uint8, expires int64, rq, sq uint32, ktime, kintvl int64, kprobes int, idleNS int64, perPeer int) {
		tun := sysctl.Tunables{Keepalive: sysctl.Keepalive{Time: time.Duration(ktime) * time.Second, Intvl: time.Duration(kintvl) * time.Second, Probes: kprobes}, Retries2: ptr(kprobes), ConntrackEstablished: ptr(time.Duration(ktime))}
		cfg := DefaultConfig(tun)
		cfg.MaxPerPeer = perPeer % 4
		cfg.IdleLimit = time.Duration(idleNS)
		cfg.PathIdleTimeout = time.Duration(expires)
		cfg.Owner = func(*diag.Socket) (Owner, bool) { return Owner{}, false }
		cfg.Sockopts = func(*diag.Socket) (proc.SockOpts, bool) {
			return proc.SockOpts{KeepAlive: tm%2 == 0, KeepIdle: time.Duration(ktime), KeepIntvl: time.Duration(kintvl), KeepCnt: kprobes, UserTimeout: time.Duration(idleNS)}, retrans%2 == 0
		}
		a := New(cfg)
		check := func(f Finding) {
			if f.Code == "" || f.Severity == 0 || f.Message == "" {
				t.Fatalf("incomplete finding %+v", f)
			}
		}
		a.Tunables(check)
		s := est(idle(time.Duration(idleNS)), func(s *diag.Socket) {
			s.State, s.Timer, s.TimerRetrans, s.TimerExpires, s.RecvQ, s.SendQ = diag.State(st), diag.Timer(tm), retrans, time.Duration(expires), rq, sq
			s.Info.Backoff = retrans
		})
		for range 5 {
			a.Check(s, check)
		}
		a.Finish(check)
	})
}

// Findings that predict a drop carry it as data, for drop_in_ms and drop_by.
func TestFindingsCarryTheDrop(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    *diag.Socket
		opts *proc.SockOpts
		code Code
		in   time.Duration
		by   sysctl.DropCause
	}{
		{"keepalive probes", est(timer(diag.TimerKeepalive, 30*time.Second, 2), idle(480*time.Second)), nil, HalfOpenKeepalive, 555 * time.Second, sysctl.DropKeepaliveProbes},
		{"keepalive with TCP_USER_TIMEOUT", est(timer(diag.TimerKeepalive, time.Second, 1), idle(3*time.Second)),
			&proc.SockOpts{KeepAlive: true, KeepIdle: 2 * time.Second, KeepIntvl: 2 * time.Second, KeepCnt: 2, UserTimeout: 9 * time.Second}, HalfOpenKeepalive, 7 * time.Second, sysctl.DropUserTimeout},
		{"retransmission", est(timer(diag.TimerRetransmit, time.Second, 3), rto(1600*time.Millisecond, 3), func(s *diag.Socket) { s.SendQ = 10 }), nil, HalfOpenRetrans, 922600 * time.Millisecond, sysctl.DropRetries2},
		{"persist to a peer that answers: no drop", est(timer(diag.TimerPersist, time.Second, 0), rto(200*time.Millisecond, 5)), nil, ZeroWindowStall, 0, sysctl.DropNone},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig(tunables)
			if tc.opts != nil {
				cfg.Sockopts = func(*diag.Socket) (proc.SockOpts, bool) { return *tc.opts, true }
			}
			var got []Finding
			New(cfg).Check(tc.s, func(f Finding) { got = append(got, f) })
			for _, f := range got {
				if f.Code == tc.code {
					if f.DropIn != tc.in || f.DropBy != tc.by {
						t.Fatalf("drop in %v by %q, want %v by %q (%s)", f.DropIn, f.DropBy, tc.in, tc.by, f.Message)
					}
					return
				}
			}
			t.Fatalf("no %s finding: %+v", tc.code, got)
		})
	}
}
