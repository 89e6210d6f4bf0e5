package cli

// What the commands write, against a namespace in memory (kernel.Fake): the
// record types and their keys, interrupted runs, tables. The kernel is not the
// subject here, so none of it needs root.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcpkeep/tcpkeep/diag"
)

// sock is an ESTABLISHED socket idle for idle, with keepalive armed or not.
func sock(cookie uint64, local, remote string, idle time.Duration, keepalive bool) diag.Socket {
	s := diag.Socket{
		Family: diag.FamilyInet, State: diag.StateEstablished, Cookie: cookie, Inode: uint32(1000 + cookie),
		Local: netip.MustParseAddrPort(local), Remote: netip.MustParseAddrPort(remote),
		Info: diag.TCPInfo{Len: 280, LastDataSent: idle, LastDataRecv: idle, LastAckRecv: idle, RTO: 204 * time.Millisecond, RTT: time.Millisecond},
	}
	if s.Local.Addr().Is6() {
		s.Family = diag.FamilyInet6
	}
	if keepalive {
		s.Timer, s.TimerExpires = diag.TimerKeepalive, 10*time.Second
	}
	return s
}

// mixed is a namespace's worth of sockets every rule has something to say
// about: idle ones without keepalive, a half-open one, a CLOSE_WAIT, a full
// listener, an IPv6 one; and n more idle connections.
func mixed(n int) []diag.Socket {
	half := sock(2, "10.0.0.1:40002", "10.0.0.9:5432", 40*time.Second, true)
	half.TimerRetrans, half.Info.Probes = 2, 2
	cw := sock(3, "10.0.0.1:8080", "10.0.0.9:40003", 5*time.Minute, false)
	cw.State = diag.StateCloseWait
	l := diag.Socket{Family: diag.FamilyInet, State: diag.StateListen, Cookie: 4, Inode: 1004, Local: netip.MustParseAddrPort("0.0.0.0:8080"),
		Remote: netip.MustParseAddrPort("0.0.0.0:0"), RecvQ: 128, SendQ: 128, Info: diag.TCPInfo{Len: 280}}
	socks := []diag.Socket{
		sock(1, "10.0.0.1:40001", "10.0.0.9:443", time.Hour, false), half, cw, l,
		sock(5, "[fd00::1]:40005", "[fd00::9]:443", 2*time.Hour, false),
	}
	for i := range n {
		socks = append(socks, sock(uint64(100+i), fmt.Sprintf("10.0.1.%d:%d", 1+i%250, 20000+i), "10.0.0.9:443", time.Hour, false))
	}
	return socks
}

// headerKeys are the header's: the first four always, the others where known.
var headerKeys = []string{"type", "ts", "host", "netns", "netns_inode", "container_id", "pod_uid", "netns_comm"}

// keys lists a record's keys, the header's taken out.
func keys(m map[string]any) []string {
	var k []string
	for key := range m {
		if !slices.Contains(headerKeys, key) {
			k = append(k, key)
		}
	}
	sort.Strings(k)
	return k
}

func hasHeader(m map[string]any) bool {
	for _, k := range headerKeys {
		if _, ok := m[k]; ok {
			return true
		}
	}
	return false
}

// optional are the keys docs/output.md says are absent where unknown.
var optional = map[string][]string{
	"socket": {"idle_ms", "last_data_recv_ms", "last_data_sent_ms", "last_ack_recv_ms", "rtt_us", "rto_ms", "retransmits", "probes",
		"backoff", "unacked", "keepalive", "pid", "comm", "so_keepalive", "keepidle_s", "keepintvl_s", "keepcnt", "user_timeout_ms"},
	"finding": {"socket", "drop_in_ms", "drop_by"},
	// heartbeat_ms: only when --heartbeat was given.
	"sysctl_recommend": {"heartbeat_ms"},
	"action":           {"message", "error", "before", "after"},
}

// wantKeys are the key sets of docs/output.md, the header and optional keys
// taken out.
var wantKeys = map[string][]string{
	"conns_summary": {"by_state", "duration_ms", "interrupted", "sockets"},
	"audit_summary": {"by_state", "duration_ms", "findings", "interrupted", "sockets", "worst"},
	"kill_summary":  {"closed", "dry_run", "duration_ms", "failed", "gone", "interrupted", "selected", "sockets", "stopped"},
	"arm_summary":   {"armed", "dry_run", "duration_ms", "failed", "gone", "interrupted", "selected", "sockets", "stopped", "unchanged", "values", "would_arm"},
	"sysctl":        {"dead_peer_detect_s", "keepalive_intvl_s", "keepalive_probes", "keepalive_time_s", "retrans_give_up_ms", "tcp_fin_timeout_s", "tcp_orphan_retries", "tcp_retries2"},
	"finding":       {"code", "message", "remedy", "severity"},
	"action":        {"action", "reason", "result", "socket"},
	"socket":        {"cookie", "family", "inode", "local", "recv_q", "remote", "send_q", "state", "timer", "timer_expires_ms", "timer_retrans", "uid"},
	"version":       {"commit", "go", "version"},
	"sysctl_set":    {"dry_run", "new", "old"},
	"sysctl_recommend": {"applied", "dead_peer_detect_s", "keepalive_intvl_s", "keepalive_probes", "keepalive_time_s",
		"path", "path_default", "path_idle_timeout_s", "reason", "user_timeout_ms"},
}

// TestOneTypeOneKeySet: every record has its type; one type has one key set
// in every command and format; a nested record is the record's own keys
// without the header; audit's tunables are sysctl's; the same socket is the
// same record wherever it appears; strings are not HTML-escaped.
func TestOneTypeOneKeySet(t *testing.T) {
	k := fakeNS(t, mixed(0)...)
	k.DestroyErr = fmt.Errorf("destroy 10.0.0.1:40001 -> 10.0.0.9:443: operation <not> permitted & refused")
	// arm's sockets have no inode, so that no process on this host is ever
	// looked at for them: each is an action with an error (no owner). The
	// options before and after come from real owners (TestArmEndToEnd).
	var orphans []diag.Socket
	for _, s := range mixed(0) {
		s.Inode, s.Cookie = 0, s.Cookie+1000
		orphans = append(orphans, s)
	}
	ka := fakeNS(t, orphans...)
	runs := [][]string{
		{"conns", "--state", "all"}, {"audit", "--idle-limit", "1m"}, {"kill", "--dry-run", "--state", "all"},
		{"kill", "--dport", "443"}, {"sysctl"}, {"version"}, {"sysctl", "set", "--time", "60", "--dry-run"},
		{"sysctl", "recommend", "--behind", "aws-nlb"}, {"sysctl", "recommend", "--path-idle-timeout", "60s", "--heartbeat", "20s"},
		{"arm", "--dport", "443", "--behind", "aws-nlb"},
		{"arm", "--dry-run", "--state", "all", "--time", "60", "--intvl", "10", "--probes", "5", "--user-timeout", "110s"},
	}
	byType := map[string][]string{} // type -> its key set
	sockets := map[string]string{}  // cookie -> the socket record, as JSON
	drops := 0                      // findings that predict a drop
	record := func(where, typ string, m map[string]any) {
		t.Helper()
		if typ == "finding" {
			_, in := m["drop_in_ms"]
			_, by := m["drop_by"]
			if in != by {
				t.Errorf("%s: a finding with one of drop_in_ms and drop_by: %v", where, m)
			}
			if in {
				drops++
			}
		}
		// Keys absent where the kernel or the run does not know them
		// (docs/output.md) do not count against the set.
		ks := slices.DeleteFunc(keys(m), func(k string) bool { return slices.Contains(optional[typ], k) })
		if prev, ok := byType[typ]; ok && !slices.Equal(prev, ks) {
			t.Errorf("%s: a %q record with keys %v, elsewhere %v", where, typ, ks, prev)
		}
		byType[typ] = ks
	}
	sameSocket := func(where string, s any) {
		t.Helper()
		m, ok := s.(map[string]any)
		if !ok {
			return
		}
		if hasHeader(m) {
			t.Errorf("%s: a nested socket has header keys: %v", where, m)
		}
		b, _ := json.Marshal(m)
		c := m["cookie"].(string)
		if prev, ok := sockets[c]; ok && prev != string(b) {
			t.Errorf("%s: socket %s is\n%s\nelsewhere\n%s", where, c, b, prev)
		}
		sockets[c] = string(b)
	}
	for _, args := range runs {
		for _, o := range []string{"ndjson", "json"} {
			where := strings.Join(args, " ") + " -o " + o
			kern := k
			if args[0] == "arm" {
				kern = ka
			}
			r := runCLI(t, withKernel(hostNS{kern}), append(args, "-o", o)...)
			if r.code > 2 {
				t.Fatalf("%s: exit %d: %s", where, r.code, r.stderr)
			}
			if strings.Contains(r.stdout, `\u003c`) || strings.Contains(r.stdout, `\u003e`) || strings.Contains(r.stdout, `\u0026`) {
				t.Errorf("%s: HTML-escaped output:\n%s", where, r.stdout)
			}
			if o == "ndjson" {
				for _, m := range records(t, r.stdout, "self") {
					typ := m["type"].(string)
					record(where, typ, m)
					if typ == "socket" {
						for _, k := range headerKeys {
							delete(m, k)
						}
						sameSocket(where, m)
					}
					sameSocket(where, m["socket"])
				}
				continue
			}
			doc := decode(t, r.stdout)
			if doc["type"] == nil || doc["ts"] == nil || doc["host"] == nil || doc["netns"] == nil {
				t.Errorf("%s: document without its header: %.200s", where, r.stdout)
			}
			for key, elem := range map[string]string{"sockets": "socket", "findings": "finding", "actions": "action", "beats": "beat"} {
				arr, _ := doc[key].([]any)
				for _, e := range arr {
					m := e.(map[string]any)
					if hasHeader(m) {
						t.Errorf("%s: a nested %s has header keys", where, elem)
					}
					record(where, elem, m)
					if elem == "socket" {
						sameSocket(where, m)
					}
					sameSocket(where, m["socket"])
				}
			}
			if s, ok := doc["summary"].(map[string]any); ok {
				record(where, doc["type"].(string)+"_summary", s)
			}
			if tun, ok := doc["tunables"].(map[string]any); ok {
				record(where, "sysctl", tun)
			}
		}
	}
	for typ, want := range wantKeys {
		if got := byType[typ]; !slices.Equal(got, want) {
			t.Errorf("%s keys %v, want %v", typ, got, want)
		}
	}
	if drops == 0 {
		t.Error("no finding predicted a drop: the half-open socket's should")
	}
	if len(sockets) != 9 {
		t.Errorf("saw %d distinct sockets, want the 5 and arm's 4 (it leaves the listener alone)", len(sockets))
	}
}

// TestInterruptedRunsAreWhole: a signal mid-dump (the fake ends the context
// after so many sockets) leaves whole records and a summary that says so, in
// every format, and exit 130.
func TestInterruptedRunsAreWhole(t *testing.T) {
	for _, args := range [][]string{
		{"conns"}, {"audit", "--idle-limit", "1m"}, {"kill", "--dport", "443"}, {"kill", "--dry-run", "--dport", "443"},
		{"arm", "--dport", "443", "--behind", "aws-nlb"},
	} {
		for _, o := range []string{"table", "json", "ndjson", "prom"} {
			if o == "prom" && args[0] != "audit" {
				continue
			}
			for _, after := range []int{0, 1, 700} {
				where := fmt.Sprintf("%s -o %s, interrupted after %d sockets", strings.Join(args, " "), o, after)
				socks := mixed(1500)
				for i := range socks {
					if args[0] == "arm" {
						socks[i].Inode = 0 // owned by no process on this host (see TestOneTypeOneKeySet)
					}
				}
				k := fakeNS(t, socks...)
				ctx, cancel := context.WithCancel(context.Background())
				k.Pace = func(n int) {
					if n == after {
						cancel()
					}
				}
				r := runCLI(t, func(e *env) { withKernel(k)(e); e.ctx = ctx }, append(args, "-o", o)...)
				cancel()
				if r.code != exitInterrupted {
					t.Errorf("%s: exit %d, want %d: %s", where, r.code, exitInterrupted, r.stderr)
				}
				wholeOutput(t, where, o, r.stdout, true)
				if args[0] == "kill" && !slices.Contains(args, "--dry-run") && len(k.Destroyed()) > after {
					t.Errorf("%s: %d closed, more than the sockets seen", where, len(k.Destroyed()))
				}
			}
		}
	}
}

// wholeOutput checks that out is whole records in format o and ends with a
// summary whose "interrupted" is interrupted.
func wholeOutput(t *testing.T, where, o, out string, interrupted bool) {
	t.Helper()
	switch o {
	case "ndjson":
		recs := records(t, out, "")
		last := recs[len(recs)-1]
		if !strings.HasSuffix(last["type"].(string), "_summary") || last["interrupted"] != interrupted {
			t.Errorf("%s: last record %v, want a summary with interrupted %v", where, last, interrupted)
		}
	case "json":
		doc := decode(t, out)
		if s, _ := doc["summary"].(map[string]any); s["interrupted"] != interrupted {
			t.Errorf("%s: summary %v, want interrupted %v", where, s, interrupted)
		}
	case "prom":
		want := regexp.MustCompile(`(?m)^tcpkeep_audit_success\{netns="[^"]*"\} 1$`)
		if interrupted {
			want = regexp.MustCompile(`(?m)^tcpkeep_audit_success\{netns="[^"]*"\} 0$`)
		}
		if !want.MatchString(out) || !strings.HasSuffix(out, "\n") {
			t.Errorf("%s: metrics without %q:\n%s", where, want, out)
		}
	case "table":
		wholeTable(t, where, out)
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if got := strings.Contains(lines[len(lines)-1], "interrupted"); got != interrupted {
			t.Errorf("%s: the last line %q says interrupted %v, want %v", where, lines[len(lines)-1], got, interrupted)
		}
	}
}

// wholeTable checks that every row of a table is whole: each of its header's
// columns starts with a cell, after two spaces, and no line ends in spaces.
func wholeTable(t *testing.T, where, out string) {
	t.Helper()
	if !strings.HasSuffix(out, "\n") {
		t.Errorf("%s: the table does not end with a line's end", where)
	}
	var starts []int
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if strings.HasSuffix(l, " ") {
			t.Errorf("%s: line ends in spaces: %q", where, l)
		}
		switch {
		case strings.HasPrefix(l, "STATE ") || strings.HasPrefix(l, "RESULT "):
			starts = starts[:0]
			for i := range l {
				if i > 0 && l[i] != ' ' && l[i-1] == ' ' {
					starts = append(starts, i)
				}
			}
		case starts == nil || l == "" || strings.HasPrefix(l, "  "):
		case strings.Contains(l, "sockets") || strings.Contains(l, "socket:") || strings.Contains(l, "netns "):
			starts = nil // the summary: the table is over
		default:
			r := []rune(l)
			for _, s := range starts {
				if s >= len(r) || r[s] == ' ' || r[s-1] != ' ' || r[s-2] != ' ' {
					t.Errorf("%s: row %q is not whole under its header", where, l)
					break
				}
			}
		}
	}
}

// TestSameSocketInEveryTable: conns' and kill's tables show a socket the same
// way: a listener's peer as ADDR:*, no idle time for a listener.
func TestSameSocketInEveryTable(t *testing.T) {
	k := fakeNS(t, mixed(0)...)
	conns := runCLI(t, withKernel(k), "conns", "--state", "all").stdout
	kill := runCLI(t, withKernel(k), "kill", "--dry-run", "--state", "all,listening").stdout
	wholeTable(t, "conns", conns)
	wholeTable(t, "kill", kill)
	for _, want := range []string{"0.0.0.0:8080  0.0.0.0:*", "[fd00::1]:40005  [fd00::9]:443  2h", "10.0.0.1:40001   10.0.0.9:443"} {
		if !strings.Contains(conns, want) && !strings.Contains(strings.Join(strings.Fields(conns), " "), strings.Join(strings.Fields(want), " ")) {
			t.Errorf("conns lacks %q:\n%s", want, conns)
		}
	}
	fields := func(table, local string) []string {
		for _, l := range strings.Split(table, "\n") {
			if f := strings.Fields(l); slices.Contains(f, local) {
				i := slices.Index(f, local)
				return f[i : i+3] // LOCAL, REMOTE, IDLE
			}
		}
		return nil
	}
	for _, local := range []string{"0.0.0.0:8080", "10.0.0.1:40001", "[fd00::1]:40005"} {
		c, kk := fields(conns, local), fields(kill, local)
		if c == nil || !slices.Equal(c, kk) {
			t.Errorf("%s: conns shows %q, kill %q", local, c, kk)
		}
	}
	if c := fields(conns, "0.0.0.0:8080"); c == nil || c[1] != "0.0.0.0:*" || c[2] != "-" {
		t.Errorf("listener shown as %q, want 0.0.0.0:* and no idle time", c)
	}
}

// TestKillClosesWhatItSelects: against the fake, kill closes exactly the
// selected sockets and says so; a refusal that holds for all stops the run.
func TestKillClosesWhatItSelects(t *testing.T) {
	k := fakeNS(t, mixed(3)...)
	r := runCLI(t, withKernel(k), "kill", "--finding", "idle_no_keepalive", "-o", "ndjson")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	acts := ofType(records(t, r.stdout, "self"), "action")
	if len(acts) != 5 || len(k.Destroyed()) != 5 {
		t.Fatalf("%d actions, %d destroyed; want the 5 idle connections without keepalive:\n%s", len(acts), len(k.Destroyed()), r.stdout)
	}
	for _, a := range acts {
		if a["result"] != "closed" || !strings.Contains(a["message"].(string), "over --max-idle 10m") || strings.Contains(a["message"].(string), "--sockopts") {
			t.Errorf("action %v", a)
		}
	}
	k = fakeNS(t, mixed(3)...)
	k.DestroyErr = fmt.Errorf("destroy: %w", errPermission)
	r = runCLI(t, withKernel(k), "kill", "--dport", "443")
	if r.code != exitError || !strings.Contains(r.stderr, "nothing else was tried") || !strings.Contains(r.stderr, "CAP_NET_ADMIN") {
		t.Errorf("a refused destroy: exit %d, %q", r.code, r.stderr)
	}
	k = fakeNS(t, mixed(3)...)
	k.DestroyErr = fmt.Errorf("destroy: %w", diag.ErrDestroyUnsupported)
	r = runCLI(t, withKernel(k), "kill", "--dport", "443")
	if r.code != exitError || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, "CONFIG_INET_DIAG_DESTROY") || !strings.Contains(r.stderr, "kill --via-owner") {
		t.Errorf("a kernel that cannot destroy: exit %d, %q; want one line suggesting --via-owner", r.code, r.stderr)
	}
}

// errPermission is what the kernel answers a destroy without CAP_NET_ADMIN.
var errPermission = syscall.EPERM
