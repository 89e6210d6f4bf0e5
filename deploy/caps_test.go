package deploy

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tcpkeep/tcpkeep/internal/testnet"
)

// capsRun runs the built tcpkeep with exactly these capabilities (inheritable,
// ambient and bounding, as systemd's AmbientCapabilities and
// CapabilityBoundingSet leave them) and no_new_privs, as uid (65534 stands for
// the watch unit's DynamicUser), inside ns when it is set (as the process runs
// there, without --netns). It returns stdout, stderr and the exit code.
func capsRun(t *testing.T, caps []string, uid int, ns string, args ...string) (string, string, int) {
	t.Helper()
	setpriv := tool(t, "setpriv", "util-linux")
	set := "-all"
	for _, c := range caps {
		set += ",+" + strings.ToLower(strings.TrimPrefix(c, "CAP_"))
	}
	argv := []string{setpriv, "--inh-caps=" + set, "--ambient-caps=" + set, "--bounding-set=" + set, "--no-new-privs"}
	if uid != 0 {
		id := strconv.Itoa(uid)
		argv = append(argv, "--reuid="+id, "--regid="+id, "--clear-groups")
	}
	argv = append(argv, bin)
	argv = append(argv, args...)
	if ns != "" {
		argv = append([]string{"ip", "netns", "exec", ns}, argv...)
	}
	var out, errb bytes.Buffer
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

// without is caps less one.
func without(caps []string, c string) []string {
	var out []string
	for _, x := range caps {
		if x != c {
			out = append(out, x)
		}
	}
	return out
}

// TestWatchUnitCapabilities: the watch unit's four capabilities, held by an
// unprivileged user as DynamicUser gives them, are enough to enter another
// namespace, name the process owning a socket there and read its options
// (the socket belongs to another user: this test, root), and close it; and
// each of the four is needed for one of these. (watch itself comes in round
// 2; conns and kill use the same kernel interfaces.)
func TestWatchUnitCapabilities(t *testing.T) {
	testnet.RequireRoot(t)
	caps := unitCaps["systemd/tcpkeep-watch.service"]
	ns := testnet.NewNS(t)
	l := ns.Listen("127.0.0.1:0")
	c := ns.Dial(l.Addr().String(), testnet.Keepalive(time.Minute, time.Minute, 5))
	l.SetDeadline(time.Now().Add(5 * time.Second))
	s, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	conns := []string{"--netns", ns.Name, "conns", "-p", "--sockopts", "-o", "ndjson", "--dport", port}
	owned := func(out string) (pid bool, opts bool) {
		for _, line := range strings.Split(out, "\n") {
			var r map[string]any
			if json.Unmarshal([]byte(line), &r) != nil || r["type"] != "socket" {
				continue
			}
			_, pid = r["pid"]
			_, opts = r["so_keepalive"]
		}
		return pid, opts
	}
	me := strconv.Itoa(os.Getpid())

	out, errs, code := capsRun(t, caps, 65534, "", conns...)
	if pid, opts := owned(out); code != 0 || !pid || !opts || !strings.Contains(out, `"pid":`+me) {
		t.Fatalf("with %v: exit %d, owner %v, options %v: %s%s", caps, code, pid, opts, out, errs)
	}
	for _, c := range []struct {
		drop string
		what string
		ok   func(out string, code int) bool
	}{
		{"CAP_SYS_ADMIN", "entering the namespace fails", func(out string, code int) bool { return code == 1 }},
		{"CAP_SYS_PTRACE", "no owner, no options", func(out string, code int) bool { pid, opts := owned(out); return code == 0 && !pid && !opts }},
		{"CAP_DAC_READ_SEARCH", "no owner, no options", func(out string, code int) bool { pid, opts := owned(out); return code == 0 && !pid && !opts }},
	} {
		out, errs, code := capsRun(t, without(caps, c.drop), 65534, "", conns...)
		if !c.ok(out, code) {
			t.Errorf("without %s, want %s: exit %d: %s%s", c.drop, c.what, code, out, errs)
		}
	}

	kill := []string{"--netns", ns.Name, "kill", "-o", "ndjson", "--dport", port}
	if _, errs, code := capsRun(t, without(caps, "CAP_NET_ADMIN"), 65534, "", kill...); code != 1 || !strings.Contains(errs, "CAP_NET_ADMIN") {
		t.Errorf("kill without CAP_NET_ADMIN: exit %d, %s; want 1 and a word on CAP_NET_ADMIN", code, errs)
	}
	if out, errs, code := capsRun(t, caps, 65534, "", kill...); code != 0 || !strings.Contains(out, `"result":"closed"`) {
		t.Errorf("kill with %v: exit %d: %s%s", caps, code, out, errs)
	}
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("the connection is still open after kill")
	}
}

// TestAuditUnitCapabilities: the audit unit's two capabilities, held by root
// as the unit runs it, are enough for its ExecStart: the audit runs, the
// owner of a flagged socket is named, the textfile is written; without
// CAP_SYS_PTRACE the owner is not.
func TestAuditUnitCapabilities(t *testing.T) {
	testnet.RequireRoot(t)
	caps := unitCaps["systemd/tcpkeep-audit.service"]
	u := readUnit(t, "systemd/tcpkeep-audit.service")
	args := strings.Fields(u.get("Service", "ExecStart"))[1:]
	prom := filepath.Join(t.TempDir(), "tcpkeep.prom")
	for i, a := range args {
		if a == "--prom-file" {
			args[i+1] = prom
		}
	}
	// A listener whose accept queue is full: listen_queue_full, critical.
	ns := testnet.NewNS(t)
	ns.ListenBacklog(7444, 1)
	for range 3 {
		ns.Do(func() error {
			d := net.Dialer{Timeout: 200 * time.Millisecond}
			if c, err := d.Dial("tcp", "127.0.0.1:7444"); err == nil {
				t.Cleanup(func() { c.Close() })
			}
			return nil
		})
	}
	me := "pid " + strconv.Itoa(os.Getpid())

	out, errs, code := capsRun(t, caps, 0, ns.Name, args...)
	if code != 2 || !strings.Contains(out, `"code":"listen_queue_full"`) || !strings.Contains(out, me) {
		t.Fatalf("with %v: exit %d (want 2, critical), listen_queue_full naming %s: %s%s", caps, code, me, out, errs)
	}
	if b, err := os.ReadFile(prom); err != nil || !bytes.Contains(b, []byte("tcpkeep_audit_success")) {
		t.Errorf("textfile: %v: %s", err, b)
	}
	out, errs, code = capsRun(t, without(caps, "CAP_SYS_PTRACE"), 0, ns.Name, args...)
	if code != 2 || strings.Contains(out, me) {
		t.Errorf("without CAP_SYS_PTRACE: exit %d, want 2 and no owner: %s%s", code, out, errs)
	}
}

// TestWatchUnitRuns: tcpkeep watch as the watch unit runs it, an unprivileged
// user holding exactly its four capabilities, in a namespace it enters: it
// audits, names the owner of a flagged socket (another user's: this test's,
// root), subscribes to the destroy broadcasts, closes what --kill says, and
// exits 0 on SIGTERM. --netns stands in for the unit's --all-netns, which
// would watch every namespace of the test machine.
func TestWatchUnitRuns(t *testing.T) {
	testnet.RequireRoot(t)
	setpriv := tool(t, "setpriv", "util-linux")
	caps := unitCaps["systemd/tcpkeep-watch.service"]
	set := "-all"
	for _, c := range caps {
		set += ",+" + strings.ToLower(strings.TrimPrefix(c, "CAP_"))
	}
	ns := testnet.NewNS(t)
	l := ns.Listen("127.0.0.1:0")
	c := ns.Dial(l.Addr().String())
	l.SetDeadline(time.Now().Add(5 * time.Second))
	s, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	cmd := exec.Command(setpriv, "--inh-caps="+set, "--ambient-caps="+set, "--bounding-set="+set, "--no-new-privs",
		"--reuid=65534", "--regid=65534", "--clear-groups",
		bin, "--netns", ns.Name, "watch", "--listen", "127.0.0.1:0", "--interval", "200ms",
		"--idle-limit", "1ms", "--kill", "idle_overlong", "--kill-max", "1")
	var out, errb syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill() // by PID: the process this test started
	me := `"pid":` + strconv.Itoa(os.Getpid())
	testnet.Wait(t, 15*time.Second, "a socket of this test's closed by watch --kill", func() bool {
		o := out.String()
		return strings.Contains(o, `"type":"action"`) && strings.Contains(o, `"result":"closed"`) && strings.Contains(o, `"how":"killed"`)
	})
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Errorf("watch after SIGTERM: %v, want exit 0\n%s", err, errb.String())
	}
	o, logs := out.String(), errb.String()
	if !strings.Contains(o, `"event":"opened"`) || !strings.Contains(o, me) {
		t.Errorf("no opened finding naming this test's process (%s):\n%s", me, o)
	}
	if strings.Contains(logs, `"level":"WARN"`) {
		t.Errorf("watch warned with the unit's capabilities:\n%s", logs)
	}
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("the flagged connection is still open")
	}
}

// syncBuffer is a bytes.Buffer a process writes and a test reads at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
