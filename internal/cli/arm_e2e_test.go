package cli

// tcpkeep arm and kill --via-owner, the built binary against real programs
// (testnet.Program: the test binary re-executed in a namespace, holding
// sockets with plain system calls, never touching keepalive itself).

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tcpkeep/tcpkeep/diag"
	"github.com/tcpkeep/tcpkeep/internal/netns"
	"github.com/tcpkeep/tcpkeep/internal/sweep"
	"github.com/tcpkeep/tcpkeep/internal/testnet"
	"github.com/tcpkeep/tcpkeep/sysctl"
)

// armRecords splits arm's ndjson output into its actions and its summary,
// which must come last, and checks their keys against the schema: the action
// key set, and before and after each the five options.
func armRecords(t *testing.T, out, netns string) (acts []map[string]any, sum map[string]any) {
	t.Helper()
	for _, r := range records(t, out, netns) {
		switch r["type"] {
		case "action":
			if sum != nil {
				t.Fatalf("action after the summary: %v", r)
			}
			checkArmAction(t, r)
			acts = append(acts, r)
		case "arm_summary":
			sum = r
			if ks := keys(r); !slices.Equal(ks, wantKeys["arm_summary"]) {
				t.Errorf("arm_summary keys %v, want %v", ks, wantKeys["arm_summary"])
			}
		default:
			t.Fatalf("unexpected record %v", r)
		}
	}
	if sum == nil {
		t.Fatalf("no summary in:\n%s", out)
	}
	return acts, sum
}

// checkArmAction checks one action record's keys (top level, or in a json
// document's array).
func checkArmAction(t *testing.T, a map[string]any) {
	t.Helper()
	ks := slices.DeleteFunc(keys(a), func(k string) bool { return slices.Contains(optional["action"], k) })
	if !slices.Equal(ks, wantKeys["action"]) || a["action"] != "arm" {
		t.Errorf("action keys %v (action %v), want %v and arm", ks, a["action"], wantKeys["action"])
	}
	for _, k := range []string{"before", "after"} {
		o, ok := a[k].(map[string]any)
		if !ok {
			continue
		}
		if ks := keys(o); !slices.Equal(ks, []string{"keepcnt", "keepidle_s", "keepintvl_s", "so_keepalive", "user_timeout_ms"}) {
			t.Errorf("%s keys %v", k, ks)
		}
	}
}

// opts is an action's before or after, as "on 2/1/3 uto 0" or "off ...".
func opts(a map[string]any, k string) string {
	o, ok := a[k].(map[string]any)
	if !ok {
		return "-"
	}
	on := "off"
	if o["so_keepalive"] == true {
		on = "on"
	}
	return fmt.Sprintf("%s %v/%v/%v uto %v", on, o["keepidle_s"], o["keepintvl_s"], o["keepcnt"], o["user_timeout_ms"])
}

// TestArmEndToEnd: a server that never touches keepalive holds three
// connections and a fourth on another port. A dry run changes nothing;
// tcpkeep --netns NS arm arms the three (the fourth is not selected); a
// second run finds them unchanged; then the clients vanish and the kernel
// drops each connection when the armed values say (tcp_keepalive_timer:
// TCP_KEEPIDLE after it last heard from the peer, or at once if that is
// already past, then TCP_KEEPCNT probes TCP_KEEPINTVL apart), measured
// against when the kernel says it last heard from the peer.
func TestArmEndToEnd(t *testing.T) {
	p := testnet.NewPair(t)
	srv := p.B.Program()
	lfd, port := srv.Listen("10.77.0.2:0")
	ctlLfd, ctlPort := srv.Listen("10.77.0.2:0")
	fds := map[int]bool{}
	for range 3 {
		p.A.Dial(fmt.Sprintf("10.77.0.2:%d", port))
		fd := srv.Accept(lfd)
		srv.Watch(fd)
		fds[fd] = true
	}
	p.A.Dial(fmt.Sprintf("10.77.0.2:%d", ctlPort))
	ctlFd := srv.Accept(ctlLfd)
	srv.Watch(ctlFd)
	arm := func(args ...string) result {
		return runBin(t, append([]string{"--netns", p.B.Name, "arm", "--sport", fmt.Sprint(port), "--time", "2", "--intvl", "1", "--probes", "3"}, args...)...)
	}

	// 1. A dry run reads and sets nothing.
	r := arm("--dry-run", "-o", "ndjson")
	acts, sum := armRecords(t, r.stdout, p.B.Name)
	if r.code != 0 || r.stderr != "" || len(acts) != 3 || sum["would_arm"] != 3.0 || sum["armed"] != 0.0 || sum["dry_run"] != true {
		t.Fatalf("dry run: exit %d stderr %q:\n%s", r.code, r.stderr, r.stdout)
	}
	for _, a := range acts {
		s := a["socket"].(map[string]any)
		if a["result"] != "would_arm" || opts(a, "before") != "off 7200/75/9 uto 0" || opts(a, "after") != "-" || s["pid"] != float64(srv.PID) {
			t.Errorf("dry run action %v, want would_arm, keepalive off before, taken from pid %d", a, srv.PID)
		}
	}
	for fd := range fds {
		if o := srv.Opts(fd); o.KeepAlive {
			t.Fatalf("fd %d has keepalive after a dry run: %+v", fd, o)
		}
	}

	// 2. Arm, as one json document.
	armedAt := time.Now()
	r = arm("-o", "json")
	var doc struct {
		Type    string           `json:"type"`
		Actions []map[string]any `json:"actions"`
		Summary map[string]any   `json:"summary"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatalf("-o json: %v\n%s", err, r.stdout)
	}
	if r.code != 0 || doc.Type != "arm" || len(doc.Actions) != 3 || doc.Summary["armed"] != 3.0 || doc.Summary["failed"] != 0.0 {
		t.Fatalf("arm: exit %d stderr %q: %s", r.code, r.stderr, r.stdout)
	}
	if v := doc.Summary["values"].(map[string]any); v["keepidle_s"] != 2.0 || v["keepintvl_s"] != 1.0 || v["keepcnt"] != 3.0 || v["user_timeout_ms"] != nil {
		t.Errorf("summary values %v, want 2/1/3 and no user timeout", v)
	}
	for _, a := range doc.Actions {
		checkArmAction(t, a)
		if a["result"] != "armed" || opts(a, "after") != "on 2/1/3 uto 0" {
			t.Errorf("action %v, want armed with 2/1/3", a)
		}
	}
	for fd := range fds {
		if o := srv.Opts(fd); !o.KeepAlive || o.Idle != 2*time.Second || o.Intvl != time.Second || o.Cnt != 3 {
			t.Errorf("fd %d: the owner reads %+v, want keepalive 2s/1s/3", fd, o)
		}
	}
	if o := srv.Opts(ctlFd); o.KeepAlive {
		t.Errorf("the connection on port %d was not selected but is armed: %+v", ctlPort, o)
	}

	// 3. Again: nothing to change, exit 0, the table says so.
	r = arm()
	if r.code != 0 || !strings.Contains(r.stdout, "0 armed with 2s/1s/3, 3 already were") || strings.Count(r.stdout, "unchanged") != 3 {
		t.Fatalf("second run: exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}

	// 4. The clients vanish. When each connection last heard from its peer,
	// from the kernel's tcp_info, read before any probe could go out.
	p.A.LinkDown()
	c, err := diag.Dial(p.B.NetNS())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	heard := map[uint32]time.Time{}
	at := time.Now()
	for s, err := range c.Sockets(context.Background(), &diag.Filter{States: diag.Of(diag.StateEstablished), SPort: diag.PortRange{Lo: port, Hi: port}}) {
		if err != nil {
			t.Fatal(err)
		}
		heard[s.Inode] = at.Add(-min(s.Info.LastAckRecv, s.Info.LastDataRecv))
	}
	var deltas []string
	for fd := range fds {
		h, ok := heard[srv.Inode(fd)]
		if !ok {
			t.Fatalf("fd %d is not in the dump", fd)
		}
		first := h.Add(2 * time.Second) // TCP_KEEPIDLE after it last heard
		if first.Before(armedAt) {
			first = armedAt // already silent longer: the timer fires at once
		}
		predicted := first.Add(3 * time.Second) // TCP_KEEPCNT x TCP_KEEPINTVL
		e, ok := srv.WaitEnded(fd, time.Until(predicted)+10*time.Second)
		if !ok {
			t.Fatalf("fd %d: still open 10s after the predicted drop", fd)
		}
		d := e.At.Sub(predicted)
		deltas = append(deltas, fmt.Sprintf("%+dms", d.Milliseconds()))
		if e.Result != "ETIMEDOUT" || d < -20*time.Millisecond || d > time.Second {
			t.Errorf("fd %d: reads ended with %s %v from the prediction, want ETIMEDOUT within -20ms..+1s", fd, e.Result, d)
		}
	}
	t.Logf("armed 2s/1s/3 through tcpkeep arm: dropped %s from the predicted drop (last heard + 2s, or the arming if later, + 3 x 1s)", strings.Join(deltas, ", "))
	if e, ok := srv.Ended(ctlFd); ok {
		t.Errorf("the unselected connection ended too (%s)", e.Result)
	}
}

// TestArmListenerAndPID: --state listening arms a listener, and the
// connection it accepts next has the options (the one accepted before
// does not); --pid selects only that process's sockets; the table names the
// owner with -p; a socket of another process is left alone.
func TestArmListenerAndPID(t *testing.T) {
	ns := testnet.NewNS(t)
	srv, other := ns.Program(), ns.Program()
	lfd, port := srv.Listen("127.0.0.1:0")
	olfd, oport := other.Listen("127.0.0.1:0")
	ns.Dial(fmt.Sprintf("127.0.0.1:%d", port))
	before := srv.Accept(lfd)
	ns.Dial(fmt.Sprintf("127.0.0.1:%d", oport))
	ofd := other.Accept(olfd)

	r := runBin(t, "--netns", ns.Name, "arm", "--state", "listening", "--sport", fmt.Sprint(port),
		"--time", "7", "--intvl", "3", "--probes", "4", "--user-timeout", "19s", "-p")
	if r.code != 0 || !strings.Contains(r.stdout, fmt.Sprintf("%d/", srv.PID)) || !strings.Contains(r.stdout, fmt.Sprintf(" fd %d ", lfd)) ||
		!strings.Contains(r.stdout, "7s/3s/4 uto 19s") || !strings.Contains(r.stdout, "LISTEN") {
		t.Fatalf("arm the listener: exit %d stderr %q:\n%s", r.code, r.stderr, r.stdout)
	}
	ns.Dial(fmt.Sprintf("127.0.0.1:%d", port))
	after := srv.Accept(lfd)
	if o := srv.Opts(after); !o.KeepAlive || o.Idle != 7*time.Second || o.Intvl != 3*time.Second || o.Cnt != 4 || o.UserTimeout != 19*time.Second {
		t.Errorf("the connection accepted after arming: %+v, want 7s/3s/4 and a user timeout of 19s", o)
	}
	if o := srv.Opts(before); o.KeepAlive {
		t.Errorf("the connection accepted before arming has keepalive: %+v", o)
	}

	// --pid alone is a selection: only other's connection (and not its listener).
	r = runBin(t, "--netns", ns.Name, "arm", "--pid", fmt.Sprint(other.PID), "--time", "30", "--intvl", "5", "--probes", "3", "-o", "ndjson")
	acts, sum := armRecords(t, r.stdout, ns.Name)
	if r.code != 0 || len(acts) != 1 || sum["armed"] != 1.0 || acts[0]["socket"].(map[string]any)["pid"] != float64(other.PID) {
		t.Fatalf("--pid %d: exit %d stderr %q:\n%s", other.PID, r.code, r.stderr, r.stdout)
	}
	if !other.Opts(ofd).KeepAlive || srv.Opts(before).KeepAlive {
		t.Errorf("--pid armed the wrong sockets: other's %+v, srv's %+v", other.Opts(ofd), srv.Opts(before))
	}
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	r = runBin(t, "--netns", ns.Name, "arm", "--pid", fmt.Sprint(gone.Process.Pid), "--time", "30", "--intvl", "5", "--probes", "3")
	if r.code != 1 {
		t.Errorf("--pid of no process: exit %d, want 1", r.code)
	}
	oneErrorLine(t, r, "is the process running?")
}

// TestArmRemedyCommandWorks: audit's sentence for idle_no_keepalive gives an
// arm command line; run as written, it arms that connection and no other.
func TestArmRemedyCommandWorks(t *testing.T) {
	ns := testnet.NewNS(t)
	srv := ns.Program()
	lfd, port := srv.Listen("127.0.0.1:0")
	ns.Dial(fmt.Sprintf("127.0.0.1:%d", port))
	fd := srv.Accept(lfd)
	ns.Dial(fmt.Sprintf("127.0.0.1:%d", port))
	fd2 := srv.Accept(lfd)
	var msg string
	testnet.Wait(t, 10*time.Second, "an idle_no_keepalive finding", func() bool {
		r := runBin(t, "--netns", ns.Name, "audit", "--max-idle", "1s", "--sport", fmt.Sprint(port), "-o", "ndjson")
		for _, f := range ofType(records(t, r.stdout, ns.Name), "finding") {
			s, _ := f["socket"].(map[string]any)
			if f["code"] == "idle_no_keepalive" && s["inode"] == float64(srv.Inode(fd)) {
				msg = f["message"].(string)
			}
		}
		return msg != ""
	})
	_, cmdline, ok := strings.Cut(msg, "arm this connection now: ")
	if !ok || !strings.HasPrefix(cmdline, "tcpkeep --netns "+ns.Name+" arm ") {
		t.Fatalf("the sentence gives no arm command: %s", msg)
	}
	t.Logf("audit says: ...%s", cmdline)
	args := strings.Fields(cmdline)[1:]
	r := runBin(t, append(args, "-o", "ndjson")...)
	acts, sum := armRecords(t, r.stdout, ns.Name)
	if r.code != 0 || len(acts) != 1 || sum["armed"] != 1.0 {
		t.Fatalf("%s: exit %d stderr %q:\n%s", cmdline, r.code, r.stderr, r.stdout)
	}
	if !srv.Opts(fd).KeepAlive || srv.Opts(fd2).KeepAlive {
		t.Errorf("the command armed %+v (the flagged one) and %+v (another), want only the flagged one", srv.Opts(fd), srv.Opts(fd2))
	}
}

// TestArmWithoutCapSysPtraceEndToEnd: tcpkeep without CAP_SYS_PTRACE (setpriv
// drops it) against another user's program: one error line that names the
// capability, exit 1, one denied action, and nothing armed.
func TestArmWithoutCapSysPtraceEndToEnd(t *testing.T) {
	ns := testnet.NewNS(t)
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Fatal("setpriv (util-linux) drops the capability: install util-linux")
	}
	srv := ns.Program(testnet.AsUser(65534, 65534))
	lfd, port := srv.Listen("127.0.0.1:0")
	var fds []int
	for range 2 {
		ns.Dial(fmt.Sprintf("127.0.0.1:%d", port))
		fds = append(fds, srv.Accept(lfd))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "setpriv", "--inh-caps=-sys_ptrace", "--bounding-set=-sys_ptrace", "--",
		tcpkeepBin, "--netns", ns.Name, "arm", "--sport", fmt.Sprint(port), "--time", "2", "--intvl", "1", "--probes", "3", "-o", "ndjson")
	var so, se strings.Builder
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	r := result{stdout: so.String(), stderr: se.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	t.Logf("without CAP_SYS_PTRACE: %s", strings.TrimSpace(r.stderr))
	if r.code != 1 {
		t.Fatalf("exit %d, want 1\n%s%s", r.code, r.stdout, r.stderr)
	}
	oneErrorLine(t, r, "lacks CAP_SYS_PTRACE")
	oneErrorLine(t, r, "nothing else was tried")
	acts, sum := armRecords(t, r.stdout, ns.Name)
	if len(acts) != 1 || acts[0]["result"] != "denied" || sum["stopped"] != true || sum["failed"] != 1.0 {
		t.Errorf("actions %v summary %v, want one denied and the run stopped", acts, sum)
	}
	for _, fd := range fds {
		if o := srv.Opts(fd); o.KeepAlive {
			t.Errorf("fd %d armed although tcpkeep was denied: %+v", fd, o)
		}
	}
}

// TestKillViaOwnerEndToEnd: kill --via-owner closes a connection through
// its owner, the path a kernel without SOCK_DESTROY takes, forced here: the
// owner's reads end with end of file, the peer reads end of file (a FIN, not
// a RST), and a connection beside it is untouched.
func TestKillViaOwnerEndToEnd(t *testing.T) {
	ns := testnet.NewNS(t)
	srv := ns.Program()
	lfd, port := srv.Listen("127.0.0.1:0")
	c := ns.Dial(fmt.Sprintf("127.0.0.1:%d", port))
	fd := srv.Accept(lfd)
	srv.Watch(fd)
	by := ns.Dial(fmt.Sprintf("127.0.0.1:%d", port))
	byFd := srv.Accept(lfd)
	srv.Watch(byFd)

	cport := c.LocalAddr().(interface{ String() string }).String()
	cport = cport[strings.LastIndexByte(cport, ':')+1:]
	r := runBin(t, "--netns", ns.Name, "kill", "--via-owner", "--sport", fmt.Sprint(port), "--dport", cport, "-o", "ndjson")
	acts, sum := killRecords(t, r.stdout, ns.Name)
	if r.code != 0 || len(acts) != 1 || acts[0]["result"] != "closed" || acts[0]["action"] != "kill" || sum["closed"] != 1.0 {
		t.Fatalf("kill --via-owner: exit %d stderr %q:\n%s", r.code, r.stderr, r.stdout)
	}
	if e, ok := srv.WaitEnded(fd, 5*time.Second); !ok || e.Result != "eof" {
		t.Errorf("the owner's reads: %+v (ended %v), want eof", e, ok)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("the peer reads %v, want EOF", err)
	}
	if e, ok := srv.Ended(byFd); ok {
		t.Errorf("the connection beside it ended too: %+v", e)
	}
	by.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := by.Write([]byte("x")); err != nil {
		t.Errorf("the connection beside it: %v", err)
	}
}

// TestArmUsageErrorExits2: the binary's usage errors exit 2 with one line.
func TestArmUsageErrorExits2(t *testing.T) {
	for _, args := range [][]string{{"arm", "--sport", "80"}, {"arm", "--time", "60", "--intvl", "10", "--probes", "5"}, {"arm", "--sport", "80", "--probes", "x"}} {
		r := runBin(t, args...)
		if r.code != 2 || r.stdout != "" {
			t.Errorf("%q: exit %d, stdout %q; want 2 and nothing", args, r.code, r.stdout)
		}
		oneErrorLine(t, r, "tcpkeep: ")
	}
}

// TestArmAllNetns: --all-netns arms in each namespace (kept to the test's
// two here), each with the model's values for its own conntrack timeout,
// its records under its name, and a netns_total with arm's counts.
func TestArmAllNetns(t *testing.T) {
	nss := testnet.NewNamespaces(t, 2)
	var inodes []uint64
	srvs, fds := map[string]*testnet.Program{}, map[string]int{}
	for i, ns := range nss {
		if ns.ReadSysctl("net/netfilter/nf_conntrack_tcp_timeout_established") == "" {
			t.Fatal("nf_conntrack is not loaded: modprobe nf_conntrack")
		}
		ns.Sysctl("net/netfilter/nf_conntrack_tcp_timeout_established", fmt.Sprint(100*(i+1)))
		srv := ns.Program()
		lfd, _ := srv.Listen("127.0.0.1:7301")
		ns.Dial("127.0.0.1:7301")
		srvs[ns.Name], fds[ns.Name] = srv, srv.Accept(lfd)
		inodes = append(inodes, inode(t, ns.NetNS().Path))
	}
	only := func(e *env) {
		e.tweak = func(c *sweep.Config, f *netns.Found) {
			f.Namespaces = slices.DeleteFunc(f.Namespaces, func(n netns.Namespace) bool { return !slices.Contains(inodes, n.Ino) })
			f.Skipped = nil
		}
	}
	r := runCLI(t, only, "--all-netns", "arm", "--sport", "7301", "--behind", "conntrack", "-o", "ndjson")
	recs := records(t, r.stdout, "")
	if r.code != 0 {
		t.Fatalf("exit %d stderr %q:\n%s", r.code, r.stderr, r.stdout)
	}
	for i, ns := range nss {
		rec, err := sysctl.Recommend(sysctl.Request{Path: sysctl.Path{IdleTimeout: time.Duration(100*(i+1)) * time.Second}})
		if err != nil {
			t.Fatal(err)
		}
		mine := ofInode(recs, inodes[i])
		acts, sums := ofType(mine, "action"), ofType(mine, "arm_summary")
		want := fmt.Sprintf("on %v/%v/%v uto 0", rec.Time.Seconds(), rec.Intvl.Seconds(), rec.Probes)
		if len(acts) != 1 || acts[0]["result"] != "armed" || opts(acts[0], "after") != want || len(sums) != 1 {
			t.Errorf("%s: actions %v summaries %v, want one armed %s", ns.Name, acts, sums, want)
		}
		if o := srvs[ns.Name].Opts(fds[ns.Name]); !o.KeepAlive || o.Idle != rec.Time || o.Intvl != rec.Intvl || o.Cnt != rec.Probes {
			t.Errorf("%s: the owner reads %+v, want %v/%v/%d", ns.Name, o, rec.Time, rec.Intvl, rec.Probes)
		}
	}
	tot := ofType(recs, "netns_total")
	if len(tot) != 1 || tot[0]["command"] != "arm" || tot[0]["armed"] != 2.0 || tot[0]["namespaces_visited"] != 2.0 {
		t.Errorf("total %v, want arm's, 2 armed in 2 namespaces", tot)
	}
}
