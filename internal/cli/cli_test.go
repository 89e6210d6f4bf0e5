package cli

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/tcpkeep/tcpkeep/internal/netns"
)

// result is what one run of the command line left behind.
type result struct {
	code           int
	stdout, stderr string
}

// runCLI runs tcpkeep's command line in-process. opts adjust the env before it runs.
func runCLI(t *testing.T, opts func(*env), args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	e := &env{stdout: &out, stderr: &errb, output: "table", now: time.Now, isHost: netns.NS.IsHost}
	if opts != nil {
		opts(e)
	}
	code := run(e, args)
	return result{code, out.String(), errb.String()}
}

// oneErrorLine checks the DESIGN.md error shape: one line, "tcpkeep: ...".
func oneErrorLine(t *testing.T, r result, mentions string) {
	t.Helper()
	if !strings.HasPrefix(r.stderr, "tcpkeep: ") || strings.Count(r.stderr, "\n") != 1 {
		t.Fatalf("stderr %q: want one line starting with tcpkeep:", r.stderr)
	}
	if !strings.Contains(r.stderr, mentions) {
		t.Fatalf("stderr %q does not mention %q", r.stderr, mentions)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args     []string
		mentions string
	}{
		{nil, "no command"},
		{[]string{"frobnicate"}, "unknown command"},
		{[]string{"--bogus", "sysctl"}, "bogus"},
		{[]string{"sysctl", "--bogus"}, "bogus"},
		{[]string{"sysctl", "frob"}, "unknown subcommand"},
		{[]string{"-o", "xml", "sysctl"}, "xml"},
		{[]string{"version", "extra"}, "unexpected argument"},
		{[]string{"--netns", "pid:abc", "sysctl"}, "positive process ID"},
		{[]string{"--netns", "..", "sysctl"}, "not a namespace name"},
		{[]string{"probe", "serve", "--listen", "127.0.0.1:99999"}, "0 to 65535"},
		{[]string{"sysctl", "-o", "json", "set"}, "nothing to set"},

		{[]string{"-o", "xml", "version"}, "xml"},
	} {
		r := runCLI(t, nil, tc.args...)
		if r.code != exitUsage {
			t.Errorf("%q: exit %d, want %d", tc.args, r.code, exitUsage)
			continue
		}
		oneErrorLine(t, r, tc.mentions)
	}
}

func TestEveryCommandHasHelp(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"help"}, {"sysctl", "-h"}, {"sysctl", "set", "-h"},
		{"sysctl", "recommend", "--help"}, {"version", "-h"}, {"help", "sysctl"}} {
		r := runCLI(t, nil, args...)
		if r.code != exitOK || !strings.Contains(r.stdout, "Usage") || r.stderr != "" {
			t.Errorf("%q: exit %d, stdout %.60q, stderr %q: want usage on stdout and exit 0", args, r.code, r.stdout, r.stderr)
		}
	}
	for _, c := range commands {
		r := runCLI(t, nil, c.name, "-h")
		if !strings.Contains(r.stdout, "Example") {
			t.Errorf("%s -h has no example", c.name)
		}
	}
}

func TestVersion(t *testing.T) {
	r := runCLI(t, nil, "version")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "tcpkeep ") || !strings.Contains(r.stdout, "go1.") {
		t.Fatalf("version: exit %d, %q", r.code, r.stdout)
	}
	r = runCLI(t, nil, "-o", "ndjson", "version")
	m := decode(t, r.stdout)
	for _, k := range []string{"type", "ts", "host", "netns", "version", "commit", "go"} {
		if _, ok := m[k]; !ok {
			t.Errorf("version -o ndjson: no %q in %s", k, r.stdout)
		}
	}
}

func TestUnknownNamespaceIsARuntimeError(t *testing.T) {
	r := runCLI(t, nil, "--netns", "tk-no-such-namespace", "sysctl")
	if r.code != exitError {
		t.Fatalf("exit %d, want %d", r.code, exitError)
	}
	oneErrorLine(t, r, "ip netns list")
	r = runCLI(t, nil, "--netns", "pid:999999999", "sysctl")
	if r.code != exitError {
		t.Fatalf("pid:999999999: exit %d, want %d", r.code, exitError)
	}
	r = runCLI(t, nil, "--netns", "/etc/hostname", "sysctl")
	if r.code != exitError || !strings.Contains(r.stderr, "not a network namespace") {
		t.Fatalf("/etc/hostname: exit %d, %q", r.code, r.stderr)
	}
}

func decode(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, s)
	}
	return m
}

// probe ADDR keeps 2 for "declared dead": its usage errors exit 1.
func TestProbeUsageErrorsExit1(t *testing.T) {
	for _, tc := range []struct {
		args []string
		says string
	}{
		{[]string{"-o", "json", "probe", "127.0.0.1:7077"}, "give --count N"},
		{[]string{"probe"}, "heartbeat server's address"},
	} {
		r := runCLI(t, nil, tc.args...)
		if r.code != exitError {
			t.Errorf("%q: exit %d, want %d", tc.args, r.code, exitError)
			continue
		}
		oneErrorLine(t, r, tc.says)
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
