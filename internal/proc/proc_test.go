package proc

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpkeep/tcpkeep/internal/testnet"
	"github.com/tcpkeep/tcpkeep/sysctl"
)

// loopPair returns a connected TCP pair on loopback; both ends close with the test.
func loopPair(t *testing.T) (client, server *net.TCPConn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// fdOf returns the descriptor behind c and its socket inode.
func fdOf(t *testing.T, c syscall.Conn) (int, uint32) {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var fd int
	rc.Control(func(f uintptr) { fd = int(f) })
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	return fd, uint32(st.Ino)
}

// setOpts sets the five options on fd.
func setOpts(t *testing.T, fd int, o SockOpts) {
	t.Helper()
	ka := 0
	if o.KeepaliveOn {
		ka = 1
	}
	for _, s := range []struct {
		level, opt, v int
	}{
		{unix.SOL_SOCKET, unix.SO_KEEPALIVE, ka},
		{unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, int(o.Keepalive.Time / time.Second)},
		{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, int(o.Keepalive.Intvl / time.Second)},
		{unix.IPPROTO_TCP, unix.TCP_KEEPCNT, o.Keepalive.Probes},
		{unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(o.UserTimeout / time.Millisecond)},
	} {
		if err := unix.SetsockoptInt(fd, s.level, s.opt, s.v); err != nil {
			t.Fatalf("setsockopt %d: %v", s.opt, err)
		}
	}
}

func selfComm(t *testing.T) string {
	b, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestOwnSockets: the test process holds two sockets with known options; the scan
// finds both with the right descriptor, and the reader gets the options back.
func TestOwnSockets(t *testing.T) {
	c, s := loopPair(t)
	cfd, cino := fdOf(t, c)
	sfd, sino := fdOf(t, s)
	want := SockOpts{KeepaliveOn: true, Keepalive: sysctl.Keepalive{Time: 7 * time.Second, Intvl: 3 * time.Second, Probes: 4}, UserTimeout: 1500 * time.Millisecond}
	setOpts(t, cfd, want)
	plain := SockOpts{KeepaliveOn: false, Keepalive: sysctl.Keepalive{Time: 11 * time.Second, Intvl: 2 * time.Second, Probes: 9}}
	setOpts(t, sfd, plain)

	own, err := ScanOwners("/proc")
	if err != nil {
		t.Fatal(err)
	}
	r := NewOptReader()
	defer r.Close()
	for _, tc := range []struct {
		name  string
		fd    int
		inode uint32
		want  SockOpts
	}{
		{"keepalive client", cfd, cino, want},
		{"plain server", sfd, sino, plain},
	} {
		o, ok := own.Lookup(tc.inode)
		if !ok {
			t.Fatalf("%s: inode %d not found among %d socket inodes", tc.name, tc.inode, own.Len())
		}
		if o.PID != os.Getpid() || o.FD != tc.fd {
			t.Errorf("%s: owner %+v, want pid %d fd %d", tc.name, o, os.Getpid(), tc.fd)
		}
		if got, want := o.Comm, selfComm(t); got != want {
			t.Errorf("%s: comm %q, want %q", tc.name, got, want)
		}
		var got SockOpts
		if err := r.Read(o, tc.inode, &got); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got != tc.want {
			t.Errorf("%s: read %+v, want %+v", tc.name, got, tc.want)
		}
	}
	// An inode nobody holds is not found, and a descriptor that now holds another
	// socket is reported gone rather than read.
	if _, ok := own.Lookup(1); ok {
		t.Error("inode 1 has an owner")
	}
	var o SockOpts
	if err := r.Read(Owner{PID: os.Getpid(), FD: cfd}, sino, &o); !errors.Is(err, ErrGone) {
		t.Errorf("read with the wrong inode: %v, want ErrGone", err)
	}
}

// TestChildSocket: a child process (sleep) holds a socket with known options that
// the test no longer has; the scan names the child and the reader duplicates the
// descriptor out of it.
func TestChildSocket(t *testing.T) {
	c, _ := loopPair(t)
	cfd, ino := fdOf(t, c)
	want := SockOpts{KeepaliveOn: true, Keepalive: sysctl.Keepalive{Time: 1 * time.Second, Intvl: 1 * time.Second, Probes: 5}, UserTimeout: 20 * time.Second}
	setOpts(t, cfd, want)
	f, err := c.File() // a blocking duplicate to hand to the child
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sleep", "60")
	cmd.ExtraFiles = []*os.File{f} // fd 3 in the child
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	f.Close()
	c.Close()

	own, err := ScanOwners("/proc")
	if err != nil {
		t.Fatal(err)
	}
	o, ok := own.Lookup(ino)
	if !ok {
		t.Fatalf("inode %d not found", ino)
	}
	if o.PID != cmd.Process.Pid || o.FD != 3 || o.Comm != "sleep" {
		t.Fatalf("owner %+v comm %q, want pid %d fd 3 comm sleep", o, o.Comm, cmd.Process.Pid)
	}
	r := NewOptReader()
	defer r.Close()
	var got SockOpts
	if err := r.Read(o, ino, &got); err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("read %+v, want %+v", got, want)
	}
	// Once the child is gone, so is its socket.
	cmd.Process.Kill()
	cmd.Wait()
	if err := r.Read(o, ino, &got); !errors.Is(err, ErrGone) {
		t.Errorf("read after the owner exited: %v, want ErrGone", err)
	}
}

// TestNotPermitted: an unprivileged process (the test binary re-run as nobody)
// may not duplicate root's socket; the error says so with ErrNotPermitted.
func TestNotPermitted(t *testing.T) {
	testnet.RequireRoot(t)
	c, _ := loopPair(t)
	cfd, ino := fdOf(t, c)
	// nobody must be able to execute a copy of the test binary.
	dir, err := os.MkdirTemp("", "tcpkeep-proc-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "proc.test")
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^TestHelperReadAsNobody$", "-test.v")
	cmd.Env = append(os.Environ(), fmt.Sprintf("TCPKEEP_HELPER_OWNER=%d:%d:%d", os.Getpid(), cfd, ino))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("as nobody: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "not permitted OK") {
		t.Fatalf("helper did not run:\n%s", out)
	}
}

// TestHelperReadAsNobody runs only inside TestNotPermitted's child.
func TestHelperReadAsNobody(t *testing.T) {
	spec := os.Getenv("TCPKEEP_HELPER_OWNER")
	if spec == "" {
		t.Skip("helper for TestNotPermitted")
	}
	p := strings.Split(spec, ":")
	pid, _ := strconv.Atoi(p[0])
	fd, _ := strconv.Atoi(p[1])
	ino, _ := strconv.ParseUint(p[2], 10, 32)
	r := NewOptReader()
	defer r.Close()
	var o SockOpts
	err := r.Read(Owner{PID: pid, FD: fd}, uint32(ino), &o)
	if !errors.Is(err, ErrNotPermitted) {
		t.Fatalf("read root's socket as uid %d: %v, want ErrNotPermitted", os.Getuid(), err)
	}
	// pidfd_getfd's refusal (PTRACE_MODE_ATTACH) says which right was missing.
	var pe *PermissionError
	if !errors.As(err, &pe) || pe.Cause != PermNoCapSysPtrace || pe.CapSysPtrace || pe.PID != pid {
		t.Fatalf("read root's socket as uid %d: %#v, want a PermissionError for pid %d naming CAP_SYS_PTRACE", os.Getuid(), err, pid)
	}
	if _, err := r.Dup(Owner{PID: pid, FD: fd}, uint32(ino), 0); !errors.As(err, &pe) || pe.Cause != PermNoCapSysPtrace {
		t.Fatalf("dup root's socket as uid %d: %v, want a PermissionError naming CAP_SYS_PTRACE", os.Getuid(), err)
	}
	fmt.Println("not permitted OK:", err)
	// A scan cannot see into root's processes (PTRACE_MODE_READ): the
	// socket is not said to have no owner, but to be hidden.
	f := NewFinder("/proc", 0)
	defer f.Close()
	if _, err := f.Find(uint32(ino)); !errors.As(err, &pe) || errors.Is(err, ErrNoOwner) || pe.Cause != PermNoCapSysPtrace {
		t.Fatalf("find the owner of root's socket as uid %d: %v, want a PermissionError, not ErrNoOwner", os.Getuid(), err)
	}
	fmt.Println("not permitted OK:", err)
}

func TestSocketInode(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint32
		ok   bool
	}{
		{"socket:[12345]", 12345, true},
		{"socket:[4294967295]", 4294967295, true},
		{"socket:[4294967296]", 0, false},
		{"socket:[]", 0, false},
		{"socket:[12a]", 0, false},
		{"pipe:[12]", 0, false},
		{"/dev/null", 0, false},
		{"socket:[12", 0, false},
	} {
		got, ok := socketInode([]byte(tc.in))
		if got != tc.want || ok != tc.ok {
			t.Errorf("socketInode(%q) = %d, %v; want %d, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func FuzzSocketInode(f *testing.F) {
	f.Add([]byte("socket:[12345]"))
	f.Add([]byte("anon_inode:[eventpoll]"))
	f.Fuzz(func(t *testing.T, b []byte) {
		n, ok := socketInode(b)
		if !ok {
			return
		}
		// What parses is "socket:[DIGITS]" and means those digits.
		if !strings.HasPrefix(string(b), "socket:[") {
			t.Fatalf("%q parsed as %d", b, n)
		}
		v, err := strconv.ParseUint(string(b[8:len(b)-1]), 10, 32)
		if err != nil || uint32(v) != n {
			t.Fatalf("%q parsed as %d", b, n)
		}
	})
}

// openFDs counts this process's open descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestManyOwnersBoundedDescriptors: more socket-owning processes than the reader
// keeps pidfds for: every socket's options are read, and the reader's open
// descriptors stay at its bound, not at the number of processes.
func TestManyOwnersBoundedDescriptors(t *testing.T) {
	testnet.RequireRoot(t) // pidfd_getfd on other processes
	const n = maxPidfds + 44
	type child struct {
		pid int
		ino uint32
	}
	var kids []child
	for range n {
		c, _ := loopPair(t)
		_, ino := fdOf(t, c)
		f, err := c.File()
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("sleep", "60")
		cmd.ExtraFiles = []*os.File{f}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		f.Close()
		c.Close()
		kids = append(kids, child{cmd.Process.Pid, ino})
	}
	before := openFDs(t)
	r := NewOptReader()
	defer r.Close()
	for _, k := range kids {
		var got SockOpts
		if err := r.Read(Owner{PID: k.pid, FD: 3}, k.ino, &got); err != nil {
			t.Fatalf("pid %d: %v", k.pid, err)
		}
	}
	if held := openFDs(t) - before; held > maxPidfds {
		t.Fatalf("the reader holds %d descriptors after %d processes, want at most %d", held, n, maxPidfds)
	}
}

// TestIndexIsLazy: an index looks nothing up until asked, finds this process's
// sockets when asked, and reads options only when made to.
func TestIndexIsLazy(t *testing.T) {
	c, _ := loopPair(t)
	_, ino := fdOf(t, c)
	dir := t.TempDir() // a /proc that holds only this process
	pid := strconv.Itoa(os.Getpid())
	if err := os.Symlink("/proc/"+pid, filepath.Join(dir, pid)); err != nil {
		t.Fatal(err)
	}
	x := NewIndex(dir, false)
	defer x.Close()
	if x.scanned {
		t.Fatal("scanned before the first lookup")
	}
	o, ok := x.Owner(ino)
	if !ok || o.PID != os.Getpid() || o.Comm != selfComm(t) {
		t.Fatalf("Owner = %+v, %v; want this process", o, ok)
	}
	var so SockOpts
	if x.ReadsOptions() || x.Options(ino, &so) {
		t.Fatal("an index made without options read some")
	}
	y := NewIndex(dir, true)
	defer y.Close()
	if !y.Options(ino, &so) || y.Err() != nil {
		t.Fatalf("Options: %v", y.Err())
	}
	var nilIndex *Index
	if _, ok := nilIndex.Owner(ino); ok || nilIndex.Err() != nil {
		t.Fatal("a nil index found an owner")
	}
}
