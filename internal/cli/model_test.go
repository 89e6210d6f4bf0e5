package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tcpkeep/tcpkeep/diag"
	"github.com/tcpkeep/tcpkeep/internal/audit"
	"github.com/tcpkeep/tcpkeep/internal/netns"
	"github.com/tcpkeep/tcpkeep/internal/testnet"
	"github.com/tcpkeep/tcpkeep/probe"
	"github.com/tcpkeep/tcpkeep/sysctl"
)

// A finding that predicts a drop carries it as data beside its sentence.
func TestFindingRecordCarriesTheDrop(t *testing.T) {
	f := audit.Finding{Code: audit.HalfOpenKeepalive, Severity: audit.Critical, Message: "m",
		Socket: &diag.Socket{State: diag.StateEstablished}, DropIn: 4250 * time.Millisecond, DropBy: sysctl.DropUserTimeout}
	m := decode(t, "{"+string(appendFindingFields(nil, &f))+"}")
	if m["drop_in_ms"] != 4250.0 || m["drop_by"] != "user_timeout" {
		t.Fatalf("record %v: want drop_in_ms 4250 and drop_by user_timeout", m)
	}
	f.DropIn, f.DropBy = 0, sysctl.DropNone
	m = decode(t, "{"+string(appendFindingFields(nil, &f))+"}")
	if _, ok := m["drop_in_ms"]; ok {
		t.Fatalf("record %v: a finding without a predicted drop has no drop_in_ms", m)
	}
	if _, ok := m["drop_by"]; ok {
		t.Fatalf("record %v: a finding without a predicted drop has no drop_by", m)
	}
}

func TestSysctlRecommendHeartbeatAndMiddleboxes(t *testing.T) {
	ns := testnet.NewNS(t)
	file := filepath.Join(t.TempDir(), "middleboxes")
	if err := os.WriteFile(file, []byte("# ours\nedge-fw 60 our firewall policy\naws-nlb 600 our listeners\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := runCLI(t, nil, "--netns", ns.Name, "sysctl", "recommend", "--behind", "edge-fw", "--middleboxes", file, "--heartbeat", "20s", "-o", "json")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	m := decode(t, r.stdout)
	// 60 s less an eighth: 52 s at most; just above a 20 s heartbeat: 23 s.
	for k, want := range map[string]any{"path_idle_timeout_s": 60.0, "path": "edge-fw", "keepalive_time_s": 23.0, "heartbeat_ms": 20000.0, "user_timeout_ms": 23000.0 + 5*2000.0} {
		if m[k] != want {
			t.Errorf("%s = %v, want %v", k, m[k], want)
		}
	}
	if _, ok := m["path_default"]; ok || !strings.Contains(m["reason"].(string), "stays out of its way") {
		t.Errorf("record %s", r.stdout)
	}
	// The file overrides a default; the built-in default says it is one.
	r = runCLI(t, nil, "--netns", ns.Name, "sysctl", "recommend", "--behind", "aws-nlb", "--middleboxes", file, "-o", "json")
	if m := decode(t, r.stdout); m["path_idle_timeout_s"] != 600.0 {
		t.Errorf("aws-nlb from the file: %s", r.stdout)
	}
	r = runCLI(t, nil, "--netns", ns.Name, "sysctl", "recommend", "--behind", "aws-nlb")
	for _, want := range []string{"aws-nlb's 5m50s is its default (configurable from 1m to 1h40m)", "--path-idle-timeout D", "TCP_USER_TIMEOUT", "X dropped at", "! path forgets the flow at 5m50s (aws-nlb's default)"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("table lacks %q:\n%s", want, r.stdout)
		}
	}
	for _, tc := range []struct {
		args     []string
		mentions string
	}{
		{[]string{"--middleboxes", filepath.Join(t.TempDir(), "none")}, "no such file"},
		{[]string{"--middleboxes", writeFile(t, "fw 30\n")}, "line 1"},
		{[]string{"--behind", "edge-fw"}, "--middleboxes"},
		{[]string{"--heartbeat", "0"}, "positive"},
	} {
		r := runCLI(t, nil, append([]string{"--netns", ns.Name, "sysctl", "recommend"}, tc.args...)...)
		if r.code != exitUsage {
			t.Errorf("%q: exit %d, want %d (%s)", tc.args, r.code, exitUsage, r.stderr)
			continue
		}
		oneErrorLine(t, r, tc.mentions)
	}
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// The sysctl table states the model's figures and draws them.
func TestSysctlTableFollowsTheModel(t *testing.T) {
	ns := testnet.NewNS(t)
	ns.Sysctl(sysctl.FileTime, "2")
	ns.Sysctl(sysctl.FileIntvl, "6")
	ns.Sysctl(sysctl.FileProbes, "3")
	r := runCLI(t, nil, "--netns", ns.Name, "sysctl")
	for _, want := range []string{"dropped 24s after its last answer (max(2s idle, 6s interval) + 3 x 6s)", "|-----------o-----------o-----------o-----------X", "after the first retransmission"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("table lacks %q:\n%s", want, r.stdout)
		}
	}
	if m := decode(t, runCLI(t, nil, "--netns", ns.Name, "sysctl", "-o", "json").stdout); m["dead_peer_detect_s"] != 24.0 {
		t.Errorf("dead_peer_detect_s %v, want 24", m["dead_peer_detect_s"])
	}
}

// probe idle suggests only what recommend accepts.
func TestRecommendForAMeasuredPath(t *testing.T) {
	ns := netns.NS{Spec: "web"}
	for path, want := range map[time.Duration]string{
		0:                       "",
		time.Second:             "", // refused by recommend: no whole second fits
		1900 * time.Millisecond: "",
		2 * time.Second:         "tcpkeep --netns web sysctl recommend --path-idle-timeout 2s",
		350 * time.Second:       "tcpkeep --netns web sysctl recommend --path-idle-timeout 350s",
	} {
		got, ok := recommendFor(ns, path)
		if got != want || ok != (want != "") {
			t.Errorf("recommendFor(%v) = %q, %v; want %q", path, got, ok, want)
			continue
		}
		if ok {
			r := runCLI(t, nil, strings.Fields(got)[3:]...)
			if r.code != 0 {
				t.Errorf("%s: exit %d: %s", got, r.code, r.stderr)
			}
		}
	}
}

// When no idle period died, probe idle says there is no timeout up to --max
// and suggests nothing: --max is not the path's timeout.
func TestProbeIdleNothingDied(t *testing.T) {
	tns := testnet.NewNS(t)
	l, err := probe.Listen(tns.NetNS(), "127.0.0.1:7077")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- (&probe.Server{}).Serve(ctx, l) }()
	defer func() { cancel(); <-done }()
	for _, out := range []string{"ndjson", "table"} {
		r := runCLI(t, nil, "--netns", tns.Name, "-o", out, "probe", "idle", "127.0.0.1:7077", "--min", "1s", "--max", "1s", "--resolution", "1s", "--timeout", "1s")
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		if out == "table" {
			if !strings.Contains(r.stdout, "No timeout up to --max") || strings.Contains(r.stdout, "recommend") {
				t.Fatalf("table:\n%s", r.stdout)
			}
			continue
		}
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		m := decode(t, lines[len(lines)-1])
		if m["type"] != "path_idle" || m["survived_s"] != 1.0 {
			t.Fatalf("record %v", m)
		}
		for _, k := range []string{"path_idle_timeout_s", "died_s", "recommend"} {
			if _, ok := m[k]; ok {
				t.Errorf("record %v has %s: nothing died, so there is no timeout", m, k)
			}
		}
	}
}
