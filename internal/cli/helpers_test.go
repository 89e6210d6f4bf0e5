package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tcpkeep/tcpkeep/diag"
	"github.com/tcpkeep/tcpkeep/internal/kernel"
	"github.com/tcpkeep/tcpkeep/internal/netns"
	"github.com/tcpkeep/tcpkeep/sysctl"
)

// tcpkeepBin is the binary the end-to-end tests run, built once for all of them.
var tcpkeepBin string

// TestMain builds tcpkeep once, without VCS stamping, so that a checkout
// without git access (or an unprivileged user's copy) builds it too.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tcpkeep-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	tcpkeepBin = filepath.Join(dir, "tcpkeep")
	cmd := exec.Command("go", "build", "-buildvcs=false", "-o", tcpkeepBin, ".")
	cmd.Dir = filepath.Join("..", "..")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// result is what one run of the command line left behind.
type result struct {
	code           int
	stdout, stderr string
	took           time.Duration
}

// runCLI runs tcpkeep's command line in-process. opts adjust the env before it
// runs (withKernel gives it a fake namespace).
func runCLI(t *testing.T, opts func(*env), args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	e := &env{ctx: context.Background(), stdout: &out, stderr: &errb, output: "table", now: time.Now, args: args, kernel: kernel.Live}
	if opts != nil {
		opts(e)
	}
	code := run(e, args)
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

// runBin runs the built binary, for at most a minute.
func runBin(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, tcpkeepBin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String(), took: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("tcpkeep %s: %v", strings.Join(args, " "), err)
	}
	return r
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

// records parses ndjson output and checks what every record carries: type, ts
// (RFC 3339), host and netns (equal to netns unless it is "").
func records(t *testing.T, out, netns string) []map[string]any {
	t.Helper()
	var recs []map[string]any
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if line == "" {
			continue
		}
		m := decode(t, line)
		for _, k := range []string{"type", "ts", "host", "netns"} {
			if _, ok := m[k]; !ok {
				t.Fatalf("record without %q: %s", k, line)
			}
		}
		if netns != "" && m["netns"] != netns {
			t.Fatalf("record for netns %v, want %s: %s", m["netns"], netns, line)
		}
		if _, err := time.Parse(time.RFC3339, m["ts"].(string)); err != nil {
			t.Fatalf("ts %v: %v", m["ts"], err)
		}
		recs = append(recs, m)
	}
	return recs
}

func ofType(recs []map[string]any, typ string) []map[string]any {
	var out []map[string]any
	for _, r := range recs {
		if r["type"] == typ {
			out = append(out, r)
		}
	}
	return out
}

func decode(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, s)
	}
	return m
}

// defaultTunables are a fresh namespace's, as files under /proc/sys.
var defaultTunables = map[string]string{
	sysctl.FileTime: "7200", sysctl.FileIntvl: "75", sysctl.FileProbes: "9",
	sysctl.FileRetries2: "15", sysctl.FileFinTimeout: "60", sysctl.FileOrphanRetr: "0",
}

// fakeNS is a namespace in memory, for what the kernel is not the subject of:
// the kernel's default tunables, and socks.
func fakeNS(t *testing.T, socks ...diag.Socket) *kernel.Fake {
	t.Helper()
	root := t.TempDir()
	for name, v := range defaultTunables {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return kernel.NewFake("self", sysctl.ProcSys(root), socks...)
}

// withKernel makes the run work in k, whatever --netns names.
func withKernel(k kernel.NS) func(*env) {
	return func(e *env) { e.kernel = func(netns.NS) kernel.NS { return k } }
}

// hostNS is a namespace taken for the host's, so that --persist can be tested
// in a throwaway one without touching the host's values.
type hostNS struct{ kernel.NS }

func (hostNS) IsHost() (bool, error) { return true, nil }

func asHost(e *env) { e.kernel = func(ns netns.NS) kernel.NS { return hostNS{kernel.Live(ns)} } }
