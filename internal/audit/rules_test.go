package audit

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/tcpkeep/tcpkeep/diag"
	"github.com/tcpkeep/tcpkeep/internal/kernel"
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
	want Finding  // the facts the finding must have; zero fields are not checked
	// noDrop: the finding must predict no drop (sysctl.DropNone, DropIn 0).
	noDrop bool
}

// owners is an Owners that knows one process and, if given, one socket's options.
type owners struct {
	opts    *proc.SockOpts
	lookups int
}

func (o *owners) Owner(uint32) (proc.Owner, bool) {
	o.lookups++
	return proc.Owner{PID: 812, Comm: "nginx"}, true
}

func (o *owners) Options(_ uint32, p *proc.SockOpts) bool {
	if o.opts == nil {
		return false
	}
	*p = *o.opts
	return true
}

func runRule(t *testing.T, check func(*sockCtx, *diag.Socket, *Finding) bool, cases []ruleCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig(tunables)
			cfg.Owners = &owners{opts: tc.opts}
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			a := New(cfg)
			c := &a.sock
			c.reset(a, tc.s)
			var f Finding
			ok := check(c, tc.s, &f)
			if ok != (tc.sev != 0) || f.Severity != tc.sev {
				t.Fatalf("flagged %v severity %v, want severity %v; facts %+v", ok, f.Severity, tc.sev, f)
			}
			if ok {
				sameFacts(t, &f, &tc.want)
			}
			if tc.noDrop && (f.DropBy != sysctl.DropNone || f.DropIn != 0) {
				t.Errorf("predicts a drop in %v by %s, want none", f.DropIn, f.DropBy)
			}
		})
	}
}

// sameFacts checks the facts want sets (its non-zero fields) against f.
func sameFacts(t *testing.T, f, want *Finding) {
	t.Helper()
	for _, c := range []struct {
		name      string
		got, want any
		zero      bool
	}{
		{"Value", f.Value, want.Value, want.Value == 0},
		{"Threshold", f.Threshold, want.Threshold, want.Threshold == 0},
		{"ValueFrom", f.ValueFrom, want.ValueFrom, want.ValueFrom == 0},
		{"ThresholdFrom", f.ThresholdFrom, want.ThresholdFrom, want.ThresholdFrom == 0},
		{"Count", f.Count, want.Count, want.Count == 0},
		{"Limit", f.Limit, want.Limit, want.Limit == 0},
		{"Keepalive", f.Keepalive, want.Keepalive, want.Keepalive == (sysctl.Keepalive{})},
		{"DropIn", f.DropIn, want.DropIn, want.DropIn == 0},
		{"DropAfter", f.DropAfter, want.DropAfter, want.DropAfter == 0},
		{"DropLimit", f.DropLimit, want.DropLimit, want.DropLimit == 0},
		{"DropBy", f.DropBy, want.DropBy, want.DropBy == 0},
		{"Retries", f.Retries, want.Retries, want.Retries == 0},
		{"Remedy", f.Remedy, want.Remedy, want.Remedy == 0},
	} {
		if !c.zero && c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestHalfOpenKeepaliveRule(t *testing.T) {
	runRule(t, halfOpenKeepalive, []ruleCase{
		{name: "armed, no probe unanswered", s: est(timer(diag.TimerKeepalive, 290*time.Second, 0))},
		{name: "two probes unanswered, tunables", s: est(timer(diag.TimerKeepalive, 30*time.Second, 2), idle(480*time.Second)),
			sev: Critical, want: Finding{Count: 2, Value: 8 * time.Minute, DropIn: 9*time.Minute + 15*time.Second, DropBy: sysctl.DropKeepaliveProbes,
				Keepalive: tunables.Keepalive, ValueFrom: SourceNamespace, Remedy: RemedyClose}},
		{name: "one probe, socket's own options", s: est(timer(diag.TimerKeepalive, 500*time.Millisecond, 1)),
			opts: &proc.SockOpts{KeepaliveOn: true, Keepalive: sysctl.Keepalive{Time: time.Second, Intvl: time.Second, Probes: 5}},
			sev:  Critical, want: Finding{Count: 1, DropIn: 4500 * time.Millisecond, Keepalive: sysctl.Keepalive{Time: time.Second, Intvl: time.Second, Probes: 5}, ValueFrom: SourceSocket}},
		{name: "last probe out", s: est(timer(diag.TimerKeepalive, 200*time.Millisecond, 9)), sev: Critical, want: Finding{DropIn: 200 * time.Millisecond}},
		{name: "more probes out than the namespace allows: its own TCP_KEEPCNT", s: est(timer(diag.TimerKeepalive, time.Second, 12)),
			sev: Critical, want: Finding{Count: 12}, noDrop: true},
		// With TCP_USER_TIMEOUT, TCP_KEEPCNT no longer counts: 2/2/2 + 9 s,
		// silent for 3 s, the next probe in 1 s: the firing at 4+2 s = 9 s of
		// silence drops it (tcp_keepalive_timer).
		{name: "TCP_USER_TIMEOUT, not TCP_KEEPCNT", s: est(timer(diag.TimerKeepalive, time.Second, 1), idle(3*time.Second)),
			opts: &proc.SockOpts{KeepaliveOn: true, Keepalive: sysctl.Keepalive{Time: 2 * time.Second, Intvl: 2 * time.Second, Probes: 2}, UserTimeout: 9 * time.Second},
			sev:  Critical, want: Finding{DropIn: 7 * time.Second, DropAfter: 10 * time.Second, DropLimit: 9 * time.Second, DropBy: sysctl.DropUserTimeout, ValueFrom: SourceSocket}},
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
		// Three RTO firings from 200 ms: the first 1.8 s ago, the next in 1 s;
		// the kernel gives up counting from the first retransmission, not from
		// the last ACK 100 s ago.
		{name: "at threshold", s: est(inFlight, timer(diag.TimerRetransmit, time.Second, 3), rto(1600*time.Millisecond, 3)),
			sev: Critical, want: Finding{Count: 3, Limit: 3, Value: 100 * time.Second, DropBy: sysctl.DropRetries2, Retries: 15,
				DropIn: 922600 * time.Millisecond, DropAfter: 924400 * time.Millisecond, DropLimit: 924600 * time.Millisecond, Remedy: RemedyUserTimeout}},
		{name: "threshold flag", cfg: func(c *Config) { c.RetransThreshold = 6 }, s: est(inFlight, timer(diag.TimerRetransmit, time.Second, 5))},
		// The idle time before the write (no ACK for 1m40s) is not
		// retransmission time: the first retransmission was 5 s ago.
		{name: "user timeout", s: est(inFlight, timer(diag.TimerRetransmit, time.Second, 4), rto(3200*time.Millisecond, 4)), opts: &proc.SockOpts{UserTimeout: 30 * time.Second},
			sev: Critical, want: Finding{DropBy: sysctl.DropUserTimeout, DropIn: 25 * time.Second, DropAfter: 30 * time.Second, DropLimit: 30 * time.Second}},
		{name: "orphan: tcp_orphan_retries governs", s: est(inFlight, state(diag.StateFinWait1), func(s *diag.Socket) { s.Inode = 0 }, timer(diag.TimerRetransmit, time.Second, 3), rto(1600*time.Millisecond, 3)),
			sev: Critical, want: Finding{DropBy: sysctl.DropOrphanRetries, Retries: 8, DropIn: 100200 * time.Millisecond, DropAfter: 102 * time.Second, DropLimit: 102200 * time.Millisecond, Remedy: RemedyClose}},
		{name: "tcp_retries2 unknown", cfg: func(c *Config) { c.Tunables.Retries2 = nil }, s: est(inFlight, timer(diag.TimerRetransmit, time.Second, 3)),
			sev: Critical, want: Finding{Count: 3}, noDrop: true},
		{name: "SYN_SENT is the handshake", s: est(state(diag.StateSynSent), timer(diag.TimerRetransmit, time.Second, 5))},
		{name: "keepalive timer", s: est(timer(diag.TimerKeepalive, time.Second, 5))},
	})
}

func TestZeroWindowStallRule(t *testing.T) {
	backoff := func(n uint8) func(*diag.Socket) {
		return func(s *diag.Socket) { s.Info.Backoff = n; s.SendQ = 4096; s.Info.LastDataSent = 20 * time.Second }
	}
	runRule(t, zeroWindowStall, []ruleCase{
		{name: "window just closed", s: est(timer(diag.TimerPersist, time.Second, 0), backoff(2))},
		{name: "live peer stopped reading", s: est(timer(diag.TimerPersist, time.Second, 0), backoff(5)),
			sev: Warning, want: Finding{Value: 20 * time.Second, Count: 5, Remedy: RemedyFixReader}},
		{name: "probes unanswered", s: est(timer(diag.TimerPersist, time.Second, 3), backoff(3)),
			sev: Warning, want: Finding{Count: 3}},
		{name: "no persist timer, window open", s: est(timer(diag.TimerRetransmit, time.Second, 0), backoff(5))},
		// tcp_retransmit_timer's zero-window path: retransmissions as probes,
		// the backoff climbing, the retransmission count not. Five firings
		// from 204 ms: the first 0.408+0.816+1.632+3.264 s + (6.528-3.428) s ago.
		{name: "zero window through the retransmit timer", s: est(timer(diag.TimerRetransmit, 3428*time.Millisecond, 0), zeroWindow, rto(6528*time.Millisecond, 5)),
			sev: Warning, want: Finding{Count: 5, Value: 9220 * time.Millisecond, Remedy: RemedyFixReader}, noDrop: true},
		{name: "... with TCP_USER_TIMEOUT", s: est(timer(diag.TimerRetransmit, 3428*time.Millisecond, 0), zeroWindow, rto(6528*time.Millisecond, 5)),
			opts: &proc.SockOpts{UserTimeout: 10 * time.Second}, sev: Warning, want: Finding{DropBy: sysctl.DropUserTimeout, DropIn: 3428 * time.Millisecond, DropLimit: 10 * time.Second}},
		{name: "... backoff still low", s: est(timer(diag.TimerRetransmit, time.Second, 0), zeroWindow, rto(816*time.Millisecond, 2))},
		{name: "... tcp_info too short to tell the window", s: est(timer(diag.TimerRetransmit, time.Second, 0), zeroWindow, rto(6528*time.Millisecond, 5), func(s *diag.Socket) { s.Info.Len = 200 })},
		{name: "persist with TCP_USER_TIMEOUT", s: est(timer(diag.TimerPersist, 3212*time.Millisecond, 0), backoff(5), rto(208*time.Millisecond, 5), func(s *diag.Socket) { s.Info.LastDataSent = 7040 * time.Millisecond }),
			opts: &proc.SockOpts{UserTimeout: 10 * time.Second}, sev: Warning, want: Finding{DropBy: sysctl.DropUserTimeout, DropIn: 3212 * time.Millisecond, DropLimit: 10 * time.Second}},
		{name: "persist to a silent peer", s: est(timer(diag.TimerPersist, time.Second, 3), backoff(3), rto(200*time.Millisecond, 3)),
			sev: Warning, want: Finding{DropBy: sysctl.DropRetries2, Retries: 15}},
		{name: "persist to a peer that answers: no drop", s: est(timer(diag.TimerPersist, time.Second, 0), backoff(5), rto(200*time.Millisecond, 5)),
			sev: Warning, noDrop: true},
	})
}

func zeroWindow(s *diag.Socket) {
	s.Info.SndWnd, s.Info.Unacked, s.SendQ = 0, 1, 159280
}

func TestIdleNoKeepaliveRule(t *testing.T) {
	runRule(t, idleNoKeepalive, []ruleCase{
		{name: "idle, no keepalive", s: est(idle(11 * time.Minute)), sev: Warning, want: Finding{Value: 11 * time.Minute, Threshold: 10 * time.Minute, Remedy: RemedyKeepalive}},
		{name: "recently sent", s: est(idle(11*time.Minute), func(s *diag.Socket) { s.Info.LastDataSent = time.Minute })},
		{name: "keepalive armed", s: est(idle(11*time.Minute), timer(diag.TimerKeepalive, time.Minute, 0))},
		{name: "shorter max-idle", cfg: func(c *Config) { c.MaxIdle = 2 * time.Second }, s: est(idle(3 * time.Second)), sev: Warning, want: Finding{Value: 3 * time.Second, Threshold: 2 * time.Second}},
		{name: "retransmitting, unknown", s: est(idle(11*time.Minute), timer(diag.TimerRetransmit, time.Second, 1))},
		{name: "retransmitting, sockopts say off", s: est(idle(11*time.Minute), timer(diag.TimerRetransmit, time.Second, 1)), opts: &proc.SockOpts{}, sev: Warning},
		{name: "retransmitting, sockopts say on", s: est(idle(11*time.Minute), timer(diag.TimerRetransmit, time.Second, 1)), opts: &proc.SockOpts{KeepaliveOn: true}},
		{name: "CLOSE_WAIT", s: est(state(diag.StateCloseWait), idle(11*time.Minute))},
		{name: "no tcp_info", s: est(noInfo)},
	})
}

func TestIdleOverlongRule(t *testing.T) {
	limit := func(c *Config) { c.IdleLimit = time.Hour }
	runRule(t, idleOverlong, []ruleCase{
		{name: "off by default", s: est(idle(48 * time.Hour))},
		{name: "over limit", cfg: limit, s: est(idle(2*time.Hour), timer(diag.TimerKeepalive, time.Minute, 0)), sev: Warning, want: Finding{Value: 2 * time.Hour, Threshold: time.Hour, Remedy: RemedyClose}},
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
			sev: Warning, want: Finding{Value: 2 * time.Hour, ValueFrom: SourceTimer, Threshold: 350 * time.Second, ThresholdFrom: SourceConfig, Remedy: RemedyTune}},
		// The interval, once a probe was answered: 2/10/x behind a 5 s path.
		{name: "inferred interval after the path", cfg: path(5 * time.Second), s: est(timer(diag.TimerKeepalive, 9*time.Second, 0), idle(time.Second)),
			sev: Warning, want: Finding{Value: 10 * time.Second, ValueFrom: SourceTimer}},
		// Equal to the path less an eighth loses: timers fire late.
		{name: "inferred within the margin", cfg: path(8 * time.Second), s: est(timer(diag.TimerKeepalive, 7500*time.Millisecond, 0), idle(500*time.Millisecond)),
			sev: Warning, want: Finding{Value: 8 * time.Second, Threshold: 8 * time.Second}},
		{name: "inferred at the cadence limit", cfg: path(8 * time.Second), s: est(timer(diag.TimerKeepalive, 6500*time.Millisecond, 0), idle(500*time.Millisecond))},
		{name: "inferred before the path", cfg: path(350 * time.Second), s: est(timer(diag.TimerKeepalive, 14*time.Second, 0), idle(time.Second))},
		{name: "local conntrack", cfg: conntrack, s: est(timer(diag.TimerKeepalive, 250*time.Second, 0), idle(50*time.Second)),
			sev: Warning, want: Finding{Value: 5 * time.Minute, Threshold: 2 * time.Minute, ThresholdFrom: SourceConntrack}},
		{name: "flag beats conntrack", cfg: func(c *Config) { conntrack(c); c.PathIdleTimeout = time.Hour }, s: est(timer(diag.TimerKeepalive, 250*time.Second, 0), idle(50*time.Second))},
		{name: "sockopts TCP_KEEPIDLE", cfg: path(60 * time.Second), s: est(timer(diag.TimerRetransmit, time.Second, 1)),
			opts: &proc.SockOpts{KeepaliveOn: true, Keepalive: sysctl.Keepalive{Time: 90 * time.Second, Intvl: 10 * time.Second}}, sev: Warning,
			want: Finding{Value: 90 * time.Second, ValueFrom: SourceSocket, Remedy: RemedySocketKeepidle}},
		// 2/10/3 behind a 5 s path dies at the middlebox before its first probe
		// is even due: the interval decides.
		{name: "sockopts TCP_KEEPINTVL after the path", cfg: path(5 * time.Second), s: est(timer(diag.TimerKeepalive, time.Second, 0)),
			opts: &proc.SockOpts{KeepaliveOn: true, Keepalive: sysctl.Keepalive{Time: 2 * time.Second, Intvl: 10 * time.Second, Probes: 3}}, sev: Warning,
			want: Finding{Value: 10 * time.Second, ValueFrom: SourceSocket, Keepalive: sysctl.Keepalive{Time: 2 * time.Second, Intvl: 10 * time.Second, Probes: 3}}},
		{name: "sockopts keepalive off", cfg: path(60 * time.Second), s: est(timer(diag.TimerKeepalive, 250*time.Second, 0)), opts: &proc.SockOpts{}},
		{name: "no keepalive", cfg: path(60 * time.Second), s: est()},
		{name: "retransmitting, unknown", cfg: path(60 * time.Second), s: est(timer(diag.TimerRetransmit, time.Second, 1))},
		{name: "probing: no guess (half_open_keepalive speaks)", cfg: path(60 * time.Second), s: est(timer(diag.TimerKeepalive, time.Second, 2))},
		{name: "probing, socket's own TCP_KEEPIDLE", cfg: path(60 * time.Second), s: est(timer(diag.TimerKeepalive, time.Second, 2)),
			opts: &proc.SockOpts{KeepaliveOn: true, Keepalive: sysctl.Keepalive{Time: 2 * time.Hour}}, sev: Warning, want: Finding{ValueFrom: SourceSocket}},
		{name: "FIN_WAIT2 timer", cfg: path(60 * time.Second), s: est(state(diag.StateFinWait2), timer(diag.TimerKeepalive, 7000*time.Second, 0))},
	})
}

func TestCloseWaitStaleRule(t *testing.T) {
	runRule(t, closeWaitStale, []ruleCase{
		{name: "stale", s: est(state(diag.StateCloseWait), idle(5*time.Minute)), sev: Warning, want: Finding{Value: 5 * time.Minute, Threshold: time.Minute, Remedy: RemedyFixClose}},
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
		{name: "at 80%", s: listen(4, 5), sev: Warning, want: Finding{Count: 4, Limit: 5}},
		{name: "full", s: listen(5, 5), sev: Critical, want: Finding{Count: 5, Limit: 5, Remedy: RemedyAcceptFaster}},
		{name: "over", s: listen(6, 5), sev: Critical},
		{name: "established with a receive queue", s: est(func(s *diag.Socket) { s.RecvQ, s.SendQ = 5, 5 })},
	})
}

func TestTunableRules(t *testing.T) {
	def := sysctl.Tunables{Keepalive: sysctl.Defaults}
	for _, tc := range []struct {
		name  string
		check func(sysctl.Tunables, *Finding) bool
		t     sysctl.Tunables
		sev   Severity
		want  Finding
	}{
		{"default time", sysctlKeepaliveDefault, def, Warning, Finding{Value: 2 * time.Hour, Keepalive: sysctl.Defaults, Remedy: RemedyTune}},
		{"tuned time", sysctlKeepaliveDefault, tunables, 0, Finding{}},
		{"no conntrack", sysctlKeepaliveAfterConntrack, def, 0, Finding{}},
		{"after conntrack", sysctlKeepaliveAfterConntrack, sysctl.Tunables{Keepalive: sysctl.Defaults, ConntrackEstablished: ptr(3600 * time.Second)}, Warning,
			Finding{Value: 2 * time.Hour, Threshold: time.Hour, ThresholdFrom: SourceConntrack, Keepalive: sysctl.Defaults, Remedy: RemedyTune}},
		{"before conntrack", sysctlKeepaliveAfterConntrack, sysctl.Tunables{Keepalive: sysctl.Defaults, ConntrackEstablished: ptr(432000 * time.Second)}, 0, Finding{}},
		// Equal loses: timers fire late.
		{"equal to conntrack", sysctlKeepaliveAfterConntrack, sysctl.Tunables{Keepalive: sysctl.Defaults, ConntrackEstablished: ptr(7200 * time.Second)}, Warning, Finding{Value: 2 * time.Hour}},
		{"the interval decides", sysctlKeepaliveAfterConntrack, sysctl.Tunables{Keepalive: sysctl.Keepalive{Time: 2 * time.Second, Intvl: 10 * time.Second, Probes: 3}, ConntrackEstablished: ptr(5 * time.Second)}, Warning,
			Finding{Value: 10 * time.Second}},
		{"at the cadence limit", sysctlKeepaliveAfterConntrack, sysctl.Tunables{Keepalive: sysctl.Keepalive{Time: 4 * time.Second, Intvl: time.Second, Probes: 3}, ConntrackEstablished: ptr(5 * time.Second)}, 0, Finding{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var f Finding
			ok := tc.check(tc.t, &f)
			if ok != (tc.sev != 0) || f.Severity != tc.sev {
				t.Fatalf("got %v %v, want %v", ok, f.Severity, tc.sev)
			}
			sameFacts(t, &f, &tc.want)
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
				a.Check(s, func(*Finding) {})
				// Another peer, and a listener on the port: neither counts.
				a.Check(est(func(s *diag.Socket) {
					s.Local = netip.MustParseAddrPort("10.77.0.2:7070")
					s.Remote = netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 77, 1, byte(i)}), 40000)
				}), func(*Finding) {})
				a.Check(est(state(diag.StateListen), func(s *diag.Socket) { s.Local = netip.MustParseAddrPort("10.77.0.2:7070"); s.Remote = netip.AddrPort{} }), func(*Finding) {})
			}
			var got []Finding
			a.Finish(func(f *Finding) { got = append(got, *f) })
			if len(got) != tc.want {
				t.Fatalf("%d findings, want %d: %+v", len(got), tc.want, got)
			}
			if tc.want > 0 {
				f := got[0]
				if f.Code != PeerLimitExceeded || f.Socket == nil || f.Socket.Remote.Addr().String() != "10.77.0.1" || f.Count != 6 || f.Limit != 5 || PeerOf(f.Socket).Port != 7070 {
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
	o := &owners{}
	cfg.Owners = o
	a := New(cfg)
	var got []Finding
	emit := func(f *Finding) { got = append(got, *f) }
	s := est(idle(time.Hour))
	a.Check(s, emit)              // idle_no_keepalive
	a.Check(est(), emit)          // healthy: no owner lookup
	s.State = diag.StateCloseWait // the caller reuses its Socket
	a.Check(s, emit)              // close_wait_stale
	if len(got) != 2 || got[0].Code != IdleNoKeepalive || got[1].Code != CloseWaitStale {
		t.Fatalf("findings %+v", got)
	}
	if got[0].Socket.State != diag.StateEstablished || got[0].Owner == nil || got[0].Owner.PID != 812 || got[0].Holder != HolderProcess {
		t.Fatalf("finding kept the caller's socket, or lost its owner: %+v", got[0])
	}
	if o.lookups != 2 {
		t.Fatalf("owner looked up %d times, want 2 (flagged sockets only)", o.lookups)
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
	emit := func(f *Finding) { t.Errorf("flagged: %s", f.Code) }
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
	emit := func(*Finding) {}
	b.ReportAllocs()
	for b.Loop() {
		for _, s := range socks {
			a.Check(s, emit)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(socks)), "ns/socket")
}

// FuzzCheck feeds the rules sockets and tunables with any field values: no
// panic, and every finding has a code, a severity, a remedy and, unless it is
// about the tunables, a socket.
func FuzzCheck(f *testing.F) {
	f.Add(uint8(1), uint8(2), uint8(3), int64(1e9), uint32(5), uint32(5), int64(7200), int64(75), 9, int64(60e9), 3)
	f.Add(uint8(10), uint8(0), uint8(0), int64(0), uint32(0), uint32(0), int64(0), int64(0), 0, int64(0), 0)
	f.Fuzz(func(t *testing.T, st, tm, retrans uint8, expires int64, rq, sq uint32, ktime, kintvl int64, kprobes int, idleNS int64, perPeer int) {
		tun := sysctl.Tunables{Keepalive: sysctl.Keepalive{Time: time.Duration(ktime) * time.Second, Intvl: time.Duration(kintvl) * time.Second, Probes: kprobes}, Retries2: ptr(kprobes), ConntrackEstablished: ptr(time.Duration(ktime))}
		cfg := DefaultConfig(tun)
		cfg.MaxPerPeer = perPeer % 4
		cfg.IdleLimit = time.Duration(idleNS)
		cfg.PathIdleTimeout = time.Duration(expires)
		if retrans%2 == 0 {
			cfg.Owners = &owners{opts: &proc.SockOpts{KeepaliveOn: tm%2 == 0, Keepalive: sysctl.Keepalive{Time: time.Duration(ktime), Intvl: time.Duration(kintvl), Probes: kprobes}, UserTimeout: time.Duration(idleNS)}}
		}
		a := New(cfg)
		check := func(f *Finding) {
			if f.Code == "" || f.Severity == 0 || f.Remedy == RemedyNone || (f.Socket == nil) != f.Code.Tunable() {
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

// BenchmarkRun is a whole audit (tunables, dump, rules, summary) of a namespace
// in memory holding healthy sockets: what the engine costs per socket on top of
// the kernel's dump, and that it allocates per run, not per socket.
func BenchmarkRun(b *testing.B) {
	root := b.TempDir()
	for name, v := range map[string]string{sysctl.FileTime: "300", sysctl.FileIntvl: "30", sysctl.FileProbes: "5", sysctl.FileRetries2: "15"} {
		p := filepath.Join(root, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte(v+"\n"), 0o644)
	}
	var socks []diag.Socket
	for i := range 10000 {
		socks = append(socks, *healthy()[i%len(healthy())])
	}
	ns := kernel.NewFake("bench", sysctl.ProcSys(root), socks...)
	cfg := DefaultConfig(sysctl.Tunables{})
	cfg.PathIdleTimeout = time.Hour
	b.ReportAllocs()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for b.Loop() {
		if _, err := Run(context.Background(), ns, cfg, func(*Finding) {}); err != nil {
			b.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(b.N*len(socks)), "allocs/socket")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(socks)), "ns/socket")
}
