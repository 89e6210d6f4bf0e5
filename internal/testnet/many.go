package testnet

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// manyEnv marks a process started by Many: it holds connections instead of
// running tests.
const manyEnv = "TCPKEEP_TESTNET_MANY"

// perChild is how many connections one child process holds: both ends of each
// are its files, and a process here may hold at most 20,000.
const perChild = 9000

func init() {
	spec := os.Getenv(manyEnv)
	if spec == "" {
		return
	}
	// The test binary re-executed as a holder of connections: it never returns.
	if err := holdConns(spec); err != nil {
		fmt.Fprintln(os.Stderr, "testnet child:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// Many fills ns with n established TCP sockets over loopback: n/2 connections,
// both ends in ns, spread over child processes (a process may hold at most
// 20,000 open files). Each child listens on its own address in 127.0.0.0/8, so
// no destination runs out of ephemeral ports. The children are the test binary
// itself, re-executed; they are killed by PID when the test ends. Many returns
// the number of established sockets it made.
func Many(t testing.TB, ns *NS, n int) int {
	t.Helper()
	RequireRoot(t)
	conns := n / 2
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ns.Sysctl("net/ipv4/ip_local_port_range", "1024 65535")
	ns.Sysctl("net/core/somaxconn", "8192")

	type child struct {
		cmd   *exec.Cmd
		stdin io.WriteCloser
		out   *bufio.Reader
		conns int
	}
	var children []*child
	t.Cleanup(func() {
		for _, c := range children {
			c.stdin.Close()
			c.cmd.Process.Kill() // by PID: only the processes Many started
			c.cmd.Wait()
		}
	})
	for i := 0; conns > 0; i++ {
		k := min(conns, perChild)
		conns -= k
		addr := netip.AddrFrom4([4]byte{127, 77, byte(i / 250), byte(i%250 + 1)})
		cmd := exec.Command(exe)
		cmd.Env = append(os.Environ(), manyEnv+"="+addr.String()+" 7000 "+strconv.Itoa(k))
		cmd.Stderr = os.Stderr
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		// A process forked from a thread inside ns starts inside ns.
		ns.Do(cmd.Start)
		children = append(children, &child{cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout), conns: k})
	}
	var wg sync.WaitGroup
	errs := make([]error, len(children))
	for i, c := range children {
		wg.Add(1)
		go func() {
			defer wg.Done()
			line, err := c.out.ReadString('\n')
			if err != nil {
				errs[i] = fmt.Errorf("child %d (pid %d) did not get ready: %w", i, c.cmd.Process.Pid, err)
				return
			}
			if strings.TrimSpace(line) != "ready "+strconv.Itoa(c.conns) {
				errs[i] = fmt.Errorf("child %d (pid %d): %q", i, c.cmd.Process.Pid, line)
			}
		}()
	}
	wg.Wait()
	total := 0
	for i, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
		total += 2 * children[i].conns
	}
	return total
}

// holdConns is the child's work: listen on "ADDR PORT", make COUNT connections
// to itself, say "ready COUNT", and hold them until stdin closes.
func holdConns(spec string) error {
	f := strings.Fields(spec)
	if len(f) != 3 {
		return fmt.Errorf("bad spec %q", spec)
	}
	addr, err := netip.ParseAddr(f[0])
	if err != nil {
		return err
	}
	port, err := strconv.Atoi(f[1])
	if err != nil {
		return err
	}
	count, err := strconv.Atoi(f[2])
	if err != nil {
		return err
	}
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < lim.Max {
		lim.Cur = lim.Max
		unix.Setrlimit(unix.RLIMIT_NOFILE, &lim)
	}
	sa := &unix.SockaddrInet4{Port: port, Addr: addr.As4()}
	l, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	if err := unix.SetsockoptInt(l, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return err
	}
	if err := unix.Bind(l, sa); err != nil {
		return fmt.Errorf("bind %s:%d: %w", addr, port, err)
	}
	if err := unix.Listen(l, 4096); err != nil {
		return err
	}
	// Plain blocking system calls: the connections are only held, never used,
	// so they need no poller. Connect a batch (the accept queue holds it), then
	// accept it.
	if err := connectAccept(l, sa, count); err != nil {
		return err
	}
	fmt.Printf("ready %d\n", count)
	io.Copy(io.Discard, os.Stdin)
	return nil
}

// BenchSockets is how many sockets the benchmarks put in their namespaces:
// TCPKEEP_BENCH_SOCKETS, one count or a comma-separated list (20000,200000),
// 20000 by default.
func BenchSockets(b testing.TB) []int {
	v := os.Getenv("TCPKEEP_BENCH_SOCKETS")
	if v == "" {
		return []int{20000}
	}
	var ns []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 2 {
			b.Fatalf("TCPKEEP_BENCH_SOCKETS=%q: want socket counts of at least 2, as 20000 or 20000,200000", v)
		}
		ns = append(ns, n)
	}
	return ns
}

// connectAccept connects n IPv4 sockets to the listener l listens on at sa and
// accepts them, a batch at a time (what the accept queue holds), and keeps
// every descriptor open: the calling process holds both ends.
func connectAccept(l int, sa *unix.SockaddrInet4, n int) error {
	for done := 0; done < n; {
		batch := min(n-done, 2048)
		for range batch {
			c, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return fmt.Errorf("socket after %d connections: %w", done, err)
			}
			if err := unix.Connect(c, sa); err != nil {
				return fmt.Errorf("connect after %d connections: %w", done, err)
			}
		}
		for range batch {
			if _, _, err := unix.Accept4(l, unix.SOCK_CLOEXEC); err != nil {
				return fmt.Errorf("accept after %d connections: %w", done, err)
			}
		}
		done += batch
	}
	return nil
}
