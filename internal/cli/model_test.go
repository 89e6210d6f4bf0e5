package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tcpkeep/tcpkeep/internal/report"
	"github.com/tcpkeep/tcpkeep/probe"
	"github.com/tcpkeep/tcpkeep/sysctl"
)

// The commands around sysctl's model of the kernel's clocks, on a namespace in
// memory: the kernel is not the subject here (internal/audit's timing suite
// lets it happen).

func TestSysctlRecommendHeartbeatAndMiddleboxes(t *testing.T) {
	fake := withKernel(fakeNS(t))
	file := writeFile(t, "# ours\nedge-fw 60 our firewall policy\naws-nlb 600 our listeners\n")
	r := runCLI(t, fake, "sysctl", "recommend", "--behind", "edge-fw", "--middleboxes", file, "--heartbeat", "20s", "-o", "json")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	m := decode(t, r.stdout)
	// 60 s less an eighth: 52 s at most; just above a 20 s heartbeat: 23 s.
	for k, want := range map[string]any{"path_idle_timeout_s": 60.0, "path": "edge-fw", "path_default": false, "keepalive_time_s": 23.0,
		"heartbeat_ms": 20000.0, "user_timeout_ms": 23000.0 + 5*2000.0} {
		if m[k] != want {
			t.Errorf("%s = %v, want %v", k, m[k], want)
		}
	}
	if !strings.Contains(m["reason"].(string), "stays out of its way") {
		t.Errorf("record %s", r.stdout)
	}
	// The file overrides a default; the built-in default says it is one.
	r = runCLI(t, fake, "sysctl", "recommend", "--behind", "aws-nlb", "--middleboxes", file, "-o", "json")
	if m := decode(t, r.stdout); m["path_idle_timeout_s"] != 600.0 || m["path_default"] != false {
		t.Errorf("aws-nlb from the file: %s", r.stdout)
	}
	r = runCLI(t, fake, "sysctl", "recommend", "--behind", "aws-nlb", "-o", "json")
	if m := decode(t, r.stdout); m["path_default"] != true || m["path"] != "aws-nlb" {
		t.Errorf("aws-nlb built in: %s", r.stdout)
	}
	r = runCLI(t, fake, "sysctl", "recommend", "--behind", "aws-nlb")
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
		{[]string{"--heartbeat", "0"}, "want at least 1ms"},
	} {
		r := runCLI(t, fake, append([]string{"sysctl", "recommend"}, tc.args...)...)
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
	k := fakeNS(t)
	for name, v := range map[string]string{sysctl.FileTime: "2", sysctl.FileIntvl: "6", sysctl.FileProbes: "3"} {
		if err := os.WriteFile(filepath.Join(string(k.Sys), name), []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r := runCLI(t, withKernel(k), "sysctl")
	for _, want := range []string{"dropped 24s after its last answer (max(2s idle, 6s interval) + 3 x 6s)", "|-----------o-----------o-----------o-----------X", "after the first retransmission"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("table lacks %q:\n%s", want, r.stdout)
		}
	}
	if m := decode(t, runCLI(t, withKernel(k), "sysctl", "-o", "json").stdout); m["dead_peer_detect_s"] != 24.0 {
		t.Errorf("dead_peer_detect_s %v, want 24", m["dead_peer_detect_s"])
	}
}

// probe idle suggests only what recommend accepts, and recommend takes what
// it suggests.
func TestRecommendForAMeasuredPath(t *testing.T) {
	for _, tc := range []struct {
		path string
		want bool
	}{{"0s", false}, {"1s", false}, {"1900ms", false}, {"2s", true}, {"350s", true}} {
		d, err := sysctl.ParseDuration(tc.path)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := report.RecommendCommand("", d)
		if ok != tc.want {
			t.Errorf("RecommendCommand(%v) = %q, %v; want a command: %v", d, got, ok, tc.want)
			continue
		}
		if ok {
			r := runCLI(t, withKernel(fakeNS(t)), strings.Fields(got)[1:]...)
			if r.code != 0 {
				t.Errorf("%s: exit %d: %s", got, r.code, r.stderr)
			}
		}
	}
}

// When no idle period died, probe idle says there is no timeout up to --max
// and suggests nothing: --max is not the path's timeout. Over loopback in
// tcpkeep's own namespace: no root needed.
func TestProbeIdleNothingDied(t *testing.T) {
	l, err := probe.Listen(nil, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- (&probe.Server{}).Serve(ctx, l) }()
	defer func() { cancel(); <-done }()
	for _, out := range []string{"ndjson", "table"} {
		r := runCLI(t, nil, "-o", out, "probe", "idle", l.Addr().String(), "--min", "1s", "--max", "1s", "--resolution", "1s", "--timeout", "1s")
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
