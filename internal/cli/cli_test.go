package cli

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/tcpkeep/tcpkeep/diag"
	"github.com/tcpkeep/tcpkeep/internal/audit"
	"github.com/tcpkeep/tcpkeep/internal/netns"
	"github.com/tcpkeep/tcpkeep/internal/proc"
	"github.com/tcpkeep/tcpkeep/sysctl"
)

// TestUsageErrors: what the operator typed wrong exits 2 (3 for audit, 1 for
// probe ADDR) with one line that names the problem, and touches nothing: the
// fake namespace would show a write, and none of these reach it.
func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args     []string
		mentions string
	}{
		{nil, "no command"},
		{[]string{"frobnicate"}, "unknown command"},
		{[]string{"audt"}, "did you mean audit?"},
		{[]string{"sysclt"}, "did you mean sysctl?"},
		{[]string{"con"}, "did you mean conns?"},
		{[]string{"--bogus", "sysctl"}, "bogus"},
		{[]string{"sysctl", "--bogus"}, "bogus"},
		{[]string{"sysctl", "frob"}, "unknown subcommand"},
		{[]string{"-o", "xml", "sysctl"}, `-o "xml": this command writes table, json or ndjson`},
		{[]string{"version", "extra"}, "unexpected argument"},
		{[]string{"-o", "xml", "version"}, "xml"},
		{[]string{"--netns", "pid:abc", "sysctl"}, "positive process ID"},
		{[]string{"--netns", "..", "sysctl"}, "not a namespace name"},
		{[]string{"--all-netns", "--netns", "self", "sysctl"}, "without --netns"},
		{[]string{"conns", "--netns", "x", "--all-netns"}, "without --netns"},
		{[]string{"--all-netns", "version"}, "--all-netns goes with sysctl, conns, audit, kill, arm and watch"},
		{[]string{"probe", "--all-netns", "serve"}, "--all-netns goes with"},
		{[]string{"probe", "serve", "--listen", "127.0.0.1:99999"}, "0 to 65535"},
		{[]string{"probe", "serve", "--read-timeout", "10ms"}, "at least 1s"},
		{[]string{"probe", "idle", "127.0.0.1", "--min", "1ms"}, "at least 100ms"},
		{[]string{"sysctl", "-o", "json", "set"}, "nothing to set"},
		{[]string{"conns", "--sport", "99999"}, "--sport"},
		{[]string{"conns", "--dport", "80-20"}, "empty"},
		{[]string{"conns", "--dport", "http"}, "want a port"},
		{[]string{"conns", "--src", "10.0.0.0/33"}, "exceeds 32"},
		{[]string{"conns", "--dst", "not-an-ip"}, "not an address"},
		{[]string{"conns", "--state", "establishd"}, "unknown TCP state"},
		{[]string{"conns", "-o", "prom"}, `-o "prom"`},
		{[]string{"-o", "yaml", "conns"}, `-o "yaml"`},
		{[]string{"conns", "-4", "--src", "fd77::1"}, "IPv6 but -4"},
		{[]string{"conns", "extra"}, "unexpected argument"},
		{[]string{"conns", "--bogus"}, "unknown flag"},
		{[]string{"kill"}, "never closes everything by default"},
		{[]string{"kill", "--dry-run"}, "say what to close"},
		{[]string{"kill", "--ipv4=false", "--dry-run"}, "filters that narrow"},
		{[]string{"kill", "-4", "-6"}, "filters that narrow"},
		{[]string{"kill", "--sport", "0-65535"}, "filters that narrow"},
		{[]string{"kill", "--finding", "sysctl_keepalive_default"}, "not a socket"},
		{[]string{"kill", "--finding", "half_open,idle"}, `unknown finding code "half_open"`},
		{[]string{"kill", "--finding", "peer_limit_exceeded"}, "needs --max-per-peer"},
		{[]string{"kill", "--finding", "idle_overlong"}, "needs --idle-limit"},
		{[]string{"kill", "--finding", "listen_queue_full"}, "--state listening"},
		{[]string{"kill", "--max-per-peer", "0"}, "--max-per-peer"},
		{[]string{"kill", "--dport", "80", "-o", "prom"}, `-o "prom"`},
		{[]string{"kill", "--dport", "80", "extra"}, `unexpected argument "extra"`},
		{[]string{"kill", "--dport", "80", "--max-idle", "0"}, `"--max-idle" flag: "0": want at least 1ms`},
		{[]string{"arm", "--time", "60", "--intvl", "10", "--probes", "5"}, "never arms everything by default"},
		{[]string{"arm", "--sport", "80"}, "say which values to set: all of --time D --intvl D --probes N, or"},
		{[]string{"arm", "--sport", "80", "--time", "60"}, "all of --time D --intvl D --probes N"},
		{[]string{"arm", "--sport", "80", "--time", "0", "--intvl", "1", "--probes", "1"}, "--time"},
		{[]string{"arm", "--sport", "80", "--time", "60", "--intvl", "10", "--probes", "128"}, "--probes"},
		{[]string{"arm", "--sport", "80", "--time", "60", "--intvl", "10", "--probes", "5", "--behind", "aws-nlb"}, "not both"},
		{[]string{"arm", "--sport", "80", "--behind", "aws-nlb", "--path-idle-timeout", "5m"}, "both given"},
		{[]string{"arm", "--sport", "80", "--behind", "nokia"}, "unknown middlebox"},
		{[]string{"arm", "--sport", "80", "--path-idle-timeout", "1s"}, "no whole second"},
		{[]string{"arm", "--sport", "80", "--detect-within", "2s"}, "impossible"},
		{[]string{"arm", "--sport", "80", "--behind", "aws-nlb", "--user-timeout", "1.5ms"}, "whole milliseconds"},
		{[]string{"arm", "--sport", "80", "--behind", "aws-nlb", "--user-timeout", "-1s"}, "negative"},
		{[]string{"arm", "--finding", "peer_limit_exceeded", "--behind", "aws-nlb"}, "kill --max-per-peer"},
		{[]string{"arm", "--finding", "sysctl_keepalive_default", "--behind", "aws-nlb"}, "nothing to arm"},
		{[]string{"arm", "--finding", "listen_queue_full", "--behind", "aws-nlb"}, "arms listeners: add --state listening"},
		{[]string{"arm", "--max-per-peer", "3", "--behind", "aws-nlb"}, "unknown flag: --max-per-peer"},
		{[]string{"arm", "--pid", "0", "--behind", "aws-nlb"}, "--pid"},
		{[]string{"arm", "--sport", "80", "--behind", "aws-nlb", "-o", "prom"}, `-o "prom"`},
	} {
		k := fakeNS(t)
		r := runCLI(t, withKernel(k), tc.args...)
		if r.code != exitUsage || r.stdout != "" {
			t.Errorf("%q: exit %d, stdout %q; want %d and nothing", tc.args, r.code, r.stdout, exitUsage)
			continue
		}
		oneErrorLine(t, r, tc.mentions)
		if len(k.Destroyed()) != 0 {
			t.Errorf("%q closed sockets", tc.args)
		}
	}
}

// TestAuditUsageErrorsExit3: audit keeps the monitoring-plugin codes: a usage
// error is "could not audit".
func TestAuditUsageErrorsExit3(t *testing.T) {
	for _, tc := range []struct {
		args []string
		says string
	}{
		{[]string{"audit", "--fail-on", "fatal"}, "want info, warning or critical"},
		{[]string{"audit", "--max-idle", "later"}, "not a duration"},
		{[]string{"audit", "--prom-file", "/no/such/dir/x.prom"}, "does not exist"},
		{[]string{"audit", "--path-idle-timeout", "500ms"}, "want at least 1s"},
		{[]string{"audit", "-o", "csv"}, "table, json, ndjson, prom or nagios"},
	} {
		r := runCLI(t, withKernel(fakeNS(t)), tc.args...)
		if r.code != auditUnknown {
			t.Errorf("%q: exit %d, want %d", tc.args, r.code, auditUnknown)
			continue
		}
		oneErrorLine(t, r, tc.says)
	}
}

// probe ADDR keeps 2 for "declared dead": its usage errors exit 1.
func TestProbeUsageErrorsExit1(t *testing.T) {
	for _, tc := range []struct {
		args []string
		says string
	}{
		{[]string{"-o", "json", "probe", "127.0.0.1:7077"}, "give --count N"},
		{[]string{"probe"}, "heartbeat server's address"},
		{[]string{"probe", "10.0.0.1:70000"}, "not 1 to 65535"},
		{[]string{"probe", "10.0.0.1", "--keepalive", "1s/1s/128"}, "CNT"},
		{[]string{"probe", "10.0.0.1", "--timeout", "2s"}, "at most --interval"},
	} {
		r := runCLI(t, nil, tc.args...)
		if r.code != exitError {
			t.Errorf("%q: exit %d, want %d", tc.args, r.code, exitError)
			continue
		}
		oneErrorLine(t, r, tc.says)
	}
}

// TestBinaryUsageError: the built binary says the same, without root.
func TestBinaryUsageError(t *testing.T) {
	r := runBin(t, "conns", "--dport", "http")
	if r.code != exitUsage || r.stdout != "" {
		t.Fatalf("exit %d, stdout %q", r.code, r.stdout)
	}
	oneErrorLine(t, r, "want a port")
}

func TestEveryCommandHasHelp(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"help"}, {"sysctl", "-h"}, {"sysctl", "set", "-h"},
		{"sysctl", "recommend", "--help"}, {"version", "-h"}, {"help", "sysctl"}, {"probe", "idle", "-h"}} {
		r := runCLI(t, nil, args...)
		if r.code != exitOK || !strings.Contains(r.stdout, "Usage") || r.stderr != "" {
			t.Errorf("%q: exit %d, stdout %.60q, stderr %q: want usage on stdout and exit 0", args, r.code, r.stdout, r.stderr)
		}
	}
	main := runCLI(t, nil, "-h").stdout
	for _, c := range commands {
		if !strings.Contains(main, "\n  "+c.name+" ") {
			t.Errorf("tcpkeep -h does not list %s", c.name)
		}
		r := runCLI(t, nil, c.name, "-h")
		if !strings.Contains(r.stdout, "Example") {
			t.Errorf("%s -h has no example", c.name)
		}
		if c.name != "help" && c.name != "version" && !strings.Contains(r.stdout, "Exit codes") {
			t.Errorf("%s -h does not give its exit codes", c.name)
		}
		if strings.Contains(r.stdout, "[=true|false]") || strings.Contains(r.stdout, "{{") {
			t.Errorf("%s -h shows %q", c.name, "[=true|false] or a template")
		}
		for _, l := range strings.Split(r.stdout, "\n") {
			if strings.HasSuffix(l, " ") {
				t.Errorf("%s -h: line ends in spaces: %q", c.name, l)
			}
		}
	}
}

// TestHelpSaysExitCodesAndFormats: tcpkeep -h gives every command's exit
// codes and the interrupted one; each command's -o lists only its formats.
func TestHelpSaysExitCodesAndFormats(t *testing.T) {
	main := runCLI(t, nil, "-h").stdout
	for _, want := range []string{"audit     0 nothing at or above --fail-on", "probe     ADDR: 0 alive, 2 declared dead", "130 when SIGINT or SIGTERM"} {
		if !strings.Contains(main, want) {
			t.Errorf("tcpkeep -h lacks %q", want)
		}
	}
	for cmd, formats := range map[string]string{"audit": "table, json, ndjson, prom or nagios", "conns": "table, json or ndjson", "kill": "table, json or ndjson"} {
		out := runCLI(t, nil, cmd, "-h").stdout
		if !strings.Contains(out, "-o, --output FORMAT") || !strings.Contains(out, "output FORMAT: "+formats+" (default table)") {
			t.Errorf("%s -h: -o does not list %s:\n%s", cmd, formats, out)
		}
	}
	if out := runCLI(t, nil, "kill", "-h").stdout; !strings.Contains(out, "  -p, --processes ") || !strings.Contains(out, "--max-idle D ") {
		t.Errorf("kill -h: switches and values not shown as -p, --processes and --max-idle D:\n%s", out)
	}
}

func TestVersion(t *testing.T) {
	r := runCLI(t, nil, "version")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "tcpkeep ") || !strings.Contains(r.stdout, "go1.") {
		t.Fatalf("version: exit %d, %q", r.code, r.stdout)
	}
	r = runCLI(t, nil, "-o", "ndjson", "version")
	m := records(t, r.stdout, "self")[0]
	for _, k := range []string{"type", "ts", "host", "netns", "version", "commit", "go"} {
		if _, ok := m[k]; !ok {
			t.Errorf("version -o ndjson: no %q in %s", k, r.stdout)
		}
	}
}

// TestNamespaceErrorsNameItOnce: a namespace that does not exist is a runtime
// error that names it once and says how to find the ones there are.
func TestNamespaceErrorsNameItOnce(t *testing.T) {
	for _, tc := range []struct{ spec, says string }{
		{"tk-no-such-namespace", "does not exist; list them with: ip netns list"},
		{"pid:999999999", "is the process running?"},
		{"/etc/hostname", "not a network namespace"},
	} {
		for _, cmd := range []string{"sysctl", "conns", "kill", "probe"} {
			args := []string{"--netns", tc.spec, cmd}
			switch cmd {
			case "kill":
				args = append(args, "--dport", "80")
			case "probe":
				args = append(args, "127.0.0.1:1")
			}
			r := runCLI(t, nil, args...)
			if r.code != exitError {
				t.Errorf("%q: exit %d, want %d", args, r.code, exitError)
				continue
			}
			oneErrorLine(t, r, tc.says)
			if n := strings.Count(r.stderr, "netns "+tc.spec); n != 1 {
				t.Errorf("%q: %q names the namespace %d times", args, r.stderr, n)
			}
		}
	}
	r := runCLI(t, nil, "--netns", "tk-no-such-namespace", "audit")
	if r.code != auditUnknown || strings.Count(r.stderr, "netns tk-no-such-namespace") != 1 {
		t.Errorf("audit: exit %d, %q", r.code, r.stderr)
	}
}

// TestProbeRefusedHint: a refused connection asks whether the server runs; the
// hint is for refusals only.
func TestProbeRefusedHint(t *testing.T) {
	r := runCLI(t, nil, "probe", "127.0.0.1:1", "--count", "1")
	if r.code != exitError {
		t.Fatalf("exit %d, %q", r.code, r.stderr)
	}
	oneErrorLine(t, r, "connection refused; is 'tcpkeep probe serve' running there?")
	if got := explain(errPermissionEnter); strings.Contains(got, "probe serve") || !strings.Contains(got, "CAP_SYS_ADMIN") {
		t.Errorf("a permission error entering a namespace says %q", got)
	}
}

func TestSplitSubcommand(t *testing.T) {
	for _, tc := range []struct {
		args []string
		sub  string
		rest string
	}{
		{[]string{"set", "--time", "5"}, "set", "--time 5"},
		{[]string{"-o", "json", "set", "--time", "5"}, "set", "-o json --time 5"},
		{[]string{"--netns", "web", "recommend"}, "recommend", "--netns web"},
		{[]string{"--netns=web", "-ojson", "set"}, "set", "--netns=web -ojson"},
		{[]string{"--output=json"}, "", "--output=json"},
		{[]string{"--time", "5", "set"}, "", "--time 5 set"},
		{[]string{"10.0.0.1:7077", "set"}, "", "10.0.0.1:7077 set"},
		{nil, "", ""},
	} {
		sub, rest := splitSubcommand(append([]string(nil), tc.args...), "set", "recommend")
		if sub != tc.sub || strings.Join(rest, " ") != tc.rest {
			t.Errorf("splitSubcommand(%q) = %q, %q; want %q, %q", tc.args, sub, rest, tc.sub, tc.rest)
		}
	}
}

// FuzzFindingFlag: any --finding value is a list of socket finding codes or an
// error, never a panic, and never a code that cannot select a socket.
func FuzzFindingFlag(f *testing.F) {
	for _, s := range []string{"half_open_keepalive", "half_open_keepalive,idle_overlong", "sysctl_keepalive_default", "", ",", " idle_overlong ", "x\x00y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		codes, err := parseFindings(nil, s, "close")
		if err != nil {
			return
		}
		if len(codes) == 0 {
			t.Fatalf("%q accepted with no code", s)
		}
		for _, c := range codes {
			if c.Tunable() || !slices.Contains(audit.Codes, c) {
				t.Fatalf("%q accepted code %q", s, c)
			}
		}
	})
}

// TestNamesListening: only a state that names LISTEN itself lets kill close
// listeners; groups that include it do not.
func TestNamesListening(t *testing.T) {
	for v, want := range map[string]bool{
		"listening": true, "LISTEN": true, "established, listen": true,
		"all": false, "big": false, "established": false, "": false,
	} {
		f := filterFlags{statesText: v}
		if got := f.namesListening(); got != want {
			t.Errorf("--state %q: names listening %v, want %v", v, got, want)
		}
	}
}

// errPermissionEnter is what netns says when setns is refused.
var errPermissionEnter = fmt.Errorf("%w: %w", netns.ErrEnter, syscall.EPERM)

func TestAuditExit(t *testing.T) {
	for _, tc := range []struct {
		name          string
		worst, failOn audit.Severity
		want          int
	}{
		{"nothing found", 0, audit.Warning, auditOK},
		{"nothing found, fail on info", 0, audit.Info, auditOK},
		{"info below warning", audit.Info, audit.Warning, auditOK},
		{"info at fail-on info", audit.Info, audit.Info, auditWarning},
		{"warning", audit.Warning, audit.Warning, auditWarning},
		{"warning below critical", audit.Warning, audit.Critical, auditOK},
		{"critical", audit.Critical, audit.Warning, auditCritical},
		{"critical at fail-on critical", audit.Critical, audit.Critical, auditCritical},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := auditCode(tc.worst, tc.failOn); got != tc.want {
				t.Fatalf("exit %d, want %d", got, tc.want)
			}
		})
	}
}

// TestExplain: one wording per failure, naming what is missing.
func TestExplain(t *testing.T) {
	for _, tc := range []struct {
		err  error
		says string
	}{
		{errPermissionEnter, "needs CAP_SYS_ADMIN"},
		{fmt.Errorf("%w: %w", netns.ErrOpen, syscall.EACCES), "needs CAP_SYS_PTRACE"},
		{fmt.Errorf("pidfd_getfd: %w", proc.ErrNotPermitted), "needs CAP_SYS_PTRACE"},
		{&sysctl.RollbackError{Err: fmt.Errorf("write: %w", syscall.EACCES)}, "needs CAP_NET_ADMIN"},
		{fmt.Errorf("x: %w", diag.ErrDestroyUnsupported), "CONFIG_INET_DIAG_DESTROY=y"},
		{fmt.Errorf("x: %w", diag.ErrDestroyUnsupported), "kill --via-owner"},
		{&proc.PermissionError{Cause: proc.PermNoCapSysPtrace, YamaScope: 1, Err: syscall.EPERM}, "lacks CAP_SYS_PTRACE"},
		{&proc.PermissionError{Cause: proc.PermNoCapSysPtrace, YamaScope: 1, Err: syscall.EPERM}, "give it CAP_SYS_PTRACE"},
		{&proc.PermissionError{Cause: proc.PermYama, YamaScope: 2, Err: syscall.EPERM}, "ptrace_scope is 2"},
		{&proc.PermissionError{Cause: proc.PermYama, YamaScope: 2, Err: syscall.EPERM}, "give it CAP_SYS_PTRACE"},
		{&proc.PermissionError{Cause: proc.PermYama, YamaScope: 3, Err: syscall.EPERM}, "lowered by a reboot"},
		{&proc.PermissionError{Cause: proc.PermOther, CapSysPtrace: true, Err: syscall.EPERM}, "SELinux or AppArmor"},
		{fmt.Errorf("x: %w", sysctl.ErrNoConntrack), "instead of --behind conntrack"},
		{fmt.Errorf("scan: %w", proc.ErrNoProcess), "is the process running?"},
		{fmt.Errorf("x: %w", diag.ErrUnsupported), "modprobe inet_diag tcp_diag"},
		{fmt.Errorf("x: %w", syscall.EMFILE), "ulimit -n"},
	} {
		if got := explain(tc.err); !strings.Contains(got, tc.says) || strings.Count(got, tc.says) != 1 {
			t.Errorf("explain(%v) = %q, want it to say %q once", tc.err, got, tc.says)
		}
	}
	if got := explain(errors.New("plain")); got != "plain" {
		t.Errorf("a plain error got a hint: %q", got)
	}
}
