package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tcpkeep/tcpkeep/internal/netns"
	"github.com/tcpkeep/tcpkeep/internal/testnet"
	"github.com/tcpkeep/tcpkeep/sysctl"
)

// values reads a namespace's keepalive tunables as "time/intvl/probes".
func values(ns *testnet.NS) string {
	return ns.ReadSysctl(sysctl.FileTime) + "/" + ns.ReadSysctl(sysctl.FileIntvl) + "/" + ns.ReadSysctl(sysctl.FileProbes)
}

func hostValues(t *testing.T) sysctl.Keepalive {
	t.Helper()
	k, err := sysctl.Read(netns.Self())
	if err != nil {
		t.Fatal(err)
	}
	return k.Keepalive
}

func TestSysctlShowsAFreshNamespace(t *testing.T) {
	ns := testnet.NewNS(t)
	r := runCLI(t, nil, "--netns", ns.Name, "sysctl", "-o", "json")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	m := decode(t, r.stdout)
	for k, want := range map[string]any{"type": "sysctl", "netns": ns.Name, "keepalive_time_s": 7200.0, "keepalive_intvl_s": 75.0,
		"keepalive_probes": 9.0, "dead_peer_detect_s": 7875.0, "tcp_retries2": 15.0, "retrans_give_up_ms": 924400.0} {
		if m[k] != want {
			t.Errorf("%s = %v, want %v", k, m[k], want)
		}
	}
	for _, k := range []string{"ts", "host", "tcp_fin_timeout_s"} {
		if _, ok := m[k]; !ok {
			t.Errorf("no %s in %s", k, r.stdout)
		}
	}
	r = runCLI(t, nil, "--netns", ns.Name, "sysctl", "-o", "ndjson")
	if strings.Count(r.stdout, "\n") != 1 {
		t.Fatalf("ndjson is %d lines, want 1", strings.Count(r.stdout, "\n"))
	}
	r = runCLI(t, nil, "sysctl", "--netns", ns.Name)
	if !strings.Contains(r.stdout, "2h11m15s") || !strings.Contains(r.stdout, "Warning: tcp_keepalive_time is the kernel default") {
		t.Fatalf("table lacks the detection time or the default warning:\n%s", r.stdout)
	}
}

func TestSysctlSetChangesOnlyThatNamespace(t *testing.T) {
	ns := testnet.NewNS(t)
	host := hostValues(t)
	r := runCLI(t, nil, "--netns", ns.Name, "sysctl", "set", "--time", "1m", "--intvl", "10", "--probes", "5")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if got := values(ns); got != "60/10/5" {
		t.Fatalf("namespace has %s, want 60/10/5", got)
	}
	if hostValues(t) != host {
		t.Fatal("the host's values changed")
	}
	if !strings.Contains(r.stdout, "7200 -> 60") || !strings.Contains(r.stdout, "1m50s") {
		t.Fatalf("output does not show the change:\n%s", r.stdout)
	}
	// A partial set keeps the other values.
	r = runCLI(t, nil, "--netns", ns.Name, "sysctl", "set", "--probes", "3", "-o", "json")
	if r.code != 0 || values(ns) != "60/10/3" {
		t.Fatalf("exit %d, values %s, want 60/10/3: %s", r.code, values(ns), r.stderr)
	}
	m := decode(t, r.stdout)
	if m["type"] != "sysctl_set" || m["new"].(map[string]any)["dead_peer_detect_s"] != 90.0 || m["old"].(map[string]any)["keepalive_probes"] != 5.0 {
		t.Fatalf("record %s", r.stdout)
	}
}

func TestSysctlSetDryRunWritesNothing(t *testing.T) {
	ns := testnet.NewNS(t)
	path := filepath.Join(t.TempDir(), "90-tcpkeep.conf")
	r := runCLI(t, asHost, "--netns", ns.Name, "sysctl", "set", "--time", "60", "--persist="+path, "--dry-run")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if got := values(ns); got != "7200/75/9" {
		t.Fatalf("--dry-run changed the namespace to %s", got)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("--dry-run wrote %s", path)
	}
	if !strings.Contains(r.stdout, "would set") || !strings.Contains(r.stdout, "Nothing was written") {
		t.Fatalf("output:\n%s", r.stdout)
	}
}

func TestSysctlSetPersists(t *testing.T) {
	ns := testnet.NewNS(t)
	path := filepath.Join(t.TempDir(), "90-tcpkeep.conf")
	r := runCLI(t, asHost, "--netns", ns.Name, "sysctl", "set", "--time", "300", "--intvl", "30s", "--probes", "5", "--persist="+path)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	body := string(b)
	for _, want := range []string{"# Written by tcpkeep", "net.ipv4.tcp_keepalive_time = 300\n", "net.ipv4.tcp_keepalive_intvl = 30\n", "net.ipv4.tcp_keepalive_probes = 5\n"} {
		if !strings.Contains(body, want) {
			t.Errorf("persisted file lacks %q:\n%s", want, body)
		}
	}
	if got := values(ns); got != "300/30/5" {
		t.Fatalf("namespace has %s, want 300/30/5", got)
	}
}

// A persist that fails undoes the live write: nothing half done.
func TestSysctlSetPersistFailureRestoresTheLiveValues(t *testing.T) {
	ns := testnet.NewNS(t)
	path := filepath.Join(t.TempDir(), "no-such-dir", "90-tcpkeep.conf")
	r := runCLI(t, asHost, "--netns", ns.Name, "sysctl", "set", "--time", "300", "--persist="+path)
	if r.code != exitError {
		t.Fatalf("exit %d, want %d", r.code, exitError)
	}
	oneErrorLine(t, r, "live values were restored")
	if got := values(ns); got != "7200/75/9" {
		t.Fatalf("namespace has %s after a failed persist, want the old 7200/75/9", got)
	}
}

// The old values may lie outside tcpkeep's ranges (the kernel accepts a
// tcp_keepalive_time of 40000): undoing a failed persist puts them back anyway.
func TestSysctlPersistFailureRestoresValuesOutsideOurRange(t *testing.T) {
	ns := testnet.NewNS(t)
	ns.Sysctl(sysctl.FileTime, "40000")
	path := filepath.Join(t.TempDir(), "no-such-dir", "90-tcpkeep.conf")
	r := runCLI(t, asHost, "--netns", ns.Name, "sysctl", "set", "--time", "60", "--persist="+path)
	if r.code != exitError {
		t.Fatalf("exit %d, want %d", r.code, exitError)
	}
	oneErrorLine(t, r, "live values were restored")
	if got := values(ns); got != "40000/75/9" {
		t.Fatalf("namespace has %s after a failed persist, want the old 40000/75/9", got)
	}
}

func TestSysctlPersistRefusedOutsideTheHostNamespace(t *testing.T) {
	ns := testnet.NewNS(t)
	path := filepath.Join(t.TempDir(), "90-tcpkeep.conf")
	r := runCLI(t, nil, "--netns", ns.Name, "sysctl", "set", "--time", "300", "--persist="+path)
	if r.code != exitUsage {
		t.Fatalf("exit %d, want %d", r.code, exitUsage)
	}
	oneErrorLine(t, r, "not the host's namespace")
	if _, err := os.Stat(path); !os.IsNotExist(err) || values(ns) != "7200/75/9" {
		t.Fatal("a refused --persist wrote something")
	}
}

// TestSysctlSetRejectsBadInput: a value that cannot be set is refused before
// anything is read or written, with a line that says why; the fake namespace
// keeps its values.
func TestSysctlSetRejectsBadInput(t *testing.T) {
	for _, tc := range []struct {
		args     []string
		mentions string
	}{
		{[]string{"--time", "0"}, "--time"},
		{[]string{"--time=-1"}, "negative"},
		{[]string{"--time", "-1"}, "negative"},
		{[]string{"--time", "32768"}, "1 to 32767"},
		{[]string{"--intvl", "32768"}, "--intvl"},
		{[]string{"--probes", "128"}, "1 to 127"},
		{[]string{"--probes", "0"}, "--probes"},
		{[]string{"--probes", "5s"}, "whole number"},
		{[]string{"--time", "1.5"}, "fraction"},
		{[]string{"--time", "5ms"}, "below one second"},
		{[]string{"--time", "10x"}, "not a duration"},
		{[]string{"--time", ""}, "empty"},
		{[]string{"--time", "99999999999999999999"}, "too large"},
		{[]string{"--intvl", "9999999999h"}, "--intvl"},
		{[]string{"--bogus", "1"}, "bogus"},
		{[]string{}, "nothing to set"},
		{[]string{"--time", "60", "extra"}, "unexpected argument"},
		{[]string{"--time", "60", "--persist="}, "give a file name"},
	} {
		k := fakeNS(t)
		r := runCLI(t, withKernel(hostNS{k}), append([]string{"sysctl", "set"}, tc.args...)...)
		if r.code != exitUsage {
			t.Errorf("%q: exit %d, want %d (stderr %q)", tc.args, r.code, exitUsage, r.stderr)
			continue
		}
		oneErrorLine(t, r, tc.mentions)
		if got, _ := k.Tunables(); got.Keepalive != sysctl.Defaults {
			t.Fatalf("%q changed the namespace to %+v", tc.args, got.Keepalive)
		}
	}
}

func TestSysctlRecommend(t *testing.T) {
	ns := testnet.NewNS(t)
	r := runCLI(t, nil, "--netns", ns.Name, "sysctl", "recommend", "--behind", "aws-nlb", "-o", "json")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	m := decode(t, r.stdout)
	if m["type"] != "sysctl_recommend" || m["keepalive_time_s"] != 306.0 || m["path_idle_timeout_s"] != 350.0 || m["applied"] != false || m["reason"] == "" {
		t.Fatalf("record %s", r.stdout)
	}
	if values(ns) != "7200/75/9" {
		t.Fatal("recommend without --apply wrote")
	}
	r = runCLI(t, nil, "--netns", ns.Name, "sysctl", "recommend", "--path-idle-timeout", "4s", "--apply")
	if r.code != 0 {
		t.Fatalf("--apply: exit %d: %s", r.code, r.stderr)
	}
	if got := values(ns); got != "3/1/5" {
		t.Fatalf("after --apply the namespace has %s, want 3/1/5", got)
	}
}

func TestSysctlRecommendRefusesWhatCannotWork(t *testing.T) {
	for _, tc := range []struct {
		args     []string
		mentions string
	}{
		{[]string{"--detect-within", "3s"}, "impossible"},
		{[]string{"--path-idle-timeout", "1s"}, "heartbeat"},
		{[]string{"--path-idle-timeout", "500ms"}, "at least 1s"},
		{[]string{"--behind", "nope"}, "aws-nlb"},
		{[]string{"--behind", "aws-nlb", "--path-idle-timeout", "10m"}, "not both"},
		{[]string{"--persist"}, "goes with --apply"},
		{[]string{"--detect-within", "0"}, "want at least 1ms"},
	} {
		r := runCLI(t, withKernel(fakeNS(t)), append([]string{"sysctl", "recommend"}, tc.args...)...)
		if r.code != exitUsage {
			t.Errorf("%q: exit %d, want %d (stderr %q)", tc.args, r.code, exitUsage, r.stderr)
			continue
		}
		oneErrorLine(t, r, tc.mentions)
	}
}
