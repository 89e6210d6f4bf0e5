package report

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/tcpkeep/tcpkeep/diag"
	"github.com/tcpkeep/tcpkeep/internal/audit"
	"github.com/tcpkeep/tcpkeep/internal/kill"
	"github.com/tcpkeep/tcpkeep/internal/watch"
	"github.com/tcpkeep/tcpkeep/sysctl"
)

// testSummary is an audit that found one half-open connection among three
// sockets.
func testSummary() *audit.Summary {
	s := &audit.Summary{Findings: map[audit.Code]*[audit.Critical + 1]int{audit.HalfOpenKeepalive: {audit.Critical: 1}}, Worst: audit.Critical, Duration: 1500 * time.Microsecond}
	s.Counts.Sockets = 3
	s.Counts.ByState[diag.StateEstablished] = 2
	s.Counts.ByState[diag.StateListen] = 1
	return s
}

func testTunables() *sysctl.Tunables {
	r2, ct := 15, 5*24*time.Hour
	return &sysctl.Tunables{Keepalive: sysctl.Keepalive{Time: 7200 * time.Second, Intvl: 75 * time.Second, Probes: 9}, Retries2: &r2, ConntrackEstablished: &ct}
}

// metricsOf is what m writes in the text format.
func metricsOf(t *testing.T, m *Metrics) string {
	t.Helper()
	var b bytes.Buffer
	if err := m.Write(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestMetricsLint: every metric, gauges and counters with samples, passes
// Prometheus's own linter (promlint, which promtool check metrics runs).
func TestMetricsLint(t *testing.T) {
	m := NewMetrics(BuildInfo{Version: "v1.2.3", Commit: "abc", GoVersion: "go1.26"})
	m.Watching("web")
	m.Audited("web", time.Unix(1700000000, 0), testTunables(), testSummary())
	m.Audited("db", time.Unix(1700000000, 0), nil, nil)
	m.Opened("web", audit.HalfOpenKeepalive, audit.Critical)
	m.Resolved("web", audit.HalfOpenKeepalive, "closed")
	m.Ended("web", audit.EndKeepalive)
	m.Ended("web", audit.EndClosed) // not a kernel drop: not counted
	m.Lost("web", 12)
	out := metricsOf(t, m)
	problems, err := promlint.New(strings.NewReader(out)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	for _, want := range []string{
		`tcpkeep_build_info{commit="abc",goversion="go1.26",version="v1.2.3"} 1`,
		`tcpkeep_findings{code="half_open_keepalive",netns="web",severity="critical"} 1`,
		`tcpkeep_findings{code="listen_queue_full",netns="web",severity="warning"} 0`,
		`tcpkeep_sockets{netns="web",state="ESTABLISHED"} 2`,
		`tcpkeep_sockets{netns="web",state="CLOSING"} 0`,
		`tcpkeep_worst_severity{netns="web"} 3`,
		`tcpkeep_tcp_retries2{netns="web"} 15`,
		`tcpkeep_conntrack_established_timeout_seconds{netns="web"} 432000`,
		`tcpkeep_dead_peer_detect_seconds{netns="web"} 7875`,
		`tcpkeep_audit_success{netns="web"} 1`,
		`tcpkeep_audit_success{netns="db"} 0`,
		`tcpkeep_audit_timestamp_seconds{netns="db"} 1.7e+09`,
		`tcpkeep_audit_duration_seconds{netns="web"} 0.0015`,
		`tcpkeep_findings_opened_total{code="half_open_keepalive",netns="web",severity="critical"} 1`,
		`tcpkeep_findings_resolved_total{code="half_open_keepalive",how="closed",netns="web"} 1`,
		`tcpkeep_kernel_drops_total{cause="keepalive",netns="web"} 1`,
		`tcpkeep_kernel_drops_total{cause="retransmit",netns="web"} 0`,
		`tcpkeep_destroy_broadcasts_lost_total{netns="web"} 12`,
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(out, `tcpkeep_sockets{netns="db"`) || strings.Contains(out, `cause="closed"`) {
		t.Errorf("a failed audit has socket gauges, or a close counts as a drop:\n%s", out)
	}

	// A namespace that is gone leaves no series behind.
	m.Forget("web")
	if out := metricsOf(t, m); strings.Contains(out, `netns="web"`) {
		t.Errorf("series of a forgotten namespace remain:\n%s", out)
	}
}

// TestMetricsFile: the textfile is written whole, readable by node_exporter
// (0644), and leaves no temporary file; a directory that is not there fails.
func TestMetricsFile(t *testing.T) {
	m := NewMetrics(BuildInfo{Version: "v1", Commit: "c", GoVersion: "go"})
	m.SetAudit(PromAudit{NetNS: "self", Start: time.Unix(1, 0), Tunables: testTunables(), Summary: testSummary()})
	dir := t.TempDir()
	path := filepath.Join(dir, "tcpkeep.prom")
	for range 2 {
		if err := m.WriteFile(path); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil || string(b) != metricsOf(t, m) {
		t.Fatalf("file %q (%v), want what Write writes", b, err)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644", st.Mode())
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("%d files in the directory, want 1", len(ents))
	}
	if err := m.WriteFile(filepath.Join(dir, "missing", "x.prom")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a missing directory: %v", err)
	}
}

// TestNagios: the plugin's status line: the status of audit's exit code,
// the findings added up over the namespaces, and performance data with every
// severity, code and state, 0 included.
func TestNagios(t *testing.T) {
	one := &Total{}
	one.AddAudit(testSummary())
	two := &Total{Namespaces: 2}
	two.AddAudit(testSummary())
	two.AddAudit(&audit.Summary{Findings: map[audit.Code]*[audit.Critical + 1]int{audit.IdleNoKeepalive: {audit.Warning: 2}}, Worst: audit.Warning})
	for _, tc := range []struct {
		code int
		all  bool
		t    *Total
		why  string
		want string
	}{
		{2, false, one, "", "TCPKEEP CRITICAL - netns web: 1 finding (1 critical) in 3 sockets: half_open_keepalive 1 | 'findings_critical'=1;;;0 'findings_warning'=0;;;0 "},
		{2, true, two, "", "TCPKEEP CRITICAL - 2 namespaces: 3 findings (1 critical, 2 warning) in 3 sockets: half_open_keepalive 1, idle_no_keepalive 2 | 'findings_critical'=1;;;0 'findings_warning'=2;;;0 "},
		{0, false, &Total{}, "", "TCPKEEP OK - netns web: no findings in 0 sockets and the keepalive tunables | "},
		{3, false, &Total{}, "netns web | gone:\nreally", "TCPKEEP UNKNOWN - netns web / gone: really | 'findings_critical'=0;;;0 "},
		{3, true, two, "netns x: not read", "TCPKEEP UNKNOWN - 2 namespaces: 3 findings (1 critical, 2 warning) in 3 sockets: half_open_keepalive 1, idle_no_keepalive 2; netns x: not read | "},
		{130, false, one, "interrupted", "TCPKEEP UNKNOWN - netns web: 1 finding"},
	} {
		got := string(AppendNagios(nil, tc.code, "web", tc.all, tc.t, 1500*time.Millisecond, tc.why))
		if !strings.HasPrefix(got, tc.want) || strings.Count(got, "\n") != 1 || !strings.HasSuffix(got, " 'duration'=1.500s;;;0\n") {
			t.Errorf("got  %q\nwant %q...", got, tc.want)
		}
		for _, p := range []string{" 'zero_window_stall'=", " 'sysctl_keepalive_after_conntrack'=", " 'sockets_established'=", " 'sockets_closing'="} {
			if !strings.Contains(got, p) {
				t.Errorf("%q lacks %s", got, p)
			}
		}
	}
}

// TestEvents: watch's events are audit's finding records plus event, how,
// end and open_ms, and kill's action records.
func TestEvents(t *testing.T) {
	var b bytes.Buffer
	w := NewEventWriter(&b, "web-1", Words{Sockopts: true, Remedy: true})
	f := &audit.Finding{Code: audit.HalfOpenKeepalive, Severity: audit.Critical, Socket: established(), Count: 2, Value: 4 * time.Second,
		Keepalive: sysctl.Keepalive{Time: time.Second, Intvl: time.Second, Probes: 3}, DropIn: time.Second, DropBy: sysctl.DropKeepaliveProbes, Remedy: audit.RemedyClose}
	ts := testMeta.TS
	for _, ev := range []*watch.Event{
		{Kind: watch.Opened, Time: ts, NetNS: "tk-test", Finding: f},
		{Kind: watch.Resolved, Time: ts, NetNS: "tk-test", Finding: f, How: watch.HowClosed, End: audit.EndKeepalive, Open: 3 * time.Second},
		{Kind: watch.Resolved, Time: ts, NetNS: "tk-test", Finding: f, How: watch.HowCleared, Open: time.Second},
		{Kind: watch.Acted, Time: ts, NetNS: "tk-test", Action: &kill.Action{Socket: established(), Reason: "half_open_keepalive", Finding: f, Result: kill.Closed}},
	} {
		if err := w.Event(ev); err != nil {
			t.Fatal(err)
		}
	}
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(lines) != 4 {
		t.Fatalf("%d lines, want 4:\n%s", len(lines), b.String())
	}
	want := []map[string]any{
		{"type": "finding", "event": "opened", "code": "half_open_keepalive", "severity": "critical", "remedy": "close"},
		{"type": "finding", "event": "resolved", "how": "closed", "end": "keepalive", "open_ms": 3000.0},
		{"type": "finding", "event": "resolved", "how": "cleared", "open_ms": 1000.0},
		{"type": "action", "reason": "half_open_keepalive", "result": "closed"},
	}
	for i, l := range lines {
		var r map[string]any
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("line %d: %v: %s", i, err, l)
		}
		for k, v := range want[i] {
			if r[k] != v {
				t.Errorf("line %d: %s = %v, want %v: %s", i, k, r[k], v, l)
			}
		}
		if r["ts"] != "2026-11-23T04:00:00Z" || r["host"] != "web-1" || r["netns"] != "tk-test" || r["socket"].(map[string]any)["cookie"] != "0000000000001f2e" {
			t.Errorf("line %d: header or socket wrong: %s", i, l)
		}
		if _, ok := r["end"]; i == 2 && ok {
			t.Errorf("cleared with an end: %s", l)
		}
		if _, ok := r["message"]; !ok {
			t.Errorf("line %d has no message: %s", i, l)
		}
	}
}
