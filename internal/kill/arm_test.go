package kill_test

// Arming acts on sockets other processes own: every test starts real programs
// (testnet.Program, the test binary re-executed in a namespace) and checks what
// they, the dump and the kernel's timers show afterwards.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tcpkeep/tcpkeep/diag"
	"github.com/tcpkeep/tcpkeep/internal/audit"
	"github.com/tcpkeep/tcpkeep/internal/kernel"
	"github.com/tcpkeep/tcpkeep/internal/kill"
	"github.com/tcpkeep/tcpkeep/internal/netns"
	"github.com/tcpkeep/tcpkeep/internal/proc"
	"github.com/tcpkeep/tcpkeep/internal/testnet"
	"github.com/tcpkeep/tcpkeep/sysctl"
)

// armAct is a copy of a kill.ArmAction, kept after the emit call.
type armAct struct {
	sock          diag.Socket
	pid, fd       int
	mptcp         bool
	reason        string
	before, after *proc.SockOpts
	result        kill.Result
	err           error
}

func (a armAct) String() string {
	return fmt.Sprintf("%s %s pid %d fd %d: %s %v (before %+v after %+v)", a.sock.ID(), a.sock.State, a.pid, a.fd, a.result, a.err, a.before, a.after)
}

// armNS runs kill.Arm on ns.
func armNS(t *testing.T, ns *testnet.NS, cfg kill.ArmConfig) ([]armAct, kill.ArmSummary, error) {
	t.Helper()
	return armWith(kernel.Live(ns.NetNS()), cfg)
}

func armWith(k kernel.NS, cfg kill.ArmConfig) ([]armAct, kill.ArmSummary, error) {
	var acts []armAct
	sum, err := kill.Arm(context.Background(), k, cfg, func(a *kill.ArmAction) {
		c := armAct{sock: *a.Socket, fd: a.FD, mptcp: a.MPTCP, reason: a.Reason, result: a.Result, err: a.Err}
		if a.Owner != nil {
			c.pid = a.Owner.PID
		}
		if a.Before != nil {
			b := *a.Before
			c.before = &b
		}
		if a.After != nil {
			b := *a.After
			c.after = &b
		}
		acts = append(acts, c)
	})
	return acts, sum, err
}

// values builds what arming sets.
func values(time_, intvl time.Duration, probes int) proc.Keepalive {
	return proc.Keepalive{Keepalive: sysctl.Keepalive{Time: time_, Intvl: intvl, Probes: probes}}
}

// portFilter selects the sockets in states whose local port is port.
func portFilter(port uint16, states ...diag.State) *diag.Filter {
	f := &diag.Filter{SPort: diag.PortRange{Lo: port, Hi: port}}
	for _, s := range states {
		f.States |= diag.Of(s)
	}
	return f
}

// wantOpts checks the options a program reads on its own descriptor.
func wantOpts(t *testing.T, what string, got testnet.Opts, k proc.Keepalive) {
	t.Helper()
	if !got.KeepAlive || got.Idle != k.Time || got.Intvl != k.Intvl || got.Cnt != k.Probes ||
		(k.SetUserTimeout && got.UserTimeout != k.UserTimeout) {
		t.Errorf("%s: the owner reads %+v, want keepalive on with %+v", what, got, k)
	}
}

// TestArmedConnectionsDropWhenPeerVanishes: a server that never set
// SO_KEEPALIVE holds three connections; they are armed through it, then the
// clients vanish (their link goes down: no FIN, no RST), and the kernel drops
// each connection when tcp_keepalive_timer says: the armed TCP_KEEPIDLE after
// it last heard from the peer, then TCP_KEEPCNT unanswered probes
// TCP_KEEPINTVL apart. A fourth connection of the same server, not selected,
// is neither armed nor dropped.
func TestArmedConnectionsDropWhenPeerVanishes(t *testing.T) {
	p := testnet.NewPair(t)
	srv := p.B.Program()
	lfd, port := srv.Listen("10.77.0.2:0")
	ctlLfd, ctlPort := srv.Listen("10.77.0.2:0")
	const n = 3
	fds := map[int]bool{}
	for range n {
		p.A.Dial(fmt.Sprintf("10.77.0.2:%d", port))
		fd := srv.Accept(lfd)
		srv.Watch(fd)
		fds[fd] = true
	}
	p.A.Dial(fmt.Sprintf("10.77.0.2:%d", ctlPort))
	ctlFd := srv.Accept(ctlLfd)
	srv.Watch(ctlFd)
	for fd := range fds {
		if o := srv.Opts(fd); o.KeepAlive {
			t.Fatalf("fd %d has keepalive before arming: %+v", fd, o)
		}
	}

	k := values(2*time.Second, time.Second, 3)
	armedAt := time.Now()
	acts, sum, err := armNS(t, p.B, kill.ArmConfig{Filter: portFilter(port, diag.StateEstablished), All: true, Keepalive: k})
	if err != nil {
		t.Fatal(err)
	}
	if len(acts) != n || sum.Selected != n || sum.Armed != n || sum.Failed != 0 {
		t.Fatalf("actions %v summary %+v, want %d armed", acts, sum, n)
	}
	for _, a := range acts {
		if a.result != kill.Armed || a.pid != srv.PID || !fds[a.fd] || a.reason != kill.ReasonFilter {
			t.Errorf("%v: want armed, taken from pid %d", a, srv.PID)
		}
		if a.before == nil || a.before.KeepaliveOn || a.after == nil || !k.Holds(*a.after) {
			t.Errorf("%v: want keepalive off before, on with the values after", a)
		}
	}
	for fd := range fds {
		wantOpts(t, fmt.Sprintf("fd %d", fd), srv.Opts(fd), k)
	}
	if o := srv.Opts(ctlFd); o.KeepAlive {
		t.Errorf("the unselected connection was armed: %+v", o)
	}
	p.A.LinkDown()

	// When each connection last heard from its peer, from the kernel's
	// tcp_info (last_ack_recv, last_data_recv), read before any probe.
	heard := map[uint64]time.Time{}
	cookieFD := map[uint64]int{}
	at := time.Now()
	for _, s := range dump(t, p.B, portFilter(port, diag.StateEstablished)) {
		heard[s.Cookie] = at.Add(-min(s.Info.LastAckRecv, s.Info.LastDataRecv))
		if s.Timer != diag.TimerKeepalive {
			t.Errorf("%s: timer %v after arming, want keepalive", s.ID(), s.Timer)
		}
	}
	for _, a := range acts {
		cookieFD[a.sock.Cookie] = a.fd
	}
	if len(heard) != n {
		t.Fatalf("%d armed connections in the dump, want %d", len(heard), n)
	}
	// tcp_keepalive_timer: the first probe when the silence reaches
	// keepalive_time (or at once, if it already had when armed), then one per
	// keepalive_intvl; at the firing where probes_out reaches keepalive_probes
	// the connection is dropped with ETIMEDOUT.
	probes := time.Duration(k.Probes) * k.Intvl
	for ck, h := range heard {
		fd := cookieFD[ck]
		first := h.Add(k.Time)
		if first.Before(armedAt) {
			first = armedAt
		}
		predicted := first.Add(probes)
		e, ok := srv.WaitEnded(fd, time.Until(predicted)+10*time.Second)
		if !ok {
			t.Fatalf("fd %d: still open 10s after the predicted drop at %s", fd, predicted.Format(time.StampMilli))
		}
		delta := e.At.Sub(predicted)
		t.Logf("fd %d: dropped (%s) %v after it last heard from the peer; predicted %v (time %v + %d x %v); delta %+v",
			fd, e.Result, e.At.Sub(h).Round(time.Millisecond), predicted.Sub(h), k.Time, k.Probes, k.Intvl, delta.Round(time.Millisecond))
		if e.Result != "ETIMEDOUT" {
			t.Errorf("fd %d: reads ended with %s, want ETIMEDOUT", fd, e.Result)
		}
		// Never early (the kernel counts in jiffies: allow one tick and the
		// millisecond rounding of tcp_info); late by the timer wheel (each of
		// the 1+probes firings, 1-3%) and the owner's wakeup.
		if delta < -20*time.Millisecond || delta > time.Second {
			t.Errorf("fd %d: dropped %+v from the prediction, want within -20ms..+1s", fd, delta)
		}
	}
	if e, ok := srv.Ended(ctlFd); ok {
		t.Errorf("the unselected connection ended too (%s)", e.Result)
	}
	for _, s := range dump(t, p.B, portFilter(ctlPort, diag.StateEstablished)) {
		if s.Timer == diag.TimerKeepalive {
			t.Errorf("the unselected connection %s has a keepalive timer", s.ID())
		}
	}
}

// TestArmedListenerPassesToAccepted: arming a listener arms the connections
// whose handshake completes afterwards (the kernel clones the listener's
// SO_KEEPALIVE, TCP_KEEPIDLE/INTVL/CNT and TCP_USER_TIMEOUT into the new
// socket when the handshake completes, inet_csk_clone_lock, and
// tcp_create_openreq_child starts its keepalive timer). A connection accepted
// before, and one whose handshake completed before but that is accepted only
// afterwards, keep what they had.
func TestArmedListenerPassesToAccepted(t *testing.T) {
	ns := testnet.NewNS(t)
	srv := ns.Program()
	lfd, port := srv.Listen("127.0.0.1:0")
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	ns.Dial(addr)
	early := srv.Accept(lfd)
	ns.Dial(addr) // in the accept queue, not accepted yet

	k := values(2*time.Second, time.Second, 4)
	k.UserTimeout, k.SetUserTimeout = 4500*time.Millisecond, true
	acts, sum, err := armNS(t, ns, kill.ArmConfig{Filter: portFilter(port, diag.StateListen), All: true, Listeners: true, Keepalive: k})
	if err != nil {
		t.Fatal(err)
	}
	if len(acts) != 1 || acts[0].sock.State != diag.StateListen || acts[0].result != kill.Armed || acts[0].fd != lfd || sum.Armed != 1 {
		t.Fatalf("actions %v summary %+v, want the listener armed", acts, sum)
	}
	wantOpts(t, "listener", srv.Opts(lfd), k)

	queued := srv.Accept(lfd)
	ns.Dial(addr)
	late := srv.Accept(lfd)
	wantOpts(t, "connection accepted after arming", srv.Opts(late), k)
	for what, fd := range map[string]int{"accepted before arming": early, "queued before arming": queued} {
		if o := srv.Opts(fd); o.KeepAlive || o.UserTimeout != 0 {
			t.Errorf("connection %s: %+v, want it untouched", what, o)
		}
	}
	// The kernel's own view: the new connection's keepalive timer runs.
	ino := srv.Inode(late)
	var found bool
	for _, s := range dump(t, ns, portFilter(port, diag.StateEstablished)) {
		if s.Inode != ino {
			continue
		}
		found = true
		if s.Timer != diag.TimerKeepalive || s.TimerExpires > k.Time {
			t.Errorf("%s: timer %v in %v, want keepalive within %v", s.ID(), s.Timer, s.TimerExpires, k.Time)
		}
		// And through the owner, as arming reads it.
		f := proc.NewFinder("/proc", srv.PID)
		defer f.Close()
		sock, _, err := f.Take(s.Inode, s.Cookie)
		if err != nil {
			t.Fatal(err)
		}
		got, err := sock.Options()
		sock.Close()
		if err != nil || !k.Holds(got) {
			t.Errorf("read through the owner: %+v %v, want %+v", got, err, k)
		}
	}
	if !found {
		t.Fatalf("the connection accepted after arming (inode %d) is not in the dump", ino)
	}
}

// TestArmDryRunThenArmThenUnchanged: a dry run reads the options and sets
// nothing; the real run arms; a second run finds nothing to change.
func TestArmDryRunThenArmThenUnchanged(t *testing.T) {
	ns := testnet.NewNS(t)
	srv := ns.Program()
	lfd, port := srv.Listen("127.0.0.1:0")
	var fds []int
	for range 2 {
		ns.Dial(fmt.Sprintf("127.0.0.1:%d", port))
		fds = append(fds, srv.Accept(lfd))
	}
	k := values(30*time.Second, 5*time.Second, 2)
	cfg := kill.ArmConfig{Filter: portFilter(port, diag.StateEstablished), All: true, Keepalive: k, DryRun: true}
	acts, sum, err := armNS(t, ns, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(acts) != 2 || sum.WouldArm != 2 || sum.Armed != 0 || !sum.DryRun {
		t.Fatalf("dry run: actions %v summary %+v, want 2 would_arm", acts, sum)
	}
	for _, a := range acts {
		if a.result != kill.WouldArm || a.before == nil || a.before.KeepaliveOn || a.after != nil {
			t.Errorf("dry run: %v, want would_arm with the options before and none after", a)
		}
	}
	for _, fd := range fds {
		if o := srv.Opts(fd); o.KeepAlive || o.Idle != 7200*time.Second {
			t.Errorf("fd %d after a dry run: %+v, want keepalive off and the default 7200s", fd, o)
		}
	}
	for _, s := range dump(t, ns, portFilter(port, diag.StateEstablished)) {
		if s.Timer == diag.TimerKeepalive {
			t.Errorf("%s: keepalive timer after a dry run", s.ID())
		}
	}

	cfg.DryRun = false
	if acts, sum, err = armNS(t, ns, cfg); err != nil || sum.Armed != 2 {
		t.Fatalf("arm: %v summary %+v err %v, want 2 armed", acts, sum, err)
	}
	acts, sum, err = armNS(t, ns, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Unchanged != 2 || sum.Armed != 0 || len(acts) != 2 {
		t.Fatalf("second run: actions %v summary %+v, want 2 unchanged", acts, sum)
	}
	for _, a := range acts {
		if a.result != kill.Unchanged || a.before == nil || !k.Holds(*a.before) {
			t.Errorf("second run: %v, want unchanged", a)
		}
	}
}

// TestArmGoMPTCPListener: a Go program's listener is MPTCP (Go 1.24); the
// TCP dump shows its TCP subflow, which shares the MPTCP socket's inode but
// not its cookie. Arming goes through the MPTCP socket and reaches the
// connections it accepts, plain TCP and MPTCP alike, as long as the program
// does not set keepalive on them itself, which Go's defaults do.
// TCP_USER_TIMEOUT does not exist on MPTCP sockets: asking for it fails
// before anything is set.
func TestArmGoMPTCPListener(t *testing.T) {
	ns := testnet.NewNS(t)
	if v := ns.ReadSysctl("net/mptcp/enabled"); v != "1" {
		t.Fatalf("net.mptcp.enabled is %q in a new namespace, want 1", v)
	}
	srv := ns.Program()
	offFd, offPort := srv.ListenGo("127.0.0.1:0", -1) // a Go server that turned keepalive off
	defFd, defPort := srv.ListenGo("127.0.0.1:0", 0)  // Go's defaults
	k := values(3*time.Second, 2*time.Second, 4)
	for port, fd := range map[uint16]int{offPort: offFd, defPort: defFd} {
		acts, _, err := armNS(t, ns, kill.ArmConfig{Filter: portFilter(port, diag.StateListen), All: true, Listeners: true, Keepalive: k})
		if err != nil {
			t.Fatal(err)
		}
		if len(acts) != 1 || acts[0].result != kill.Armed || !acts[0].mptcp || acts[0].fd != fd {
			t.Fatalf("port %d: actions %v, want the MPTCP listener armed", port, acts)
		}
		wantOpts(t, fmt.Sprintf("Go listener on %d", port), srv.Opts(fd), k)
	}

	// Plain TCP and MPTCP clients of the server that turned keepalive off.
	ns.Dial(fmt.Sprintf("127.0.0.1:%d", offPort))
	wantOpts(t, "plain TCP connection accepted by Go", srv.Opts(srv.Accept(offFd)), k)
	ns.Dial(fmt.Sprintf("127.0.0.1:%d", offPort), func(d *net.Dialer) { d.SetMultipathTCP(true) })
	wantOpts(t, "MPTCP connection accepted by Go", srv.Opts(srv.Accept(offFd)), k)

	// Arming the established connections reaches the MPTCP one's subflow:
	// its keepalive timer restarts at the new TCP_KEEPIDLE.
	k2 := values(9*time.Second, 2*time.Second, 4)
	acts, _, err := armNS(t, ns, kill.ArmConfig{Filter: portFilter(offPort, diag.StateEstablished), All: true, Keepalive: k2})
	if err != nil {
		t.Fatal(err)
	}
	mptcp := 0
	for _, a := range acts {
		if a.result != kill.Armed {
			t.Errorf("%v: want armed", a)
		}
		if a.mptcp {
			mptcp++
		}
	}
	if len(acts) != 2 || mptcp != 1 {
		t.Fatalf("established: actions %v, want the plain and the MPTCP connection armed", acts)
	}
	for _, s := range dump(t, ns, portFilter(offPort, diag.StateEstablished)) {
		if s.Timer != diag.TimerKeepalive || s.TimerExpires <= k.Time || s.TimerExpires > k2.Time {
			t.Errorf("%s: timer %v in %v, want keepalive within %v and past the listener's %v", s.ID(), s.Timer, s.TimerExpires, k2.Time, k.Time)
		}
	}

	// Go's defaults set keepalive on each accepted connection themselves
	// (net.KeepAliveConfig: 15s, 15s, 9), over what the listener passed on.
	ns.Dial(fmt.Sprintf("127.0.0.1:%d", defPort))
	goDefault := values(15*time.Second, 15*time.Second, 9)
	wantOpts(t, "connection accepted by Go with its defaults", srv.Opts(srv.Accept(defFd)), goDefault)

	uto := values(5*time.Second, 2*time.Second, 4)
	uto.UserTimeout, uto.SetUserTimeout = 20*time.Second, true
	acts, sum, err := armNS(t, ns, kill.ArmConfig{Filter: portFilter(offPort, diag.StateListen), All: true, Listeners: true, Keepalive: uto})
	if err != nil {
		t.Fatalf("Run stopped: %v, want one unsupported socket", err)
	}
	if len(acts) != 1 || acts[0].result != kill.Unsupported || !errors.Is(acts[0].err, proc.ErrOptionUnsupported) || sum.Failed != 1 {
		t.Fatalf("TCP_USER_TIMEOUT on the MPTCP listener: actions %v summary %+v, want unsupported", acts, sum)
	}
	t.Logf("MPTCP listener and TCP_USER_TIMEOUT: %v", acts[0].err)
	wantOpts(t, "MPTCP listener after the refused TCP_USER_TIMEOUT", srv.Opts(offFd), k)
}

// TestArmSharedDescriptorOnce: two processes hold the same socket (as after a
// fork): it is armed once, through the lowest PID, and both see it.
func TestArmSharedDescriptorOnce(t *testing.T) {
	ns := testnet.NewNS(t)
	l := ns.Listen("127.0.0.1:0")
	port := uint16(l.Addr().(*net.TCPAddr).Port)
	c := ns.Dial(l.Addr().String())
	f, err := c.File()
	if err != nil {
		t.Fatal(err)
	}
	a, b := ns.Program(testnet.WithFiles(f)), ns.Program(testnet.WithFiles(f))
	f.Close()
	c.Close() // the test holds the socket no more: only the two programs do
	k := values(20*time.Second, 5*time.Second, 3)
	cfg := kill.ArmConfig{Filter: &diag.Filter{States: diag.Of(diag.StateEstablished), DPort: diag.PortRange{Lo: port, Hi: port}}, All: true, Keepalive: k}
	acts, sum, err := armNS(t, ns, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(acts) != 1 || acts[0].result != kill.Armed || acts[0].pid != min(a.PID, b.PID) || acts[0].fd != 3 || sum.Selected != 1 {
		t.Fatalf("actions %v summary %+v, want one socket armed through pid %d fd 3", acts, sum, min(a.PID, b.PID))
	}
	wantOpts(t, "first holder", a.Opts(3), k)
	wantOpts(t, "second holder", b.Opts(3), k)
	if acts, sum, err = armNS(t, ns, cfg); err != nil || len(acts) != 1 || sum.Unchanged != 1 {
		t.Fatalf("second run: %v %+v %v, want it unchanged", acts, sum, err)
	}
}

// TestArmPIDRestriction: with PID set only that process's sockets are
// selected, and a PID that does not exist is an error.
func TestArmPIDRestriction(t *testing.T) {
	ns := testnet.NewNS(t)
	one, two := ns.Program(), ns.Program()
	l1, p1 := one.Listen("127.0.0.1:0")
	l2, p2 := two.Listen("127.0.0.1:0")
	ns.Dial(fmt.Sprintf("127.0.0.1:%d", p1))
	fd1 := one.Accept(l1)
	ns.Dial(fmt.Sprintf("127.0.0.1:%d", p2))
	fd2 := two.Accept(l2)
	k := values(20*time.Second, 5*time.Second, 3)
	cfg := kill.ArmConfig{Filter: &diag.Filter{States: diag.Of(diag.StateEstablished)}, All: true, Keepalive: k, PID: two.PID}
	acts, sum, err := armNS(t, ns, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(acts) != 1 || acts[0].pid != two.PID || acts[0].fd != fd2 || acts[0].result != kill.Armed || sum.Selected != 1 {
		t.Fatalf("actions %v summary %+v, want only pid %d's connection", acts, sum, two.PID)
	}
	if one.Opts(fd1).KeepAlive {
		t.Error("another process's connection was armed")
	}
	// A PID no process has: the highest possible, beyond pid_max.
	cfg.PID = 1<<22 + 1
	if _, _, err := armNS(t, ns, cfg); !errors.Is(err, proc.ErrNoProcess) {
		t.Errorf("PID %d: %v, want ErrNoProcess", cfg.PID, err)
	}
}

// TestArmWithoutCapSysPtrace: tcpkeep without CAP_SYS_PTRACE (setpriv drops
// it) may not take another user's descriptors: the run stops at the first
// socket with one error that names the capability, and nothing changes.
func TestArmWithoutCapSysPtrace(t *testing.T) {
	ns := testnet.NewNS(t)
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Fatal("setpriv (util-linux) drops the capability: install util-linux")
	}
	srv := ns.Program(testnet.AsUser(65534, 65534))
	lfd, port := srv.Listen("127.0.0.1:0")
	for range 2 {
		ns.Dial(fmt.Sprintf("127.0.0.1:%d", port))
		srv.Watch(srv.Accept(lfd))
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("setpriv", "--inh-caps=-sys_ptrace", "--bounding-set=-sys_ptrace", "--",
		exe, "-test.run=^TestHelperArmWithoutCapSysPtrace$", "-test.v")
	cmd.Env = append(os.Environ(), fmt.Sprintf("TCPKEEP_HELPER_ARM=%s:%d", ns.Name, port))
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "denied OK") {
		t.Fatalf("without CAP_SYS_PTRACE: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "denied OK") {
			t.Log(strings.TrimSpace(line))
		}
	}
	for _, s := range dump(t, ns, portFilter(port, diag.StateEstablished)) {
		if s.Timer == diag.TimerKeepalive {
			t.Errorf("%s armed although tcpkeep was denied", s.ID())
		}
	}
}

// TestHelperArmWithoutCapSysPtrace runs only inside TestArmWithoutCapSysPtrace,
// under setpriv.
func TestHelperArmWithoutCapSysPtrace(t *testing.T) {
	spec := os.Getenv("TCPKEEP_HELPER_ARM")
	if spec == "" {
		t.Skip("helper for TestArmWithoutCapSysPtrace")
	}
	name, p, _ := strings.Cut(spec, ":")
	port, _ := strconv.Atoi(p)
	nsv := netns.NS{Spec: name, Path: netns.RunDir + "/" + name}
	filter := portFilter(uint16(port), diag.StateEstablished)
	acts, sum, err := armWith(kernel.Live(nsv), kill.ArmConfig{Filter: filter, All: true, Keepalive: values(2*time.Second, time.Second, 3)})
	var pe *proc.PermissionError
	if !errors.Is(err, kill.ErrStopped) || !errors.As(err, &pe) {
		t.Fatalf("arm without CAP_SYS_PTRACE: %v, want ErrStopped and a *proc.PermissionError", err)
	}
	if pe.Cause != proc.PermNoCapSysPtrace || pe.CapSysPtrace || !strings.Contains(pe.Error(), "CAP_SYS_PTRACE") {
		t.Fatalf("permission error %+v (%v), want cause no_cap_sys_ptrace", pe, pe)
	}
	if len(acts) != 1 || acts[0].result != kill.Denied || !sum.Stopped || sum.Failed != 1 {
		t.Fatalf("actions %v summary %+v, want one denied and the run stopped", acts, sum)
	}
	fmt.Println("denied OK (arm):", err)

	// The via-owner kill is refused the same way.
	closer := &kill.OwnerCloser{Force: true}
	defer closer.Close()
	var results []kill.Result
	_, err = kill.Run(context.Background(), kernel.Live(nsv), kill.Config{Filter: filter, All: true, ViaOwner: closer}, func(a *kill.Action) { results = append(results, a.Result) })
	if !errors.Is(err, kill.ErrStopped) || !errors.As(err, &pe) || len(results) != 1 || results[0] != kill.Denied {
		t.Fatalf("kill via owner without CAP_SYS_PTRACE: %v %v, want one denied and ErrStopped", results, err)
	}
	fmt.Println("denied OK (kill via owner):", err)
}

// TestArmFinding: --finding selects through the audit as kill does: of two
// connections without keepalive, only the one idle past --max-idle is
// flagged idle_no_keepalive and armed; once armed it is flagged no more.
func TestArmFinding(t *testing.T) {
	ns := testnet.NewNS(t)
	srv := ns.Program()
	lfd, port := srv.Listen("127.0.0.1:0")
	ns.Dial(fmt.Sprintf("127.0.0.1:%d", port))
	idleFd := srv.Accept(lfd)
	busy := ns.Dial(fmt.Sprintf("127.0.0.1:%d", port))
	busyFd := srv.Accept(lfd)
	tun, err := sysctl.Read(ns.NetNS())
	if err != nil {
		t.Fatal(err)
	}
	ac := audit.DefaultConfig(tun)
	ac.MaxIdle = 500 * time.Millisecond
	deadline := time.Now().Add(10 * time.Second)
	for {
		var idle time.Duration
		for _, s := range dump(t, ns, portFilter(port, diag.StateEstablished)) {
			if s.Inode == srv.Inode(idleFd) {
				idle = s.Idle()
			}
		}
		if idle >= time.Second {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the idle connection never idled for 1s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := busy.Write([]byte("x")); err != nil { // busy: its server end just heard from it
		t.Fatal(err)
	}
	k := values(30*time.Second, 5*time.Second, 3)
	cfg := kill.ArmConfig{Filter: portFilter(port, diag.StateEstablished), Findings: []audit.Code{audit.IdleNoKeepalive}, Audit: ac, Keepalive: k}
	acts, sum, err := armNS(t, ns, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(acts) != 1 || acts[0].fd != idleFd || acts[0].reason != string(audit.IdleNoKeepalive) || acts[0].result != kill.Armed || sum.Sockets != 2 {
		t.Fatalf("actions %v summary %+v, want only fd %d armed for idle_no_keepalive", acts, sum, idleFd)
	}
	if srv.Opts(busyFd).KeepAlive {
		t.Error("the busy connection was armed")
	}
	// The armed connection is no longer flagged. The busy one may be by now
	// (on a loaded machine its silence can pass --max-idle before the second
	// run), so it is judged apart.
	if _, err := busy.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	acts, _, err = armNS(t, ns, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range acts {
		if a.fd == idleFd {
			t.Errorf("second run: %v, want the armed connection not flagged any more", acts)
		}
	}
}

// TestArmNoOwner: a connection no process holds yet (its handshake done, not
// accepted: inode 0) is reported with ErrNoOwner, and the run goes on.
func TestArmNoOwner(t *testing.T) {
	ns := testnet.NewNS(t)
	srv := ns.Program()
	lfd, port := srv.Listen("127.0.0.1:0")
	ns.Dial(fmt.Sprintf("127.0.0.1:%d", port))
	fd := srv.Accept(lfd)
	ns.Dial(fmt.Sprintf("127.0.0.1:%d", port)) // left in the accept queue
	acts, sum, err := armNS(t, ns, kill.ArmConfig{Filter: portFilter(port, diag.StateEstablished), All: true, Keepalive: values(30*time.Second, 5*time.Second, 3)})
	if err != nil {
		t.Fatal(err)
	}
	if len(acts) != 2 || sum.Armed != 1 || sum.Failed != 1 || sum.Stopped {
		t.Fatalf("actions %v summary %+v, want one armed and one failed, not stopped", acts, sum)
	}
	for _, a := range acts {
		switch {
		case a.sock.Inode == 0:
			if a.result != kill.Error || !errors.Is(a.err, proc.ErrNoOwner) || a.pid != 0 || a.fd != -1 {
				t.Errorf("%v: want error, no owner", a)
			}
		case a.result != kill.Armed || a.fd != fd:
			t.Errorf("%v: want armed through fd %d", a, fd)
		}
	}
}

// TestArmModelPerNamespace: with a Model, Arm chooses the values in each
// namespace from its own tunables: "conntrack" is that namespace's
// nf_conntrack_tcp_timeout_established, so two namespaces armed with the
// same config get each its own recommendation; an impossible target is
// ErrValues before anything is touched.
func TestArmModelPerNamespace(t *testing.T) {
	model := &kill.ArmModel{Path: sysctl.PathChoice{Behind: sysctl.ConntrackName}}
	for _, ct := range []time.Duration{100 * time.Second, 200 * time.Second} {
		ns := testnet.NewNS(t)
		if ns.ReadSysctl("net/netfilter/nf_conntrack_tcp_timeout_established") == "" {
			t.Fatal("nf_conntrack is not loaded: modprobe nf_conntrack")
		}
		ns.Sysctl("net/netfilter/nf_conntrack_tcp_timeout_established", fmt.Sprint(int(ct/time.Second)))
		srv := ns.Program()
		lfd, port := srv.Listen("127.0.0.1:0")
		ns.Dial(fmt.Sprintf("127.0.0.1:%d", port))
		fd := srv.Accept(lfd)
		rec, err := sysctl.Recommend(sysctl.Request{Path: sysctl.Path{IdleTimeout: ct, Kind: sysctl.PathConntrack}})
		if err != nil {
			t.Fatal(err)
		}
		acts, sum, err := armNS(t, ns, kill.ArmConfig{Filter: portFilter(port, diag.StateEstablished), All: true, Model: model})
		if err != nil || len(acts) != 1 || acts[0].result != kill.Armed || sum.Values.Keepalive != rec.Keepalive {
			t.Fatalf("conntrack %v: actions %v summary %+v err %v, want armed with %+v", ct, acts, sum, err, rec.Keepalive)
		}
		wantOpts(t, fmt.Sprintf("conntrack %v", ct), srv.Opts(fd), proc.Keepalive{Keepalive: rec.Keepalive})
		t.Logf("conntrack %v: armed with %v/%v/%d", ct, rec.Time, rec.Intvl, rec.Probes)

		acts, _, err = armNS(t, ns, kill.ArmConfig{Filter: portFilter(port, diag.StateEstablished), All: true,
			Model: &kill.ArmModel{Path: sysctl.PathChoice{Given: time.Minute}, DetectWithin: 2 * time.Second}})
		if !errors.Is(err, kill.ErrValues) || !errors.Is(err, sysctl.ErrImpossible) || len(acts) != 0 {
			t.Errorf("an impossible target: %v %v, want ErrValues and sysctl.ErrImpossible, no action", acts, err)
		}
	}
}

// TestArmOnlyArmable: whatever the filter says, Arm acts on ESTABLISHED and
// CLOSE_WAIT connections (and listeners only with Listeners): a connection
// closing on the test's side (FIN_WAIT2, an orphan: no descriptor) is left
// out, and the program's end of it, in CLOSE_WAIT, is armed.
func TestArmOnlyArmable(t *testing.T) {
	ns := testnet.NewNS(t)
	srv := ns.Program()
	lfd, port := srv.Listen("127.0.0.1:0")
	c := ns.Dial(fmt.Sprintf("127.0.0.1:%d", port))
	fd := srv.Accept(lfd)
	c.Close()
	testnet.Wait(t, 5*time.Second, "the program's end in CLOSE_WAIT", func() bool {
		for _, s := range dump(t, ns, &diag.Filter{States: diag.Of(diag.StateCloseWait)}) {
			if s.Inode == srv.Inode(fd) {
				return true
			}
		}
		return false
	})
	acts, sum, err := armNS(t, ns, kill.ArmConfig{Filter: &diag.Filter{States: diag.StatesAll}, All: true, Keepalive: values(30*time.Second, 5*time.Second, 3)})
	if err != nil || len(acts) != 1 || acts[0].sock.State != diag.StateCloseWait || acts[0].result != kill.Armed || sum.Sockets < 3 {
		t.Fatalf("actions %v summary %+v err %v, want only the CLOSE_WAIT end armed, of three sockets (the listener, it, the FIN_WAIT2 end)", acts, sum, err)
	}
	wantOpts(t, "the CLOSE_WAIT end", srv.Opts(fd), values(30*time.Second, 5*time.Second, 3))
}
