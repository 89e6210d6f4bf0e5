package testnet

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	vnl "github.com/vishvananda/netlink"
	vns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/tcpkeep/tcpkeep/internal/netns"
)

// fillEnv marks a process started by Fill: it holds connections in the
// namespaces named in it instead of running tests.
const fillEnv = "TCPKEEP_TESTNET_FILL"

func init() {
	spec := os.Getenv(fillEnv)
	if spec == "" {
		return
	}
	// The test binary re-executed as a holder of connections: it never returns.
	if err := fillAndHold(spec); err != nil {
		fmt.Fprintln(os.Stderr, "testnet fill child:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// Delete removes the namespace's name now, as `ip netns delete` does: with no
// process left in it, it is gone for anyone who looks it up afterwards.
func (ns *NS) Delete() {
	ns.t.Helper()
	if err := vns.DeleteNamed(ns.Name); err != nil {
		ns.t.Fatalf("delete netns %s: %v", ns.Name, err)
	}
}

// NewNamespaces creates n named namespaces (loopback up) that live until the
// test ends.
func NewNamespaces(t testing.TB, n int) []*NS {
	t.Helper()
	nss := make([]*NS, n)
	for i := range nss {
		nss[i] = NewNS(t)
	}
	return nss
}

// Holder is a process that holds an unnamed network namespace: the namespace
// lives while the process does, and is found only through /proc/PID/ns/net, as
// a container's is.
type Holder struct {
	// PID is the holding process.
	PID int
	cmd *exec.Cmd
	t   testing.TB
}

// Unnamed starts a process (sleep) in a new network namespace of its own, like
// `unshare -n sleep infinity`. It is killed, by PID, when the test ends.
func Unnamed(t testing.TB) *Holder { return UnnamedAs(t, -1) }

// UnnamedAs is Unnamed with the process running as uid (and the same gid): a
// namespace whose /proc/PID/ns/net another user may open only with
// CAP_SYS_PTRACE. A negative uid keeps the test's own.
func UnnamedAs(t testing.TB, uid int) *Holder {
	t.Helper()
	RequireRoot(t)
	cmd := exec.Command("sleep", "infinity")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	if uid >= 0 {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start a process in a new netns: %v", err)
	}
	h := &Holder{PID: cmd.Process.Pid, cmd: cmd, t: t}
	t.Cleanup(h.Kill)
	return h
}

// NetNS is the holder's namespace as tcpkeep names it: pid:PID.
func (h *Holder) NetNS() netns.NS {
	return netns.NS{Spec: "pid:" + strconv.Itoa(h.PID), Path: h.Path()}
}

// Path is the namespace file, /proc/PID/ns/net.
func (h *Holder) Path() string { return "/proc/" + strconv.Itoa(h.PID) + "/ns/net" }

// Inode is the namespace's inode (its identity).
func (h *Holder) Inode() uint64 {
	h.t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(h.Path(), &st); err != nil {
		h.t.Fatal(err)
	}
	return st.Ino
}

// Join starts one more process (sleep) inside the holder's namespace and
// returns its PID; it is killed, by PID, when the test ends.
func (h *Holder) Join() int {
	h.t.Helper()
	cmd := exec.Command("sleep", "infinity")
	// A process forked from a thread inside the namespace starts inside it.
	if err := h.NetNS().Do(cmd.Start); err != nil {
		h.t.Fatalf("start a process in %s: %v", h.NetNS(), err)
	}
	h.t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd.Process.Pid
}

// Kill ends the holding process (by PID) and waits for it: with no other
// process or name holding it, the namespace is gone.
func (h *Holder) Kill() {
	if h.cmd.ProcessState != nil {
		return
	}
	h.cmd.Process.Kill()
	h.cmd.Wait()
}

// Fill puts conns established loopback connections (2 x conns sockets, both
// ends inside) in each of the namespaces and returns how many sockets each now
// has. The sockets are held by child processes (the test binary re-executed,
// running in the test's own namespace, each holding at most 9,000 sockets:
// a process may hold 20,000 open files), killed by PID when the test ends.
// Each namespace's loopback is brought up; its listener is closed once the
// connections are made, so exactly those sockets are left.
func Fill(t testing.TB, nss []netns.NS, conns int) int {
	t.Helper()
	RequireRoot(t)
	if conns <= 0 || 2*conns > perChild {
		t.Fatalf("Fill: %d connections per namespace, want 1 to %d", conns, perChild/2)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	per := perChild / (2 * conns) // namespaces per child
	type child struct {
		cmd   *exec.Cmd
		stdin io.WriteCloser
		out   *bufio.Reader
		n     int
	}
	var children []*child
	t.Cleanup(func() {
		for _, c := range children {
			c.stdin.Close()
			c.cmd.Process.Kill() // by PID: only the processes Fill started
			c.cmd.Wait()
		}
	})
	for len(nss) > 0 {
		k := min(len(nss), per)
		paths := make([]string, k)
		for i, ns := range nss[:k] {
			if strings.ContainsAny(ns.Path, " \t\n") {
				t.Fatalf("Fill: namespace path %q has a space", ns.Path)
			}
			paths[i] = ns.Path
		}
		nss = nss[k:]
		cmd := exec.Command(exe)
		cmd.Env = append(os.Environ(), fillEnv+"="+strconv.Itoa(conns)+" "+strings.Join(paths, " "))
		cmd.Stderr = os.Stderr
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		children = append(children, &child{cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout), n: k})
	}
	var wg sync.WaitGroup
	errs := make([]error, len(children))
	for i, c := range children {
		wg.Add(1)
		go func() {
			defer wg.Done()
			line, err := c.out.ReadString('\n')
			if err != nil {
				errs[i] = fmt.Errorf("fill child %d (pid %d) did not get ready: %w", i, c.cmd.Process.Pid, err)
				return
			}
			if want := fmt.Sprintf("ready %d", c.n*conns); strings.TrimSpace(line) != want {
				errs[i] = fmt.Errorf("fill child %d (pid %d): %q, want %q", i, c.cmd.Process.Pid, line, want)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return 2 * conns
}

// fillAndHold is a Fill child's work: "CONNS PATH..." makes CONNS connections
// in each namespace, says "ready TOTAL", and holds them until stdin closes.
func fillAndHold(spec string) error {
	f := strings.Fields(spec)
	if len(f) < 2 {
		return fmt.Errorf("bad spec %q", spec)
	}
	conns, err := strconv.Atoi(f[0])
	if err != nil || conns <= 0 {
		return fmt.Errorf("bad connection count in %q", spec)
	}
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < lim.Max {
		lim.Cur = lim.Max
		unix.Setrlimit(unix.RLIMIT_NOFILE, &lim)
	}
	total := 0
	for _, path := range f[1:] {
		err := (netns.NS{Spec: path, Path: path}).Do(func() error {
			lo, err := vnl.LinkByName("lo")
			if err != nil {
				return err
			}
			if err := vnl.LinkSetUp(lo); err != nil {
				return err
			}
			return connectLoopback(conns)
		})
		if err != nil {
			return fmt.Errorf("netns %s: %w", path, err)
		}
		total += conns
	}
	fmt.Printf("ready %d\n", total)
	io.Copy(io.Discard, os.Stdin)
	return nil
}

// connectLoopback makes n connections to 127.0.0.1:7000 in the calling
// thread's namespace, keeps both ends open and closes the listener.
func connectLoopback(n int) error {
	sa := &unix.SockaddrInet4{Port: 7000, Addr: [4]byte{127, 0, 0, 1}}
	l, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(l)
	if err := unix.Bind(l, sa); err != nil {
		return fmt.Errorf("bind 127.0.0.1:7000: %w", err)
	}
	if err := unix.Listen(l, 4096); err != nil {
		return err
	}
	return connectAccept(l, sa, n)
}

// RunWithoutCaps runs the test named test (a function of the same test binary)
// in a child process that lacks the given capabilities (as "CAP_SYS_ADMIN": the
// child's bounding and inheritable sets drop them, with setpriv), with env
// added to its environment, and returns its output. It fails t if the child
// fails. The child test should skip unless env marks it as the child.
func RunWithoutCaps(t testing.TB, test string, env []string, caps ...string) string {
	t.Helper()
	RequireRoot(t)
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Fatal("setpriv (util-linux) drops the capabilities: install util-linux")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	drop := make([]string, len(caps))
	for i, c := range caps {
		drop[i] = "-" + strings.ToLower(strings.TrimPrefix(c, "CAP_"))
	}
	set := strings.Join(drop, ",")
	cmd := exec.Command("setpriv", "--bounding-set", set, "--inh-caps", set, "--",
		exe, "-test.run=^"+test+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s without %s: %v\n%s", test, strings.Join(caps, ", "), err, out)
	}
	return string(out)
}
