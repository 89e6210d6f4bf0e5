package cli

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tcpkeep/tcpkeep/internal/testnet"
)

// agent is the built binary running tcpkeep watch, its output read as it
// comes.
type agent struct {
	t      testing.TB
	cmd    *exec.Cmd
	mu     sync.Mutex
	stdout []string // whole lines
	stderr []string
	tail   string // stdout after its last newline, at exit
	done   chan struct{}
	code   int
}

// startAgent runs tcpkeep with args, listening on a port of its choosing.
func startAgent(t testing.TB, args ...string) *agent {
	t.Helper()
	a := &agent{t: t, done: make(chan struct{})}
	a.cmd = exec.Command(tcpkeepBin, args...)
	out, err := a.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	errp, err := a.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		r := bufio.NewReader(out)
		for {
			line, err := r.ReadString('\n')
			a.mu.Lock()
			if err != nil {
				a.tail = line
				a.mu.Unlock()
				return
			}
			a.stdout = append(a.stdout, line)
			a.mu.Unlock()
		}
	}()
	go func() {
		defer wg.Done()
		sc := bufio.NewScanner(errp)
		for sc.Scan() {
			a.mu.Lock()
			a.stderr = append(a.stderr, sc.Text())
			a.mu.Unlock()
		}
	}()
	go func() {
		wg.Wait()
		err := a.cmd.Wait()
		if ee, ok := err.(*exec.ExitError); ok {
			a.code = ee.ExitCode()
		} else if err != nil {
			a.code = -1
		}
		close(a.done)
	}()
	t.Cleanup(func() {
		select {
		case <-a.done:
		default:
			a.cmd.Process.Kill() // by PID: the process this test started
			<-a.done
		}
	})
	return a
}

func (a *agent) pid() int { return a.cmd.Process.Pid }

// records are the NDJSON records written so far.
func (a *agent) records() []map[string]any {
	a.mu.Lock()
	defer a.mu.Unlock()
	var recs []map[string]any
	for _, l := range a.stdout {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			a.t.Fatalf("stdout line is not JSON: %v: %q", err, l)
		}
		recs = append(recs, m)
	}
	return recs
}

func (a *agent) logs() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return strings.Join(a.stderr, "\n")
}

// addr is where the agent serves HTTP, from its log.
func (a *agent) addr() string {
	a.t.Helper()
	re := regexp.MustCompile(`"msg":"serving /metrics and /healthz","addr":"([^"]+)"`)
	var addr string
	testnet.Wait(a.t, 10*time.Second, "the agent serving HTTP", func() bool {
		if m := re.FindStringSubmatch(a.logs()); m != nil {
			addr = m[1]
		}
		return addr != ""
	})
	return addr
}

// stop sends sig and waits for the exit code.
func (a *agent) stop(sig syscall.Signal) int {
	a.t.Helper()
	a.cmd.Process.Signal(sig)
	select {
	case <-a.done:
	case <-time.After(30 * time.Second):
		a.t.Fatalf("tcpkeep watch still runs 30 s after %v", sig)
	}
	return a.code
}

// events are the finding events of one socket (by cookie) and code.
func events(recs []map[string]any, cookie uint64, code string) (opened, resolved []map[string]any) {
	ck := fmt.Sprintf("%016x", cookie)
	for _, r := range recs {
		s, _ := r["socket"].(map[string]any)
		if r["type"] != "finding" || r["code"] != code || s == nil || s["cookie"] != ck {
			continue
		}
		switch r["event"] {
		case "opened":
			opened = append(opened, r)
		case "resolved":
			resolved = append(resolved, r)
		}
	}
	return opened, resolved
}

func get(t *testing.T, url string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// TestWatchHalfOpenThenDropped: a connection whose peer vanishes goes
// half-open: one opened event, and the finding on /metrics; the kernel drops
// it after its keepalive probes and its owner closes it: one resolved event
// that says how (keepalive), and a kernel drop counted. Rounds after that say
// nothing more about it. The metrics pass promtool; /healthz says ok; SIGTERM
// ends the agent with exit 0 and whole NDJSON lines.
func TestWatchHalfOpenThenDropped(t *testing.T) {
	p := testnet.NewPair(t)
	l := p.B.Listen("10.77.0.2:7072")
	go acceptAll(l)
	c := p.A.Dial("10.77.0.2:7072", testnet.Keepalive(time.Second, time.Second, 3))
	cookie := testnet.Cookie(t, c)
	healthy := p.A.Dial("10.77.0.2:7072", testnet.Keepalive(time.Minute, time.Second, 3))
	healthyCookie := testnet.Cookie(t, healthy)

	a := startAgent(t, "--netns", p.A.Name, "watch", "--interval", "300ms", "--listen", "127.0.0.1:0")
	base := "http://" + a.addr()
	metric := func(name string, labels ...string) float64 {
		_, b := get(t, base+"/metrics")
		v, _ := promValue(t, b, name, append([]string{"netns", p.A.Name}, labels...)...)
		return v
	}
	// The agent has audited once (the tunables' finding) before the peer goes.
	testnet.Wait(t, 10*time.Second, "the first audit", func() bool {
		return metric("tcpkeep_audit_success") == 1
	})
	// The owner reads until the kernel drops the connection, then closes it, as
	// an application does.
	readErr := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 1))
		c.Close()
		readErr <- err
	}()
	p.B.Vanish() // every packet in B dropped: no RST, no answer

	testnet.Wait(t, 10*time.Second, "an opened half_open_keepalive event", func() bool {
		o, _ := events(a.records(), cookie, "half_open_keepalive")
		return len(o) > 0
	})
	if v := metric("tcpkeep_findings", "code", "half_open_keepalive", "severity", "critical"); v != 1 {
		t.Errorf("tcpkeep_findings{code=half_open_keepalive} = %v while half-open, want 1", v)
	}
	code, body := get(t, base+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	promtool(t, body)
	if code, b := get(t, base+"/healthz"); code != 200 || string(b) != "ok\n" {
		t.Errorf("/healthz: %d %q, want 200 ok", code, b)
	}

	select {
	case err := <-readErr:
		if !strings.Contains(fmt.Sprint(err), "timed out") {
			t.Errorf("the owner's read: %v, want a timeout (the kernel dropped it after its probes)", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the kernel did not drop the connection within 15 s of 1 s x 3 probes")
	}
	testnet.Wait(t, 10*time.Second, "a resolved event", func() bool {
		_, r := events(a.records(), cookie, "half_open_keepalive")
		return len(r) > 0
	})
	n, ts := len(a.records()), metric("tcpkeep_audit_timestamp_seconds")
	testnet.Wait(t, 10*time.Second, "three more rounds", func() bool {
		return metric("tcpkeep_audit_timestamp_seconds") >= ts+0.9
	})
	opened, resolved := events(a.records(), cookie, "half_open_keepalive")
	if len(opened) != 1 || len(resolved) != 1 {
		t.Fatalf("%d opened and %d resolved events for the connection, want 1 each:\n%s", len(opened), len(resolved), strings.Join(a.stdout, ""))
	}
	if r := resolved[0]; r["how"] != "closed" || r["end"] != "keepalive" || r["severity"] != "critical" || r["open_ms"].(float64) <= 0 {
		t.Errorf("resolved: how %v end %v open_ms %v, want closed, keepalive", r["how"], r["end"], r["open_ms"])
	}
	if len(a.records()) != n {
		t.Errorf("rounds after the resolution wrote more: %d records, then %d", n, len(a.records()))
	}
	if o, _ := events(a.records(), healthyCookie, "half_open_keepalive"); len(o) != 0 {
		t.Errorf("the healthy connection was flagged: %v", o)
	}
	if v := metric("tcpkeep_kernel_drops_total", "cause", "keepalive"); v != 1 {
		t.Errorf("tcpkeep_kernel_drops_total{cause=keepalive} = %v, want 1", v)
	}
	if v := metric("tcpkeep_findings_resolved_total", "code", "half_open_keepalive", "how", "closed"); v != 1 {
		t.Errorf("tcpkeep_findings_resolved_total = %v, want 1", v)
	}
	if v := metric("tcpkeep_findings", "code", "half_open_keepalive", "severity", "critical"); v != 0 {
		t.Errorf("tcpkeep_findings{code=half_open_keepalive} = %v after the drop, want 0", v)
	}

	if code := a.stop(syscall.SIGTERM); code != 0 {
		t.Errorf("SIGTERM: exit %d, want 0; stderr:\n%s", code, a.logs())
	}
	if a.tail != "" {
		t.Errorf("stdout ends in half a line: %q", a.tail)
	}
	logs := a.logs()
	for _, l := range strings.Split(logs, "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil || m["level"] == nil || m["msg"] == nil {
			t.Errorf("stderr line is not a slog JSON record: %q", l)
		}
	}
	if !strings.Contains(logs, `"msg":"stopped","signal":true`) {
		t.Errorf("no log of the stop:\n%s", logs)
	}
}

// TestWatchSignalsMidRound: SIGINT too ends the agent with exit 0, even while
// an audit of thousands of sockets is under way, and its output is whole
// records.
func TestWatchSignalsMidRound(t *testing.T) {
	ns := testnet.NewNS(t)
	testnet.Many(t, ns, 6000)
	for i, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		a := startAgent(t, "--netns", ns.Name, "watch", "--interval", "100ms", "--idle-limit", "1ms", "--listen", "")
		// Thousands of idle_overlong findings open: stop in the midst of them.
		testnet.Wait(t, 20*time.Second, "events", func() bool { return len(a.records()) > 100*(i+1) })
		if code := a.stop(sig); code != 0 {
			t.Errorf("%v: exit %d, want 0: %s", sig, code, a.logs())
		}
		if a.tail != "" {
			t.Errorf("%v: stdout ends in half a line: %q", sig, a.tail)
		}
		a.records() // every line JSON
	}
}

// TestWatchUsage: watch's usage errors say what is wrong, exit 2.
func TestWatchUsage(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, tc := range []struct {
		args []string
		code int
		says string
	}{
		{[]string{"watch", "--interval", "10ms"}, 2, `"10ms": want at least 100ms`},
		{[]string{"watch", "--kill", "sysctl_keepalive_default"}, 2, "nothing to close"},
		{[]string{"watch", "--kill", "idle_overlong"}, 2, "--kill idle_overlong needs --idle-limit"},
		{[]string{"watch", "--kill", "half_open"}, 2, `unknown finding code "half_open"`},
		{[]string{"watch", "--kill-max", "0"}, 2, "--kill-max"},
		{[]string{"watch", "-o", "json"}, 2, `-o "json": this command writes ndjson`},
		{[]string{"watch", "--prom-file", "/no/such/dir/x.prom"}, 2, "does not exist"},
		{[]string{"watch", "now"}, 2, `unexpected argument "now"`},
		{[]string{"--netns", "tk-no-such-ns", "watch"}, 1, "no such network namespace"},
		{[]string{"watch", "--listen", busy.Addr().String()}, 1, "--listen " + busy.Addr().String()},
	} {
		r := runBin(t, tc.args...)
		if r.code != tc.code {
			t.Errorf("%q: exit %d, want %d: %s", tc.args, r.code, tc.code, r.stderr)
			continue
		}
		oneErrorLine(t, r, tc.says)
	}
}

// TestWatchAllNetnsNamespaceDeleted: --all-netns watch sees namespaces made
// after it started; one deleted while it runs is logged, its findings
// resolve, and the agent goes on watching the others.
func TestWatchAllNetnsNamespaceDeleted(t *testing.T) {
	a := startAgent(t, "--all-netns", "watch", "--interval", "500ms", "--listen", "", "--state", "listening")
	nss := testnet.NewNamespaces(t, 2) // fresh: tcp_keepalive_time 7200, flagged
	tunable := func(ns, event string) func() bool {
		return func() bool {
			for _, r := range a.records() {
				if r["netns"] == ns && r["code"] == "sysctl_keepalive_default" && r["event"] == event {
					return r["netns_inode"] != nil
				}
			}
			return false
		}
	}
	for _, ns := range nss {
		testnet.Wait(t, 15*time.Second, "namespace "+ns.Name+" watched", tunable(ns.Name, "opened"))
	}
	nss[0].Delete()
	testnet.Wait(t, 15*time.Second, "the deleted namespace's finding resolved", tunable(nss[0].Name, "resolved"))
	if !strings.Contains(a.logs(), `"netns":"`+nss[0].Name+`"`) {
		t.Errorf("the deleted namespace is not logged:\n%s", a.logs())
	}
	nss[1].Sysctl("net/ipv4/tcp_keepalive_time", "60")
	testnet.Wait(t, 15*time.Second, "the other namespace still watched", tunable(nss[1].Name, "resolved"))
	if code := a.stop(syscall.SIGTERM); code != 0 {
		t.Errorf("SIGTERM: exit %d, want 0:\n%s", code, a.logs())
	}
}
