package testnet

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// programEnv marks a process started by NS.Program: it holds sockets for a
// test instead of running tests.
const programEnv = "TCPKEEP_TESTNET_PROGRAM"

func init() {
	if os.Getenv(programEnv) == "" {
		return
	}
	// The test binary re-executed as a program: it never returns.
	if err := runProgram(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "testnet program:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// Program is another process that holds sockets the way a real program does
// (the test binary re-executed in a namespace), for tests of what tcpkeep
// does to sockets it does not own. The test drives it one command at a time;
// it is killed by PID when the test ends.
//
// Its own sockets are made with plain system calls and never touch
// keepalive, like a C server that never set SO_KEEPALIVE; ListenGo makes a Go
// listener instead, with Go's defaults (MPTCP since Go 1.24).
type Program struct {
	PID int

	t       testing.TB
	cmd     *exec.Cmd
	in      io.WriteCloser
	replies chan string
	mu      sync.Mutex
	ended   map[int]Ended
	changed chan struct{}
}

// Ended is how a watched descriptor's reads ended in the program.
type Ended struct {
	// Result is "eof" (read returned 0) or the errno's name (ETIMEDOUT,
	// ECONNRESET, ...).
	Result string
	// At is when the read returned, by the program's clock.
	At time.Time
}

// ProgramOption sets up a Program before it starts.
type ProgramOption func(*programConfig)

type programConfig struct {
	uid, gid int
	files    []*os.File
}

// AsUser runs the program as another user: it needs a copy of the test
// binary that user may execute, which Program makes.
func AsUser(uid, gid int) ProgramOption {
	return func(c *programConfig) { c.uid, c.gid = uid, gid }
}

// WithFiles hands the program these open files as descriptors 3, 4, ...
// (shared with the test, as a fork shares them).
func WithFiles(f ...*os.File) ProgramOption {
	return func(c *programConfig) { c.files = append(c.files, f...) }
}

// Program starts a program inside the namespace.
func (ns *NS) Program(opts ...ProgramOption) *Program {
	t := ns.t
	t.Helper()
	cfg := programConfig{uid: -1}
	for _, o := range opts {
		o(&cfg)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.uid >= 0 {
		exe = copyExecutable(t, exe)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), programEnv+"=1")
	cmd.Stderr = os.Stderr
	cmd.ExtraFiles = cfg.files
	if cfg.uid >= 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(cfg.uid), Gid: uint32(cfg.gid)}}
		cmd.Dir = filepath.Dir(exe)
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	// A process forked from a thread inside ns starts inside ns.
	ns.Do(cmd.Start)
	p := &Program{PID: cmd.Process.Pid, t: t, cmd: cmd, in: in, replies: make(chan string, 1),
		ended: map[int]Ended{}, changed: make(chan struct{})}
	t.Cleanup(func() {
		in.Close()
		cmd.Process.Kill() // by PID: only the process this test started
		cmd.Wait()
	})
	go p.read(out)
	return p
}

// copyExecutable copies the test binary where any user may execute it; it is
// removed when the test ends.
func copyExecutable(t testing.TB, exe string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "tcpkeep-program-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, filepath.Base(exe))
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

// read routes the program's lines: "ended FD RESULT UNIXNANO" to the ended
// map, everything else to the reply of the command in flight.
func (p *Program) read(out io.Reader) {
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		if f := strings.Fields(line); len(f) == 4 && f[0] == "ended" {
			fd, _ := strconv.Atoi(f[1])
			ns, _ := strconv.ParseInt(f[3], 10, 64)
			p.mu.Lock()
			p.ended[fd] = Ended{Result: f[2], At: time.Unix(0, ns)}
			close(p.changed)
			p.changed = make(chan struct{})
			p.mu.Unlock()
			continue
		}
		p.replies <- line
	}
	close(p.replies)
}

// do sends one command and returns the fields of its "ok" reply.
func (p *Program) do(cmd string, args ...any) []string {
	p.t.Helper()
	line := cmd
	for _, a := range args {
		line += " " + fmt.Sprint(a)
	}
	if _, err := io.WriteString(p.in, line+"\n"); err != nil {
		p.t.Fatalf("program %d: %s: %v", p.PID, line, err)
	}
	select {
	case r, ok := <-p.replies:
		if !ok {
			p.t.Fatalf("program %d: %s: it exited", p.PID, line)
		}
		f := strings.Fields(r)
		if len(f) == 0 || f[0] != "ok" {
			p.t.Fatalf("program %d: %s: %s", p.PID, line, r)
		}
		return f[1:]
	case <-time.After(10 * time.Second):
		p.t.Fatalf("program %d: %s: no answer within 10s", p.PID, line)
	}
	return nil
}

func (p *Program) ints(f []string) []int {
	p.t.Helper()
	out := make([]int, len(f))
	for i, s := range f {
		n, err := strconv.Atoi(s)
		if err != nil {
			p.t.Fatalf("program %d: reply %q: %v", p.PID, f, err)
		}
		out[i] = n
	}
	return out
}

// Listen opens a listener on addr ("10.77.0.2:0": port 0 picks one) with
// socket, bind and listen: no option set but SO_REUSEADDR. It returns the
// descriptor and the port.
func (p *Program) Listen(addr string) (fd int, port uint16) {
	p.t.Helper()
	v := p.ints(p.do("listen", addr))
	return v[0], uint16(v[1])
}

// ListenGo opens a listener with Go's net.ListenConfig and the given
// KeepAlive (0: Go's default, 15s on every accepted connection; negative:
// none), MPTCP as Go 1.24 makes it by default. Connections it accepts
// (Accept) go through Go too.
func (p *Program) ListenGo(addr string, keepAlive time.Duration) (fd int, port uint16) {
	p.t.Helper()
	v := p.ints(p.do("listengo", addr, int64(keepAlive)))
	return v[0], uint16(v[1])
}

// Accept accepts one connection on listener lfd (waiting for it) and returns
// its descriptor.
func (p *Program) Accept(lfd int) int {
	p.t.Helper()
	return p.ints(p.do("accept", lfd))[0]
}

// Dial connects to addr with socket and connect, no option set, and returns
// the descriptor.
func (p *Program) Dial(addr string) int {
	p.t.Helper()
	return p.ints(p.do("dial", addr))[0]
}

// Watch has the program read fd until the reads end (data read is dropped);
// WaitEnded says how and when.
func (p *Program) Watch(fd int) {
	p.t.Helper()
	p.do("watch", fd)
}

// WaitEnded waits up to timeout for the reads of a watched descriptor to end.
func (p *Program) WaitEnded(fd int, timeout time.Duration) (Ended, bool) {
	deadline := time.After(timeout)
	for {
		p.mu.Lock()
		e, ok := p.ended[fd]
		ch := p.changed
		p.mu.Unlock()
		if ok {
			return e, true
		}
		select {
		case <-ch:
		case <-deadline:
			return Ended{}, false
		}
	}
}

// Ended reports how a watched descriptor's reads ended, if they did.
func (p *Program) Ended(fd int) (Ended, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.ended[fd]
	return e, ok
}

// Opts are a socket's keepalive options as its owner reads them with
// getsockopt. UserTimeout is -1 where the socket has none (MPTCP).
type Opts struct {
	KeepAlive          bool
	Idle, Intvl        time.Duration
	Cnt                int
	UserTimeout        time.Duration
	UserTimeoutMissing bool
}

// Opts reads fd's keepalive options inside the program.
func (p *Program) Opts(fd int) Opts {
	p.t.Helper()
	v := p.ints(p.do("opts", fd))
	o := Opts{KeepAlive: v[0] != 0, Idle: time.Duration(v[1]) * time.Second, Intvl: time.Duration(v[2]) * time.Second,
		Cnt: v[3], UserTimeout: time.Duration(v[4]) * time.Millisecond}
	if v[4] < 0 {
		o.UserTimeout, o.UserTimeoutMissing = 0, true
	}
	return o
}

// Replace puts a new socket connected to addr at descriptor fd (dup3), as a
// program that closed fd and reused its number would: the socket fd held is
// closed unless something else holds it too.
func (p *Program) Replace(fd int, addr string) {
	p.t.Helper()
	p.do("replace", fd, addr)
}

// Move moves the socket at fd to a new descriptor, which it returns, and puts
// a new socket connected to addr at fd.
func (p *Program) Move(fd int, addr string) int {
	p.t.Helper()
	return p.ints(p.do("move", fd, addr))[0]
}

// Write writes s on fd.
func (p *Program) Write(fd int, s string) {
	p.t.Helper()
	p.do("write", fd, s)
}

// Inode is the inode of the socket at fd, read from /proc.
func (p *Program) Inode(fd int) uint32 {
	p.t.Helper()
	l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%d", p.PID, fd))
	if err != nil {
		p.t.Fatal(err)
	}
	ino, ok := socketInode(l)
	if !ok {
		p.t.Fatalf("program %d fd %d is %s, not a socket", p.PID, fd, l)
	}
	return ino
}

func socketInode(l string) (uint32, bool) {
	s, ok := strings.CutPrefix(l, "socket:[")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(strings.TrimSuffix(s, "]"), 10, 32)
	return uint32(n), err == nil
}

// runProgram is the program's side: one command per line, one reply per
// command ("ok ..." or "err ..."), and "ended FD RESULT UNIXNANO" whenever a
// watched descriptor's reads end.
func runProgram(in io.Reader, out io.Writer) error {
	var mu sync.Mutex
	say := func(format string, a ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(out, format+"\n", a...)
	}
	goListeners := map[int]*net.TCPListener{}
	goConns := map[int]net.Conn{} // kept so that the garbage collector never closes them
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			say("err bad command %q", sc.Text())
			continue
		}
		reply, err := programCommand(f, goListeners, goConns, say)
		if err != nil {
			say("err %s: %v", f[0], err)
			continue
		}
		say("ok %s", reply)
	}
	return sc.Err()
}

func programCommand(f []string, goListeners map[int]*net.TCPListener, goConns map[int]net.Conn, say func(string, ...any)) (string, error) {
	arg := func(i int) int {
		if i >= len(f) {
			return -1
		}
		n, err := strconv.Atoi(f[i])
		if err != nil {
			return -1
		}
		return n
	}
	switch f[0] {
	case "listen":
		sa, family, err := sockaddr(f[1])
		if err != nil {
			return "", err
		}
		fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return "", err
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
			return "", err
		}
		if err := unix.Bind(fd, sa); err != nil {
			return "", err
		}
		if err := unix.Listen(fd, 128); err != nil {
			return "", err
		}
		name, err := unix.Getsockname(fd)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%d %d", fd, port(name)), nil
	case "listengo":
		if len(f) < 3 {
			return "", fmt.Errorf("want listengo ADDR KEEPALIVE")
		}
		ka, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil {
			return "", err
		}
		lc := net.ListenConfig{KeepAlive: time.Duration(ka)}
		l, err := lc.Listen(context.Background(), "tcp", f[1])
		if err != nil {
			return "", err
		}
		tl := l.(*net.TCPListener)
		fd, err := connFD(tl)
		if err != nil {
			return "", err
		}
		goListeners[fd] = tl
		return fmt.Sprintf("%d %d", fd, tl.Addr().(*net.TCPAddr).Port), nil
	case "accept":
		lfd := arg(1)
		if l := goListeners[lfd]; l != nil {
			c, err := l.Accept()
			if err != nil {
				return "", err
			}
			fd, err := connFD(c.(*net.TCPConn))
			if err != nil {
				return "", err
			}
			goConns[fd] = c
			return strconv.Itoa(fd), nil
		}
		fd, _, err := unix.Accept4(lfd, unix.SOCK_CLOEXEC)
		if err != nil {
			return "", err
		}
		return strconv.Itoa(fd), nil
	case "dial":
		sa, family, err := sockaddr(f[1])
		if err != nil {
			return "", err
		}
		fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return "", err
		}
		if err := unix.Connect(fd, sa); err != nil {
			unix.Close(fd)
			return "", err
		}
		return strconv.Itoa(fd), nil
	case "watch":
		fd := arg(1)
		read := func(b []byte) (int, error) { return unix.Read(fd, b) }
		if c := goConns[fd]; c != nil {
			read = c.Read
		}
		go func() {
			b := make([]byte, 4096)
			for {
				n, err := read(b)
				if n > 0 && err == nil {
					continue
				}
				result := "eof"
				var errno unix.Errno
				switch {
				case errors.As(err, &errno):
					result = unix.ErrnoName(errno)
				case err != nil && !errors.Is(err, io.EOF):
					result = "error"
				}
				say("ended %d %s %d", fd, result, time.Now().UnixNano())
				return
			}
		}()
		return "", nil
	case "opts":
		fd := arg(1)
		var v [5]int
		for i, o := range []struct{ level, opt int }{
			{unix.SOL_SOCKET, unix.SO_KEEPALIVE}, {unix.IPPROTO_TCP, unix.TCP_KEEPIDLE},
			{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL}, {unix.IPPROTO_TCP, unix.TCP_KEEPCNT},
			{unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT},
		} {
			n, err := unix.GetsockoptInt(fd, o.level, o.opt)
			if err != nil && o.opt == unix.TCP_USER_TIMEOUT {
				n, err = -1, nil // MPTCP has none
			}
			if err != nil {
				return "", err
			}
			v[i] = n
		}
		return fmt.Sprintf("%d %d %d %d %d", v[0], v[1], v[2], v[3], v[4]), nil
	case "replace", "move":
		if len(f) < 3 {
			return "", fmt.Errorf("want %s FD ADDR", f[0])
		}
		fd := arg(1)
		moved := -1
		if f[0] == "move" {
			var err error
			if moved, err = unix.Dup(fd); err != nil {
				return "", err
			}
		}
		sa, family, err := sockaddr(f[2])
		if err != nil {
			return "", err
		}
		s, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return "", err
		}
		if err := unix.Connect(s, sa); err != nil {
			unix.Close(s)
			return "", err
		}
		if err := unix.Dup3(s, fd, unix.O_CLOEXEC); err != nil {
			return "", err
		}
		unix.Close(s)
		if moved >= 0 {
			return strconv.Itoa(moved), nil
		}
		return "", nil
	case "write":
		fd := arg(1)
		if _, err := unix.Write(fd, []byte(strings.Join(f[2:], " "))); err != nil {
			return "", err
		}
		return "", nil
	}
	return "", fmt.Errorf("unknown command")
}

// sockaddr parses "ip:port".
func sockaddr(s string) (unix.Sockaddr, int, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return nil, 0, err
	}
	if ap.Addr().Is4() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}, unix.AF_INET, nil
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}, unix.AF_INET6, nil
}

func port(sa unix.Sockaddr) int {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return a.Port
	case *unix.SockaddrInet6:
		return a.Port
	}
	return 0
}

// connFD is the descriptor behind a Go socket.
func connFD(c syscall.Conn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	fd := -1
	if err := rc.Control(func(f uintptr) { fd = int(f) }); err != nil {
		return 0, err
	}
	return fd, nil
}
