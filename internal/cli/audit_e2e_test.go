package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/tcpkeep/tcpkeep/internal/testnet"
)

// promtool checks prom output with Prometheus's own linter.
func promtool(t *testing.T, metrics []byte) {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("TCPKEEP_REQUIRE_ROOT") == "1" {
			t.Fatal("promtool checks the prom output: apt-get install prometheus (make test-deps does)")
		}
		t.Skip("promtool not installed (Debian package prometheus)")
	}
	cmd := exec.Command(path, "check", "metrics")
	cmd.Stdin = strings.NewReader(string(metrics))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s\n--- metrics:\n%s", err, out, metrics)
	}
}

// promValue finds the sample of metric name with these label pairs (and
// maybe others) in text-format metrics.
func promValue(t *testing.T, metrics []byte, name string, labels ...string) (float64, bool) {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(metrics))
	if err != nil {
		t.Fatalf("parse metrics: %v\n%s", err, metrics)
	}
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for i := 0; i+1 < len(labels); i += 2 {
			if have[labels[i]] != labels[i+1] {
				continue next
			}
		}
		if g := m.GetGauge(); g != nil {
			return g.GetValue(), true
		}
		return m.GetCounter().GetValue(), true
	}
	return 0, false
}

func TestAuditEndToEnd(t *testing.T) {
	ns := testnet.NewNS(t) // fresh: tcp_keepalive_time is the 7200 s default
	audit := func(args ...string) (string, string, int) {
		r := runBin(t, append([]string{"--netns", ns.Name, "audit"}, args...)...)
		return r.stdout, r.stderr, r.code
	}

	// A healthy connection with keepalive, present throughout.
	l := ns.Listen("127.0.0.1:7000")
	go acceptAll(l)
	ns.Dial("127.0.0.1:7000", testnet.Keepalive(30*time.Second, 5*time.Second, 3))

	// 1. The default tunables: a warning, exit 1; not with --fail-on critical.
	out, _, code := audit()
	if code != 1 || !strings.Contains(out, "WARNING sysctl_keepalive_default (1)") || !strings.Contains(out, "worst warning") {
		t.Fatalf("fresh namespace: exit %d, want 1 with sysctl_keepalive_default:\n%s", code, out)
	}
	if _, _, code := audit("--fail-on", "critical"); code != 0 {
		t.Fatalf("--fail-on critical with a warning: exit %d, want 0", code)
	}

	// 2. Tuned: all is well, exit 0, one line.
	ns.Sysctl("net/ipv4/tcp_keepalive_time", "120")
	out, errOut, code := audit()
	if code != 0 || !strings.HasPrefix(out, "All is well: ") || strings.Count(out, "\n") != 1 || errOut != "" {
		t.Fatalf("tuned, healthy: exit %d, want 0 and one line:\n%s%s", code, out, errOut)
	}
	out, _, _ = audit("-o", "ndjson")
	recs := records(t, out, ns.Name)
	if len(recs) != 1 || recs[0]["type"] != "audit_summary" || recs[0]["worst"] != "none" || recs[0]["interrupted"] != false {
		t.Fatalf("healthy ndjson: %v, want only a summary with worst none", recs)
	}

	// 3. An idle connection without keepalive: a warning with its owner, exit 1.
	c := ns.Dial("127.0.0.1:7000")
	cookie := sprintf16(testnet.Cookie(t, c))
	// Owners are looked up for flagged sockets only, with one scan of /proc:
	// seconds on a machine with half a million descriptors open.
	var finding map[string]any
	if !testnet.Poll(20*time.Second, func() bool {
		out, _, code = audit("--max-idle", "1s", "-o", "ndjson")
		recs = records(t, out, ns.Name)
		for _, r := range recs {
			if r["type"] == "finding" && r["code"] == "idle_no_keepalive" {
				finding = r
			}
		}
		return finding != nil
	}) {
		t.Fatalf("no idle_no_keepalive after 20s:\n%s", out)
	}
	if code != 1 {
		t.Errorf("idle_no_keepalive: exit %d, want 1", code)
	}
	sock, _ := finding["socket"].(map[string]any)
	if finding["severity"] != "warning" || sock == nil || sock["cookie"] != cookie || sock["state"] != "ESTABLISHED" || sock["keepalive"] != false {
		t.Errorf("finding %v, want a warning about cookie %s", finding, cookie)
	}
	if pid, _ := sock["pid"].(float64); int(pid) != os.Getpid() {
		t.Errorf("finding's socket pid %v, want this process %d", sock["pid"], os.Getpid())
	}
	// --sockopts: the owner's real options ride along.
	out, _, _ = audit("--max-idle", "1s", "-o", "ndjson", "--sockopts")
	var withOpts map[string]any
	for _, r := range records(t, out, ns.Name) {
		if r["code"] == "idle_no_keepalive" {
			withOpts, _ = r["socket"].(map[string]any)
		}
	}
	if withOpts == nil || withOpts["so_keepalive"] != false || withOpts["keepidle_s"] != 120.0 {
		t.Errorf("--sockopts: finding's socket %v, want so_keepalive false and keepidle_s 120 (the namespace's)", withOpts)
	}
	sum := recs[len(recs)-1]
	if sum["type"] != "audit_summary" || sum["worst"] != "warning" {
		t.Fatalf("last record %v, want the summary", sum)
	}
	if f, _ := sum["findings"].(map[string]any); f["idle_no_keepalive"] != 1.0 {
		t.Errorf("summary findings %v, want idle_no_keepalive: 1", sum["findings"])
	}
	if bs, _ := sum["by_state"].(map[string]any); bs["LISTEN"] != 1.0 || bs["ESTABLISHED"] != 4.0 {
		t.Errorf("summary by_state %v, want 1 LISTEN and 4 ESTABLISHED", sum["by_state"])
	}
	if n, _ := sum["sockets"].(float64); n != 5 {
		t.Errorf("summary sockets %v, want 5", sum["sockets"])
	}
	if _, ok := sum["duration_ms"].(float64); !ok {
		t.Errorf("summary without duration_ms: %v", sum)
	}
	// The filters apply: the clients of port 7000 include the idle one; the
	// server ends do not.
	if _, _, code := audit("--max-idle", "1s", "--dport", "7000"); code != 1 {
		t.Errorf("--dport 7000: exit %d, want 1 (the idle client is in)", code)
	}
	if out, _, code := audit("--max-idle", "1s", "--sport", "7000"); code != 0 {
		t.Errorf("--sport 7000: exit %d, want 0 (only the server ends, which Go gives keepalive):\n%s", code, out)
	}

	// 4. A full accept queue: critical, exit 2; -o json is one document.
	ns.ListenBacklog(7001, 1)
	ns.Dial("127.0.0.1:7001")
	out, _, code = audit("-o", "json")
	if code != 2 {
		t.Errorf("full accept queue: exit %d, want 2:\n%s", code, out)
	}
	var doc struct {
		Type     string           `json:"type"`
		NetNS    string           `json:"netns"`
		Findings []map[string]any `json:"findings"`
		Summary  map[string]any   `json:"summary"`
		Tunables map[string]any   `json:"tunables"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("-o json: %v\n%s", err, out)
	}
	var full map[string]any
	for _, f := range doc.Findings {
		if f["code"] == "listen_queue_full" {
			full = f
		}
	}
	if full == nil || full["severity"] != "critical" || doc.Summary["worst"] != "critical" || doc.NetNS != ns.Name {
		t.Errorf("-o json: no critical listen_queue_full, or worst %v: %s", doc.Summary["worst"], out)
	}
	if doc.Tunables["keepalive_time_s"] != 120.0 || doc.Tunables["keepalive_probes"] != 9.0 {
		t.Errorf("tunables %v, want keepalive_time_s 120", doc.Tunables)
	}
	// The table: critical first, then warnings, then the summary line.
	out, _, code = audit("--max-idle", "1s")
	// (The connection waiting in the full queue may have idled past 1s by now:
	// both its ends are then flagged too.)
	crit, warn := strings.Index(out, "CRITICAL listen_queue_full (1)\n"), strings.Index(out, "WARNING idle_no_keepalive (")
	if code != 2 || crit < 0 || warn < crit || !strings.Contains(out, " (1 critical, ") || !strings.Contains(out, " warning), worst critical (took ") {
		t.Errorf("table: exit %d, want 2, the critical group before the warning and a summary:\n%s", code, out)
	}
	if _, _, code := audit("--fail-on", "critical", "--state", "established"); code != 0 {
		t.Errorf("--state established leaves the listener out: exit %d, want 0", code)
	}

	// 5. prom: promtool accepts it, on stdout and through --prom-file.
	out, _, code = audit("-o", "prom")
	if code != 2 {
		t.Errorf("-o prom: exit %d, want 2", code)
	}
	promtool(t, []byte(out))
	for _, want := range []struct {
		name   string
		labels []string
		v      float64
	}{
		{"tcpkeep_sockets", []string{"state", "LISTEN"}, 2},
		{"tcpkeep_findings", []string{"code", "listen_queue_full", "severity", "critical"}, 1},
		{"tcpkeep_findings", []string{"code", "half_open_keepalive", "severity", "critical"}, 0},
		{"tcpkeep_keepalive_time_seconds", nil, 120},
		{"tcpkeep_audit_success", nil, 1},
		{"tcpkeep_worst_severity", nil, 3},
	} {
		if v, ok := promValue(t, []byte(out), want.name, append([]string{"netns", ns.Name}, want.labels...)...); !ok || v != want.v {
			t.Errorf("prom output: %s%v = %v (found %v), want %v:\n%s", want.name, want.labels, v, ok, want.v, out)
		}
	}
	if !strings.Contains(out, "# TYPE tcpkeep_sockets gauge\n") || !strings.Contains(out, "tcpkeep_audit_duration_seconds{") || !strings.Contains(out, "tcpkeep_build_info{") {
		t.Errorf("prom output lacks a TYPE line, the duration or the build info:\n%s", out)
	}

	// 6. nagios: the plugin's status line, with audit's exit code.
	out, _, code = audit("-o", "nagios")
	if code != 2 || !strings.HasPrefix(out, "TCPKEEP CRITICAL - netns "+ns.Name+": ") || strings.Count(out, "\n") != 1 ||
		!strings.Contains(out, "listen_queue_full 1") || !strings.Contains(out, " | 'findings_critical'=1;;;0 ") ||
		!strings.Contains(out, " 'half_open_keepalive'=0;;;0 ") || !strings.Contains(out, " 'sockets_listen'=2;;;0 ") {
		t.Errorf("-o nagios: exit %d, want 2 and one CRITICAL line with performance data: %q", code, out)
	}
	if out, _, code = audit("-o", "nagios", "--state", "established", "--fail-on", "critical"); code != 0 || !strings.HasPrefix(out, "TCPKEEP OK - ") {
		t.Errorf("-o nagios below --fail-on: exit %d, want 0 and OK: %q", code, out)
	}
	if r := runBin(t, "--netns", "tk-does-not-exist", "audit", "-o", "nagios"); r.code != 3 || !strings.HasPrefix(r.stdout, "TCPKEEP UNKNOWN - netns tk-does-not-exist: no such network namespace") {
		t.Errorf("-o nagios, no namespace: exit %d, want 3 and UNKNOWN on stdout: %q", r.code, r.stdout)
	}
	dir := t.TempDir()
	pf := filepath.Join(dir, "tcpkeep.prom")
	out, _, code = audit("--prom-file", pf, "-o", "ndjson")
	if code != 2 || !strings.Contains(out, `"type":"audit_summary"`) {
		t.Errorf("--prom-file with -o ndjson: exit %d, stdout %q", code, out)
	}
	b, err := os.ReadFile(pf)
	if err != nil {
		t.Fatal(err)
	}
	promtool(t, b)
	if st, _ := os.Stat(pf); st.Mode().Perm() != 0o644 {
		t.Errorf("%s mode %v, want 0644 (node_exporter reads it)", pf, st.Mode())
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("%s holds %d files, want only tcpkeep.prom (no temporary left)", dir, len(ents))
	}
}

func TestAuditCannotAuditExits3(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown flag", []string{"audit", "--max-idel", "5m"}, "unknown flag: --max-idel"},
		{"bad duration", []string{"audit", "--max-idle", "5 minutes"}, "--max-idle"},
		{"zero max-idle", []string{"audit", "--max-idle", "0"}, `"--max-idle" flag: "0": want at least 1ms`},
		{"bad fail-on", []string{"audit", "--fail-on", "error"}, "--fail-on \"error\": want info, warning or critical"},
		{"bad retrans threshold", []string{"audit", "--retrans-threshold", "0"}, "--retrans-threshold"},
		{"bad output", []string{"-o", "yaml", "audit"}, `-o "yaml": this command writes table, json, ndjson, prom or nagios`},
		{"bad state", []string{"audit", "--state", "establish"}, "--state"},
		{"stray argument", []string{"audit", "now"}, `unexpected argument "now"`},
		{"no such namespace", []string{"--netns", "tk-does-not-exist", "audit"}, "no such network namespace"},
		{"prom-file in a missing directory", []string{"audit", "--prom-file", "/nonexistent/dir/x.prom"}, "--prom-file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runBin(t, tc.args...)
			out, errOut, code := r.stdout, r.stderr, r.code
			if code != 3 {
				t.Fatalf("exit %d, want 3 (could not audit); stdout %q stderr %q", code, out, errOut)
			}
			if !strings.HasPrefix(errOut, "tcpkeep: ") || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, tc.want) {
				t.Fatalf("stderr %q, want one line `tcpkeep: ...` with %q", errOut, tc.want)
			}
		})
	}
	// A failed audit still tells node_exporter so.
	pf := filepath.Join(t.TempDir(), "tcpkeep.prom")
	if r := runBin(t, "--netns", "tk-does-not-exist", "audit", "--prom-file", pf); r.code != 3 {
		t.Fatalf("failed audit with --prom-file: exit %d, want 3", r.code)
	}
	b, err := os.ReadFile(pf)
	if v, ok := promValue(t, b, "tcpkeep_audit_success", "netns", "tk-does-not-exist"); err != nil || !ok || v != 0 {
		t.Fatalf("failed audit: %s holds %q (%v), want tcpkeep_audit_success 0", pf, b, err)
	}
	promtool(t, b)

	// -h is help, not a failure.
	r := runBin(t, "audit", "-h")
	out, code := r.stdout, r.code
	if code != 0 || !strings.Contains(out, "*/5 * * * *") || !strings.Contains(out, "--fail-on") {
		t.Fatalf("audit -h: exit %d, want 0 and the help with a cron line:\n%s", code, out)
	}
}
