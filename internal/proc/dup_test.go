package proc

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpkeep/tcpkeep/diag"
	"github.com/tcpkeep/tcpkeep/internal/testnet"
	"github.com/tcpkeep/tcpkeep/sysctl"
)

// cookieOf is the socket's SO_COOKIE.
func cookieOf(t *testing.T, fd int) uint64 {
	t.Helper()
	ck, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_COOKIE)
	if err != nil {
		t.Fatal(err)
	}
	return ck
}

func ka(idle, intvl time.Duration, cnt int) Keepalive {
	return Keepalive{Keepalive: sysctl.Keepalive{Time: idle, Intvl: intvl, Probes: cnt}}
}

// TestDupChecksIdentity: a duplicate is handed out only for the socket the
// caller names, inode and cookie; anything else is refused and closed. The
// process duplicates its own descriptors, which needs no privilege.
func TestDupChecksIdentity(t *testing.T) {
	c, s := loopPair(t)
	cfd, cino := fdOf(t, c)
	sfd, _ := fdOf(t, s)
	ck := cookieOf(t, cfd)
	var pipe [2]int
	if err := unix.Pipe2(pipe[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(pipe[0]); unix.Close(pipe[1]) })
	me := os.Getpid()
	r := NewOptReader()
	defer r.Close()
	before := openFDs(t)

	sock, err := r.Dup(Owner{PID: me, FD: cfd}, cino, ck)
	if err != nil {
		t.Fatal(err)
	}
	if sock.MPTCP() || sock.Owner.FD != cfd {
		t.Errorf("dup %+v, want plain TCP from fd %d", sock, cfd)
	}
	sock.Close()
	for _, tc := range []struct {
		name   string
		fd     int
		inode  uint32
		cookie uint64
		want   error
	}{
		{"cookie 0 is not checked", cfd, cino, 0, nil},
		{"another cookie", cfd, cino, ck + 1, ErrIdentityMismatch},
		{"another socket at the descriptor", sfd, cino, ck, ErrIdentityMismatch},
		{"a pipe at the descriptor", pipe[0], cino, 0, ErrIdentityMismatch},
		{"a closed descriptor", 1 << 20, cino, ck, ErrGone},
	} {
		sock, err := r.Dup(Owner{PID: me, FD: tc.fd}, tc.inode, tc.cookie)
		if tc.want == nil {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			} else {
				sock.Close()
			}
			continue
		}
		if !errors.Is(err, tc.want) || sock != nil {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	if after := openFDs(t); after > before+1 { // +1: the pidfd the reader keeps
		t.Errorf("%d descriptors left open by refused duplicates", after-before-1)
	}
}

// TestArmSetsReadsBackAndUndoes: Arm sets the values on the very socket (its
// owner's descriptor reads them back), and a failure half-way undoes what was
// set: here the kernel refuses TCP_USER_TIMEOUT on an MPTCP socket
// (ENOPROTOOPT) after TCP_KEEPINTVL and TCP_KEEPCNT went through.
func TestArmSetsReadsBackAndUndoes(t *testing.T) {
	c, _ := loopPair(t)
	cfd, cino := fdOf(t, c)
	r := NewOptReader()
	defer r.Close()
	sock, err := r.Dup(Owner{PID: os.Getpid(), FD: cfd}, cino, cookieOf(t, cfd))
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	before, err := sock.Options()
	if err != nil {
		t.Fatal(err)
	}
	k := ka(9*time.Second, 4*time.Second, 6)
	k.UserTimeout, k.SetUserTimeout = 12345*time.Millisecond, true
	after, err := sock.Arm(k, before)
	if err != nil {
		t.Fatal(err)
	}
	want := SockOpts{KeepaliveOn: true, Keepalive: sysctl.Keepalive{Time: 9 * time.Second, Intvl: 4 * time.Second, Probes: 6}, UserTimeout: 12345 * time.Millisecond}
	if after != want || !k.Holds(after) {
		t.Errorf("read back %+v, want %+v", after, want)
	}
	var own SockOpts
	if err := getOpts(cfd, &own); err != nil || own != want {
		t.Errorf("the owner's descriptor reads %+v (%v), want %+v", own, err, want)
	}

	// An MPTCP listener (Go's default) with the MPTCP check out of the way.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	lfd, lino := fdOf(t, l.(*net.TCPListener))
	if p, _ := unix.GetsockoptInt(lfd, unix.SOL_SOCKET, unix.SO_PROTOCOL); p != unix.IPPROTO_MPTCP {
		t.Skipf("Go's listener is protocol %d, not MPTCP (net.mptcp.enabled=0?)", p)
	}
	ms, err := r.Dup(Owner{PID: os.Getpid(), FD: lfd}, lino, 1) // any cookie: MPTCP is checked by inode
	if err != nil {
		t.Fatal(err)
	}
	defer ms.Close()
	if !ms.MPTCP() {
		t.Fatal("an MPTCP listener not taken as MPTCP")
	}
	if _, err := ms.Arm(k, SockOpts{}); !errors.Is(err, ErrOptionUnsupported) {
		t.Errorf("TCP_USER_TIMEOUT on MPTCP: %v, want ErrOptionUnsupported", err)
	}
	mb, err := ms.Options()
	if err != nil {
		t.Fatal(err)
	}
	ms.mptcp = false // let Arm try, to see it undo
	_, err = ms.Arm(k, mb)
	if !errors.Is(err, ErrOptionUnsupported) || !strings.Contains(err.Error(), "TCP_USER_TIMEOUT") {
		t.Fatalf("TCP_USER_TIMEOUT set on MPTCP: %v, want ErrOptionUnsupported naming it", err)
	}
	if ma, err := ms.Options(); err != nil || ma != mb {
		t.Errorf("after the failure: %+v (%v), want it as before %+v", ma, err, mb)
	}
}

// TestArmTimerFromLastHeard: arming starts the keepalive timer at
// TCP_KEEPIDLE after the connection last heard from its peer, not after the
// arming (tcp_sock_set_keepidle_locked): a connection idle longer than that
// probes at once (the answer comes back, the timer then waits
// TCP_KEEPINTVL), a fresh one waits the rest of TCP_KEEPIDLE.
func TestArmTimerFromLastHeard(t *testing.T) {
	ns := testnet.NewNS(t)
	l := ns.Listen("127.0.0.1:0")
	old := ns.Dial(l.Addr().String())
	oldFd, oldIno := fdOf(t, old)
	conn, err := diag.Dial(ns.NetNS())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	find := func(ino uint32) diag.Socket {
		t.Helper()
		for s, err := range conn.Sockets(context.Background(), &diag.Filter{States: diag.Of(diag.StateEstablished)}) {
			if err != nil {
				t.Fatal(err)
			}
			if s.Inode == ino {
				return *s
			}
		}
		t.Fatalf("inode %d not in the dump", ino)
		return diag.Socket{}
	}
	deadline := time.Now().Add(10 * time.Second)
	for s := find(oldIno); s.Idle() < 1500*time.Millisecond; s = find(oldIno) {
		if time.Now().After(deadline) {
			t.Fatal("the connection never became idle for 1.5s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	fresh := ns.Dial(l.Addr().String())
	freshFd, freshIno := fdOf(t, fresh)

	r := NewOptReader()
	defer r.Close()
	arm := func(fd int, ino uint32, k Keepalive) {
		t.Helper()
		sock, err := r.Dup(Owner{PID: os.Getpid(), FD: fd}, ino, cookieOf(t, fd))
		if err != nil {
			t.Fatal(err)
		}
		defer sock.Close()
		before, err := sock.Options()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sock.Arm(k, before); err != nil {
			t.Fatal(err)
		}
	}
	arm(oldFd, oldIno, ka(time.Second, 20*time.Second, 3))
	arm(freshFd, freshIno, ka(3*time.Second, 20*time.Second, 3))

	// The old connection's probe goes out at once and is answered (loopback):
	// its timer then waits keepalive_intvl.
	deadline = time.Now().Add(5 * time.Second)
	for {
		s := find(oldIno)
		if s.Timer == diag.TimerKeepalive && s.TimerExpires > 10*time.Second && s.Info.LastAckRecv < time.Second {
			t.Logf("idle connection: probed at arming, next firing in %v", s.TimerExpires)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("idle connection: timer %v in %v, last ack %v ago: want a probe at once and the timer at ~20s", s.Timer, s.TimerExpires, s.Info.LastAckRecv)
		}
		time.Sleep(10 * time.Millisecond)
	}
	s := find(freshIno)
	if s.Timer != diag.TimerKeepalive || s.TimerExpires > 3*time.Second || s.TimerExpires+s.Idle() < 2500*time.Millisecond {
		t.Errorf("fresh connection: timer %v in %v after %v idle, want keepalive at 3s after its last packet", s.Timer, s.TimerExpires, s.Idle())
	}
}

// TestShutdownThroughDuplicate: shutting the duplicate down ends the
// connection for its owner and its peer; an unconnected socket is gone.
func TestShutdownThroughDuplicate(t *testing.T) {
	c, s := loopPair(t)
	cfd, cino := fdOf(t, c)
	r := NewOptReader()
	defer r.Close()
	sock, err := r.Dup(Owner{PID: os.Getpid(), FD: cfd}, cino, cookieOf(t, cfd))
	if err != nil {
		t.Fatal(err)
	}
	if err := sock.Shutdown(); err != nil {
		t.Fatal(err)
	}
	sock.Close()
	for name, conn := range map[string]net.Conn{"owner": c, "peer": s} {
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := conn.Read(make([]byte, 1)); err != io.EOF {
			t.Errorf("%s reads %v after the shutdown, want EOF", name, err)
		}
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, syscall.EPIPE) {
		t.Errorf("owner writes: %v, want EPIPE", err)
	}

	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	unix.Fstat(fd, &st)
	u, err := r.Dup(Owner{PID: os.Getpid(), FD: fd}, uint32(st.Ino), cookieOf(t, fd))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	if err := u.Shutdown(); !errors.Is(err, ErrGone) {
		t.Errorf("shutdown of an unconnected socket: %v, want ErrGone", err)
	}
}

// TestFinder: the owner index finds a socket opened after its first scan
// (one more scan), follows a socket moved to another descriptor (Take), and
// says when a process does not exist or holds nothing.
func TestFinder(t *testing.T) {
	me := os.Getpid()
	f := NewFinder("/proc", 0)
	defer f.Close()
	if err := f.Scan(); err != nil {
		t.Fatal(err)
	}
	c, _ := loopPair(t) // opened after the scan
	cfd, cino := fdOf(t, c)
	if o, err := f.Find(cino); err != nil || o.PID != me || o.FD != cfd {
		t.Fatalf("Find after the scan: %+v %v, want pid %d fd %d", o, err, me, cfd)
	}
	if _, err := f.Find(0); !errors.Is(err, ErrNoOwner) {
		t.Errorf("Find(0): %v, want ErrNoOwner", err)
	}

	// The program moves the socket: dup it, then close the number the scan saw.
	ck := cookieOf(t, cfd)
	moved, err := unix.Dup(cfd)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(moved)
	rc, _ := c.SyscallConn()
	other, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(other)
	rc.Control(func(uintptr) {
		if err := unix.Dup3(other, cfd, unix.O_CLOEXEC); err != nil {
			t.Fatal(err)
		}
	})
	sock, o, err := f.Take(cino, ck)
	if err != nil || o.FD != moved {
		t.Fatalf("Take after the move: owner %+v %v, want fd %d", o, err, moved)
	}
	sock.Close()

	one := NewFinder("/proc", me)
	defer one.Close()
	if _, err := one.Find(cino); err != nil {
		t.Errorf("a finder of this process: %v", err)
	}
	if _, err := ScanPID("/proc", 1<<22+1); !errors.Is(err, ErrNoProcess) {
		t.Errorf("ScanPID of no process: %v, want ErrNoProcess", err)
	}
	if _, err := ScanPID("/proc", 0); !errors.Is(err, ErrNoProcess) {
		t.Errorf("ScanPID(0): %v, want ErrNoProcess", err)
	}
}

func TestPermCause(t *testing.T) {
	for _, tc := range []struct {
		cap  bool
		yama int
		want PermCause
	}{
		{false, -1, PermNoCapSysPtrace},
		{false, 0, PermNoCapSysPtrace},
		{false, 1, PermNoCapSysPtrace},
		{false, 2, PermYama},
		{false, 3, PermYama},
		{true, 3, PermYama},
		{true, 2, PermOther},
		{true, -1, PermOther},
	} {
		if got := permCause(tc.cap, tc.yama); got != tc.want {
			t.Errorf("permCause(cap %v, yama %d) = %s, want %s", tc.cap, tc.yama, got, tc.want)
		}
		e := &PermissionError{Op: "pidfd_getfd pid 7 fd 3", PID: 7, CapSysPtrace: tc.cap, YamaScope: tc.yama, Cause: permCause(tc.cap, tc.yama), Err: unix.EPERM}
		msg := e.Error()
		if !errors.Is(e, ErrNotPermitted) || !errors.Is(e, unix.EPERM) || !strings.HasPrefix(msg, "pidfd_getfd pid 7 fd 3: operation not permitted: ") {
			t.Errorf("%q: want it to be ErrNotPermitted and EPERM", msg)
		}
		switch e.Cause {
		case PermYama:
			if !strings.Contains(msg, "ptrace_scope is "+string(rune('0'+tc.yama))) {
				t.Errorf("%q does not name the scope %d", msg, tc.yama)
			}
		case PermNoCapSysPtrace:
			if !strings.Contains(msg, "lacks CAP_SYS_PTRACE") {
				t.Errorf("%q does not name the capability", msg)
			}
		}
	}
}

func TestYamaScope(t *testing.T) {
	dir := t.TempDir()
	for content, want := range map[string]int{"0\n": 0, "1\n": 1, "3": 3, "": -1, "x\n": -1, "-2\n": -1} {
		p := filepath.Join(dir, "scope")
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if got := yamaScope(p); got != want {
			t.Errorf("ptrace_scope %q: %d, want %d", content, got, want)
		}
	}
	if got := yamaScope(filepath.Join(dir, "absent")); got != -1 {
		t.Errorf("no Yama: %d, want -1", got)
	}
}

func FuzzParseYamaScope(f *testing.F) {
	f.Add([]byte("1\n"))
	f.Add([]byte("3"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if n := parseYamaScope(b); n < -1 {
			t.Fatalf("%q parsed as %d", b, n)
		}
	})
}

func TestKeepaliveCheckAndHolds(t *testing.T) {
	for _, tc := range []struct {
		name string
		k    Keepalive
		ok   bool
	}{
		{"smallest", ka(time.Second, time.Second, 1), true},
		{"largest", ka(32767*time.Second, 32767*time.Second, 127), true},
		{"idle 0", ka(0, time.Second, 1), false},
		{"idle fractional", ka(1500*time.Millisecond, time.Second, 1), false},
		{"intvl over", ka(time.Second, 32768*time.Second, 1), false},
		{"probes 0", ka(time.Second, time.Second, 0), false},
		{"probes 128", ka(time.Second, time.Second, 128), false},
		{"user timeout 0", Keepalive{Keepalive: sysctl.Keepalive{Time: time.Second, Intvl: time.Second, Probes: 1}, SetUserTimeout: true}, true},
		{"user timeout negative", Keepalive{Keepalive: sysctl.Keepalive{Time: time.Second, Intvl: time.Second, Probes: 1}, UserTimeout: -time.Millisecond, SetUserTimeout: true}, false},
		{"user timeout in microseconds", Keepalive{Keepalive: sysctl.Keepalive{Time: time.Second, Intvl: time.Second, Probes: 1}, UserTimeout: 1500 * time.Microsecond, SetUserTimeout: true}, false},
	} {
		if err := tc.k.Check(); (err == nil) != tc.ok {
			t.Errorf("%s: Check() = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
	k := ka(60*time.Second, 10*time.Second, 5)
	has := SockOpts{KeepaliveOn: true, Keepalive: sysctl.Keepalive{Time: 60 * time.Second, Intvl: 10 * time.Second, Probes: 5}, UserTimeout: 3 * time.Second}
	if !k.Holds(has) {
		t.Error("the same values with another user timeout, not asked for: want held")
	}
	k.UserTimeout, k.SetUserTimeout = 4*time.Second, true
	if k.Holds(has) {
		t.Error("another user timeout, asked for: want not held")
	}
	off := has
	off.KeepaliveOn = false
	if ka(60*time.Second, 10*time.Second, 5).Holds(off) {
		t.Error("keepalive off: want not held")
	}
}

// TestNotFoundWithHiddenProcesses: a socket not found while the scan could
// not read some processes' descriptors is a refusal when this process lacks
// CAP_SYS_PTRACE (the owner may be among them), and no owner otherwise.
func TestNotFoundWithHiddenProcesses(t *testing.T) {
	f := NewFinder("/proc", 0)
	defer f.Close()
	f.owners = &Owners{byInode: map[uint32]owner{}, denied: 2, deniedPID: 4242}
	f.rescanned = true
	_, err := f.Find(12345)
	var pe *PermissionError
	if hasCapSysPtrace() {
		if !errors.Is(err, ErrNoOwner) || errors.Is(err, ErrNotPermitted) || !strings.Contains(err.Error(), "2 processes") {
			t.Errorf("with CAP_SYS_PTRACE: %v, want ErrNoOwner saying 2 processes were hidden", err)
		}
	} else if !errors.As(err, &pe) || pe.Cause != PermNoCapSysPtrace || errors.Is(err, ErrNoOwner) {
		t.Errorf("without CAP_SYS_PTRACE: %v, want a PermissionError naming it", err)
	}
}
