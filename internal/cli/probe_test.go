package cli

// End-to-end tests of tcpkeep probe: the built binary, run in namespaces behind a
// real stateful firewall (testnet.Router), checked by its records and exit codes.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpkeep/tcpkeep/internal/proc"
	"github.com/tcpkeep/tcpkeep/internal/testnet"
	"github.com/tcpkeep/tcpkeep/probe"
)

// serveCLI starts `tcpkeep probe serve` in the router's server namespace and
// waits for its "listening" record. When the test ends it sends SIGTERM and
// checks that the server stops cleanly (exit 0, a "stopped" record).
func serveCLI(t *testing.T, r *testnet.Router, addr string) {
	t.Helper()
	cmd := exec.Command(tcpkeepBin, "--netns", r.Server.Name, "-o", "ndjson", "probe", "serve", "--listen", addr)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	select {
	case l := <-lines:
		if !strings.Contains(l, `"state":"listening"`) {
			t.Fatalf("probe serve's first record: %s", l)
		}
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("probe serve did not start listening within 10 s: %s", stderr.String())
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		var last string
		for l := range lines {
			last = l
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("probe serve after SIGTERM: %v: %s", err, stderr.String())
			}
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			t.Error("probe serve did not stop within 5 s of SIGTERM")
		}
		if !strings.Contains(last, `"state":"stopped"`) {
			t.Errorf("probe serve's last record: %s", last)
		}
	})
}

// TestProbeCLI runs the heartbeat client against `tcpkeep probe serve` through a
// firewall: alive (exit 0, a beat record per ping and a verdict), ended by SIGINT
// (exit 0 with its verdict), usage and connection errors (one stderr line, no
// verdict), and a server whose link went down (exit 2, declared dead in time).
func TestProbeCLI(t *testing.T) {
	r := testnet.NewRouter(t, 2*time.Second)
	addr := r.ServerAddr(7077)
	serveCLI(t, r, addr)
	cns := r.Client.Name

	t.Run("alive", func(t *testing.T) {
		res := runBin(t, "--netns", cns, "-o", "ndjson", "probe", addr, "--interval", "200ms", "--count", "5")
		if res.code != 0 || res.stderr != "" {
			t.Fatalf("exit %d, stderr %q; want 0 and nothing", res.code, res.stderr)
		}
		recs := records(t, res.stdout, cns)
		beats, verdicts := ofType(recs, "beat"), ofType(recs, "verdict")
		if len(beats) != 5 || len(verdicts) != 1 || recs[len(recs)-1]["type"] != "verdict" {
			t.Fatalf("%d beats, %d verdicts; want 5 then 1:\n%s", len(beats), len(verdicts), res.stdout)
		}
		for i, b := range beats {
			if b["seq"] != float64(i+1) || b["result"] != "ok" || b["rtt_us"] == nil || b["remote"] != addr {
				t.Fatalf("beat %d: %v", i+1, b)
			}
		}
		v := verdicts[0]
		if v["alive"] != true || v["sent"] != float64(5) || v["received"] != float64(5) || v["loss"] != float64(0) {
			t.Fatalf("verdict %v: want alive, 5 of 5, no loss", v)
		}
		mn, avg, mx := v["rtt_min_us"].(float64), v["rtt_avg_us"].(float64), v["rtt_max_us"].(float64)
		if !(mn <= avg && avg <= mx && mx < 1e6) {
			t.Fatalf("rtt min/avg/max %v/%v/%v", mn, avg, mx)
		}
	})
	t.Run("table", func(t *testing.T) {
		res := runBin(t, "--netns", cns, "probe", addr, "--interval", "100ms", "--count", "2", "--keepalive", "5s/1s/3", "--user-timeout", "2s")
		if res.code != 0 || !strings.Contains(res.stdout, "seq=2 time=") ||
			!strings.Contains(res.stdout, "2 sent, 2 received, 0% loss, rtt min/avg/max = ") ||
			!strings.Contains(res.stdout, "keepalive 5/1/3, TCP_USER_TIMEOUT 2s") || !strings.HasSuffix(res.stdout, "alive\n") {
			t.Fatalf("exit %d:\n%s%s", res.code, res.stdout, res.stderr)
		}
	})
	t.Run("interrupted", func(t *testing.T) {
		cmd := exec.Command(tcpkeepBin, "--netns", cns, "-o", "ndjson", "probe", addr, "--interval", "100ms")
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		var out strings.Builder
		for n := 0; n < 3 && sc.Scan(); n++ {
			out.WriteString(sc.Text() + "\n")
		}
		cmd.Process.Signal(os.Interrupt)
		rest, _ := io.ReadAll(stdout)
		out.Write(rest)
		if err := cmd.Wait(); err != nil {
			t.Fatalf("after SIGINT: %v; want exit 0", err)
		}
		recs := records(t, out.String(), cns)
		v := recs[len(recs)-1]
		if v["type"] != "verdict" || v["alive"] != true || v["sent"].(float64) < 3 {
			t.Fatalf("last record after SIGINT: %v; want an alive verdict of at least 3 beats", v)
		}
	})
	t.Run("usage errors", func(t *testing.T) {
		for _, args := range [][]string{
			{"probe"},
			{"probe", addr, "--interval", "1s", "--timeout", "2s"},
			{"probe", addr, "--misses", "0"},
			{"probe", addr, "--keepalive", "5s/1s"},
			{"probe", addr, "--keepalive", "1.5/1/3"},
			{"probe", "10.78.2.2:99999"},
			{"probe", addr, "extra"},
			{"probe", "idle", addr, "--min", "10s", "--max", "5s"},
			{"probe", "serve", "--listen", "nowhere"},
		} {
			res := runBin(t, append([]string{"--netns", cns}, args...)...)
			// The heartbeat client keeps 2 for "dead": its usage errors exit 1.
			want := 1
			if len(args) > 1 && (args[1] == "idle" || args[1] == "serve") {
				want = 2
			}
			if res.code != want || res.stdout != "" || !strings.HasPrefix(res.stderr, "tcpkeep: ") || strings.Count(res.stderr, "\n") != 1 {
				t.Errorf("%v: exit %d, stdout %q, stderr %q; want %d, nothing, one tcpkeep: line", args, res.code, res.stdout, res.stderr, want)
			}
		}
	})
	t.Run("cannot connect", func(t *testing.T) {
		res := runBin(t, "--netns", cns, "-o", "ndjson", "probe", r.ServerAddr(7078), "--count", "1")
		if res.code != 1 || res.stdout != "" || !strings.HasPrefix(res.stderr, "tcpkeep: ") {
			t.Fatalf("exit %d, stdout %q, stderr %q; want 1, nothing, a tcpkeep: line", res.code, res.stdout, res.stderr)
		}
	})
	t.Run("dead", func(t *testing.T) {
		cmd := exec.Command(tcpkeepBin, "--netns", cns, "-o", "ndjson", "probe", addr, "--interval", "200ms", "--timeout", "100ms", "--misses", "3")
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		var out strings.Builder
		for n := 0; n < 3 && sc.Scan(); n++ {
			out.WriteString(sc.Text() + "\n")
		}
		r.ServerDown()
		down := time.Now()
		rest, _ := io.ReadAll(stdout)
		took := time.Since(down)
		out.Write(rest)
		err = cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 || stderr.Len() != 0 {
			t.Fatalf("a vanished server: %v, stderr %q; want exit 2 and nothing on stderr", err, stderr.String())
		}
		recs := records(t, out.String(), cns)
		v := recs[len(recs)-1]
		if v["type"] != "verdict" || v["alive"] != false || v["reason"] == nil {
			t.Fatalf("last record: %v; want a dead verdict with a reason", v)
		}
		if miss := recs[len(recs)-2]; miss["result"] != "miss" || miss["rtt_us"] != nil {
			t.Fatalf("last beat: %v; want a miss", miss)
		}
		// interval x misses + timeout, and the time a process takes to print and exit.
		bound := 3*200*time.Millisecond + 100*time.Millisecond
		t.Logf("declared dead %v after the link went down (bound %v)", took, bound)
		if took > bound+500*time.Millisecond {
			t.Fatalf("declared dead %v after the link went down, bound %v", took, bound)
		}
	})
}

// keepaliveOnly turns SO_KEEPALIVE on and nothing else: the socket takes the
// namespace's tcp_keepalive_* sysctls.
func keepaliveOnly(fd int) error {
	return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1)
}

// keepIdle is the TCP_KEEPIDLE a socket uses: its own, or its namespace's sysctl.
func keepIdle(t *testing.T, c syscall.Conn) time.Duration {
	t.Helper()
	o, err := proc.ReadOwn(c)
	if err != nil || !o.KeepaliveOn {
		t.Fatalf("socket options %+v, %v: want SO_KEEPALIVE on", o, err)
	}
	return o.Keepalive.Time
}

// TestProbeIdleFeedsTheTuner is the tuner's end-to-end proof, behind a firewall
// that forgets flows idle for 3 s. In the client's namespace, a connection with
// SO_KEEPALIVE and the kernel's default sysctls dies idling past that. `tcpkeep
// probe idle` measures the firewall, and the `sysctl recommend` line it prints,
// run with --apply, sets the namespace's keepalive; then a new connection with
// SO_KEEPALIVE and no per-socket values survives the same idle period, and when
// the server vanishes the kernel declares it dead within the recommended time.
func TestProbeIdleFeedsTheTuner(t *testing.T) {
	const routerTimeout = 3 * time.Second
	r := testnet.NewRouter(t, routerTimeout)
	addr := r.ServerAddr(7077)
	serveCLI(t, r, addr)
	cns := r.Client.Name
	idle := 2*routerTimeout - time.Second // well past the firewall's timeout

	// Before: the kernel defaults. The first probe would come after 2 hours.
	before := r.Client.Dial(addr, testnet.Control(keepaliveOnly))
	if got := keepIdle(t, before); got != 7200*time.Second {
		t.Fatalf("TCP_KEEPIDLE with the default sysctls = %v, want 2h", got)
	}
	p := probe.NewPinger(before)
	if _, err := p.Ping(context.Background(), time.Second); err != nil {
		t.Fatalf("no heartbeat through the firewall: %v", err)
	}
	time.Sleep(idle) // the idle period is what is tested
	if _, err := p.Ping(context.Background(), time.Second); err == nil {
		t.Fatalf("a connection idle for %v with the default keepalive crossed a firewall that forgets after %v", idle, routerTimeout)
	}

	// Measure the firewall, and take the recommendation probe idle prints.
	res := runBin(t, "--netns", cns, "-o", "ndjson", "probe", "idle", addr, "--min", "1s", "--max", "8s", "--resolution", "1s", "--timeout", "1s")
	if res.code != 0 {
		t.Fatalf("probe idle: exit %d: %s", res.code, res.stderr)
	}
	recs := records(t, res.stdout, cns)
	found := ofType(recs, "path_idle")
	if len(found) != 1 || float64(len(ofType(recs, "idle_trial"))) != found[0]["trials"] {
		t.Fatalf("want idle_trial records and one path_idle record:\n%s", res.stdout)
	}
	pi := found[0]
	est := time.Duration(pi["path_idle_timeout_s"].(float64)) * time.Second
	t.Logf("probe idle: %v", pi)
	if d := est - routerTimeout; d > time.Second || d < -time.Second || pi["died_s"] == nil || pi["survived_s"].(float64) > pi["died_s"].(float64) {
		t.Fatalf("path_idle %v: want the router's %v within 1 s, survived below died", pi, routerTimeout)
	}
	want := "tcpkeep --netns " + cns + " sysctl recommend --path-idle-timeout " + strconv.Itoa(int(est/time.Second)) + "s"
	if pi["recommend"] != want {
		t.Fatalf("recommend %q, want %q", pi["recommend"], want)
	}
	line := strings.Fields(pi["recommend"].(string))[1:]
	applied := runBin(t, append(line, "--apply", "-o", "ndjson")...)
	if applied.code != 0 {
		t.Fatalf("%s --apply: exit %d: %s", pi["recommend"], applied.code, applied.stderr)
	}
	var rec struct {
		Time    int64 `json:"keepalive_time_s"`
		Detect  int64 `json:"dead_peer_detect_s"`
		Applied bool  `json:"applied"`
	}
	if err := json.Unmarshal([]byte(applied.stdout), &rec); err != nil || !rec.Applied {
		t.Fatalf("recommend --apply wrote %q (%v)", applied.stdout, err)
	}
	if got := r.Client.ReadSysctl("net/ipv4/tcp_keepalive_time"); got != strconv.FormatInt(rec.Time, 10) || time.Duration(rec.Time)*time.Second >= routerTimeout {
		t.Fatalf("client's tcp_keepalive_time = %s after --apply of %d; want it below the router's %v", got, rec.Time, routerTimeout)
	}

	// After: a new connection with SO_KEEPALIVE alone takes the new values.
	after := r.Client.Dial(addr, testnet.Control(keepaliveOnly))
	if got := keepIdle(t, after); got != time.Duration(rec.Time)*time.Second {
		t.Fatalf("TCP_KEEPIDLE of a new socket = %v, want the applied %ds", got, rec.Time)
	}
	p = probe.NewPinger(after)
	if _, err := p.Ping(context.Background(), time.Second); err != nil {
		t.Fatal(err)
	}
	time.Sleep(idle)
	if _, err := p.Ping(context.Background(), time.Second); err != nil {
		t.Fatalf("after the tuner, a connection idle for %v died behind the firewall: %v", idle, err)
	}
	last := time.Now()

	// The server vanishes: the kernel's keepalive declares it dead in time.
	r.ServerDown()
	after.SetReadDeadline(time.Now().Add(time.Duration(rec.Detect)*time.Second + 10*time.Second))
	_, err := after.Read(make([]byte, 1))
	took := time.Since(last)
	t.Logf("kernel dropped the connection %v after its last answer: %v (recommended detection %ds)", took, err, rec.Detect)
	if !errors.Is(err, syscall.ETIMEDOUT) {
		t.Fatalf("read on a connection to a vanished server: %v, want ETIMEDOUT from keepalive", err)
	}
	if limit := time.Duration(rec.Detect)*time.Second + time.Second; took > limit {
		t.Fatalf("dead peer declared %v after the last answer; recommended within %ds", took, rec.Detect)
	}
}
