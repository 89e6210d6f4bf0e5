package report

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/tcpkeep/tcpkeep/diag"
	"github.com/tcpkeep/tcpkeep/internal/audit"
	"github.com/tcpkeep/tcpkeep/internal/proc"
	"github.com/tcpkeep/tcpkeep/sysctl"
)

// optsOwners is an audit.Owners that holds every socket and reads opts, if any.
type optsOwners struct{ opts *proc.SockOpts }

func (optsOwners) Owner(uint32) (proc.Owner, bool) { return proc.Owner{PID: 812, Comm: "nginx"}, true }

func (o optsOwners) Options(_ uint32, p *proc.SockOpts) bool {
	if o.opts == nil {
		return false
	}
	*p = *o.opts
	return true
}

// sock is an ESTABLISHED socket silent for a second, with mods applied.
func sock(mods ...func(*diag.Socket)) *diag.Socket {
	s := &diag.Socket{
		Family: diag.FamilyInet, State: diag.StateEstablished, Cookie: 7, Inode: 1234,
		Local:  netip.MustParseAddrPort("10.77.0.1:40000"),
		Remote: netip.MustParseAddrPort("10.77.0.2:7070"),
		Info:   diag.TCPInfo{Len: 232, LastDataSent: time.Second, LastDataRecv: time.Second, LastAckRecv: time.Second},
	}
	for _, m := range mods {
		m(s)
	}
	return s
}

func withTimer(t diag.Timer, expires time.Duration, retrans uint8) func(*diag.Socket) {
	return func(s *diag.Socket) { s.Timer, s.TimerExpires, s.TimerRetrans = t, expires, retrans }
}

func withRTO(d time.Duration, backoff uint8) func(*diag.Socket) {
	return func(s *diag.Socket) { s.Info.RTO, s.Info.Backoff = d, backoff }
}

func silent(d time.Duration) func(*diag.Socket) {
	return func(s *diag.Socket) { s.Info.LastDataSent, s.Info.LastDataRecv, s.Info.LastAckRecv = d, d, d }
}

// TestWordsStateTheModel: audit's findings, put into words, state the figures
// of sysctl's model of the kernel's clocks (the timing suite in
// internal/audit checks those figures against the kernel).
func TestWordsStateTheModel(t *testing.T) {
	tun := sysctl.Tunables{Keepalive: sysctl.Keepalive{Time: 300 * time.Second, Intvl: 75 * time.Second, Probes: 9}, Retries2: ptr(15)}
	inFlight := func(s *diag.Socket) { s.SendQ = 1000; s.Info.LastAckRecv = 100 * time.Second }
	zeroWindow := func(s *diag.Socket) { s.Info.SndWnd, s.Info.Unacked, s.SendQ = 0, 1, 159280 }
	persist := func(s *diag.Socket) { s.Info.Backoff = 5; s.SendQ = 4096; s.Info.LastDataSent = 20 * time.Second }
	for _, tc := range []struct {
		name string
		cfg  func(*audit.Config)
		s    *diag.Socket
		opts *proc.SockOpts
		code audit.Code
		want []string
	}{
		{name: "keepalive, the namespace's values", s: sock(withTimer(diag.TimerKeepalive, 30*time.Second, 2), silent(480*time.Second)), code: audit.HalfOpenKeepalive,
			want: []string{"2 keepalive probes unanswered and nothing received for 8m", "the kernel drops it in about 9m15s (after 9 probes 1m15s apart, the namespace's tunables", "--sockopts reads them", "tcpkeep kill --finding half_open_keepalive"}},
		{name: "keepalive with TCP_USER_TIMEOUT", s: sock(withTimer(diag.TimerKeepalive, time.Second, 1), silent(3*time.Second)), code: audit.HalfOpenKeepalive,
			opts: &proc.SockOpts{KeepaliveOn: true, Keepalive: sysctl.Keepalive{Time: 2 * time.Second, Intvl: 2 * time.Second, Probes: 2}, UserTimeout: 9 * time.Second},
			want: []string{"TCP_USER_TIMEOUT 9s drops it in about 7s", "TCP_KEEPCNT no longer counts"}},
		{name: "retransmission from the first retransmission", s: sock(inFlight, withTimer(diag.TimerRetransmit, time.Second, 3), withRTO(1600*time.Millisecond, 3)), code: audit.HalfOpenRetrans,
			want: []string{"3 retransmissions", "no ACK for 1m40s", "1000 bytes", "tcp_retries2 15 gives up in about 15m23s", "15m24s after the first retransmission"}},
		{name: "retransmission with TCP_USER_TIMEOUT", s: sock(inFlight, withTimer(diag.TimerRetransmit, time.Second, 4), withRTO(3200*time.Millisecond, 4)), code: audit.HalfOpenRetrans,
			opts: &proc.SockOpts{UserTimeout: 30 * time.Second}, want: []string{"TCP_USER_TIMEOUT gives up in about 25s (30s after the first retransmission, 5s ago)"}},
		{name: "orphan", s: sock(inFlight, func(s *diag.Socket) { s.State, s.Inode = diag.StateFinWait1, 0 }, withTimer(diag.TimerRetransmit, time.Second, 3), withRTO(1600*time.Millisecond, 3)),
			code: audit.HalfOpenRetrans, want: []string{"tcp_orphan_retries (8 retransmissions)", "gives up in about 1m40s (1m42s after the first retransmission)", "orphaned"}},
		{name: "zero window on the retransmit timer", s: sock(withTimer(diag.TimerRetransmit, 3428*time.Millisecond, 0), zeroWindow, withRTO(6528*time.Millisecond, 5)), code: audit.ZeroWindowStall,
			want: []string{"zero window for about 9.2s", "5 zero-window probes", "the peer stopped reading", "159280 bytes"}},
		{name: "zero window with TCP_USER_TIMEOUT", s: sock(withTimer(diag.TimerRetransmit, 3428*time.Millisecond, 0), zeroWindow, withRTO(6528*time.Millisecond, 5)), code: audit.ZeroWindowStall,
			opts: &proc.SockOpts{UserTimeout: 10 * time.Second}, want: []string{"TCP_USER_TIMEOUT 10s drops it in about 3.4s"}},
		{name: "persist to a silent peer", s: sock(withTimer(diag.TimerPersist, time.Second, 3), persist, withRTO(200*time.Millisecond, 3)), code: audit.ZeroWindowStall,
			want: []string{"last 3 went unanswered", "if nothing answers, tcp_retries2 drops it in about"}},
		{name: "path: the timer's cadence", cfg: func(c *audit.Config) { c.PathIdleTimeout = 350 * time.Second },
			s: sock(withTimer(diag.TimerKeepalive, 7000*time.Second, 0), silent(200*time.Second)), code: audit.KeepaliveAfterPathTimeout,
			want: []string{"probes the idle connection every 2h (from its keepalive timer", "the path (--path-idle-timeout) forgets an idle flow after 5m50s", "up to an eighth late",
				"to 5m6s at most with tcpkeep sysctl recommend --path-idle-timeout 5m50s --apply", "the socket's TCP_KEEPIDLE and TCP_KEEPINTVL if it sets its own"}},
		{name: "path: the socket's interval decides", cfg: func(c *audit.Config) { c.PathIdleTimeout = 5 * time.Second },
			s: sock(withTimer(diag.TimerKeepalive, time.Second, 0)), code: audit.KeepaliveAfterPathTimeout,
			opts: &proc.SockOpts{KeepaliveOn: true, Keepalive: sysctl.Keepalive{Time: 2 * time.Second, Intvl: 10 * time.Second, Probes: 3}},
			want: []string{"every 10s (the larger of the socket's TCP_KEEPIDLE 2s and TCP_KEEPINTVL 10s)", "set TCP_KEEPIDLE and TCP_KEEPINTVL in the application to 4s at most"}},
		{name: "path: too short for any keepalive", cfg: func(c *audit.Config) { c.PathIdleTimeout = time.Second },
			s: sock(withTimer(diag.TimerKeepalive, 5*time.Second, 0), silent(time.Second)), code: audit.KeepaliveAfterPathTimeout,
			want: []string{"no keepalive setting fits a path this short: use an application heartbeat"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := audit.DefaultConfig(tun)
			cfg.Owners = optsOwners{tc.opts}
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			var msg string
			audit.New(cfg).Check(tc.s, func(f *audit.Finding) {
				if f.Code == tc.code {
					msg = Words{Sockopts: true, Remedy: true}.Message(f)
				}
			})
			if msg == "" {
				t.Fatalf("no %s finding", tc.code)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("%q lacks %q", msg, w)
				}
			}
		})
	}
}

func TestTunableWordsStateTheModel(t *testing.T) {
	for _, tc := range []struct {
		tun  sysctl.Tunables
		code audit.Code
		want []string
	}{
		{sysctl.Tunables{Keepalive: sysctl.Defaults}, audit.SysctlKeepaliveDefault, []string{"kernel default of 2h: a dead idle peer is found after 2h11m15s", "sysctl recommend --apply"}},
		{sysctl.Tunables{Keepalive: sysctl.Keepalive{Time: 600 * time.Second, Intvl: 75 * time.Second, Probes: 9}, ConntrackEstablished: ptr(300 * time.Second)}, audit.SysctlKeepaliveAfterConntrack,
			[]string{"keepalive probes every 10m (the larger of tcp_keepalive_time 10m and tcp_keepalive_intvl 1m15s), not under nf_conntrack_tcp_timeout_established 5m less an eighth",
				"to 4m22s at most with tcpkeep sysctl recommend --behind conntrack --apply"}},
		{sysctl.Tunables{Keepalive: sysctl.Keepalive{Time: 2 * time.Second, Intvl: 10 * time.Second, Probes: 3}, ConntrackEstablished: ptr(5 * time.Second)}, audit.SysctlKeepaliveAfterConntrack,
			[]string{"keepalive probes every 10s"}},
	} {
		var msg string
		audit.New(audit.DefaultConfig(tc.tun)).Tunables(func(f *audit.Finding) {
			if f.Code == tc.code {
				msg = Words{Remedy: true}.Message(f)
			}
		})
		for _, w := range tc.want {
			if !strings.Contains(msg, w) {
				t.Errorf("%s: %q lacks %q", tc.code, msg, w)
			}
		}
	}
}

// A finding that predicts a drop carries it as data beside its sentence:
// drop_in_ms and drop_by, both or neither.
func TestFindingRecordCarriesTheDrop(t *testing.T) {
	f := audit.Finding{Code: audit.HalfOpenKeepalive, Severity: audit.Critical, Remedy: audit.RemedyClose,
		Socket: sock(), DropIn: 4250 * time.Millisecond, DropBy: sysctl.DropUserTimeout}
	var m map[string]any
	if err := json.Unmarshal(append(append([]byte("{"), appendFindingFields(nil, &f, Words{}, true)...), '}'), &m); err != nil {
		t.Fatal(err)
	}
	if m["drop_in_ms"] != 4250.0 || m["drop_by"] != "user_timeout" {
		t.Fatalf("record %v: want drop_in_ms 4250 and drop_by user_timeout", m)
	}
	f.DropIn, f.DropBy = 0, sysctl.DropNone
	m = nil
	if err := json.Unmarshal(append(append([]byte("{"), appendFindingFields(nil, &f, Words{}, true)...), '}'), &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"drop_in_ms", "drop_by"} {
		if _, ok := m[k]; ok {
			t.Errorf("record %v: a finding without a predicted drop has %s", m, k)
		}
	}
}

func ptr[T any](v T) *T { return &v }

// TestRemediesPointToArm: the findings keepalive or TCP_USER_TIMEOUT can fix
// say which arm command fixes the connection now, with audit's values for the
// path; where arm cannot act (an orphan, a closing state, no values) they
// say nothing of it.
func TestRemediesPointToArm(t *testing.T) {
	arm := proc.Keepalive{Keepalive: sysctl.Keepalive{Time: 216 * time.Second, Intvl: 21 * time.Second, Probes: 5},
		UserTimeout: 321 * time.Second, SetUserTimeout: true}
	conn := " arm --sport 40000 --dst 10.77.0.2 --dport 7070 --time 3m36s --intvl 21s --probes 5"
	w := Words{Remedy: true, NetNS: "web"}
	for _, tc := range []struct {
		name  string
		code  audit.Code
		rem   audit.Remedy
		edit  func(*audit.Finding)
		want  string
		unarm bool
	}{
		{name: "idle", code: audit.IdleNoKeepalive, rem: audit.RemedyKeepalive, want: "; until then, arm this connection now: tcpkeep --netns web" + conn},
		{name: "retrans", code: audit.HalfOpenRetrans, rem: audit.RemedyUserTimeout, want: "; bound this connection now with tcpkeep --netns web" + conn + " --user-timeout 5m21s"},
		{name: "zero window", code: audit.ZeroWindowStall, rem: audit.RemedyFixReader, want: " (now: tcpkeep --netns web" + conn + " --user-timeout 5m21s)"},
		{name: "orphan", code: audit.HalfOpenRetrans, rem: audit.RemedyUserTimeout, edit: func(f *audit.Finding) { f.Socket.Inode = 0 }, unarm: true},
		{name: "closing", code: audit.HalfOpenRetrans, rem: audit.RemedyUserTimeout, edit: func(f *audit.Finding) { f.Socket.State = diag.StateFinWait1 }, unarm: true},
		{name: "no values", code: audit.IdleNoKeepalive, rem: audit.RemedyKeepalive, edit: func(f *audit.Finding) { f.Arm = proc.Keepalive{} }, unarm: true},
	} {
		f := &audit.Finding{Code: tc.code, Remedy: tc.rem, Socket: established(), Arm: arm}
		if tc.edit != nil {
			tc.edit(f)
		}
		got := w.Message(f)
		if tc.unarm == strings.Contains(got, " arm ") || !strings.HasSuffix(got, tc.want) {
			t.Errorf("%s: %q, want it to end with %q", tc.name, got, tc.want)
		}
	}
}

// TestNearest: what "did you mean" offers.
func TestNearest(t *testing.T) {
	names := []string{"sysctl", "conns", "audit", "kill", "arm", "probe"}
	for in, want := range map[string]string{"audt": "audit", "sysclt": "sysctl", "con": "conns", "kil": "kill", "amr": "arm", "frobnicate": "", "": ""} {
		if got := Nearest(in, names); got != want {
			t.Errorf("Nearest(%q) = %q, want %q", in, got, want)
		}
	}
}
