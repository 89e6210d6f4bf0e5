package netns_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpkeep/tcpkeep/diag"
	"github.com/tcpkeep/tcpkeep/internal/netns"
	"github.com/tcpkeep/tcpkeep/internal/testnet"
	"github.com/tcpkeep/tcpkeep/sysctl"
)

func enumerate(t testing.TB) *netns.Found {
	t.Helper()
	f, err := netns.Enumerate()
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// byInode finds the namespaces with inode ino: there must be exactly one.
func byInode(t testing.TB, f *netns.Found, ino uint64) netns.Namespace {
	t.Helper()
	var got []netns.Namespace
	for _, n := range f.Namespaces {
		if n.Ino == ino {
			got = append(got, n)
		}
	}
	if len(got) != 1 {
		t.Fatalf("namespace %d found %d times, want once: %v", ino, len(got), got)
	}
	return got[0]
}

// ours keeps, in Enumerate's order, the namespaces of the test's own (other
// tests on the machine make and remove theirs at the same time).
func ours(t testing.TB, f *netns.Found, inodes ...uint64) []netns.Namespace {
	t.Helper()
	var list []netns.Namespace
	for _, n := range f.Namespaces {
		if slices.Contains(inodes, n.Ino) {
			list = append(list, n)
		}
	}
	if len(list) != len(inodes) {
		t.Fatalf("found %d of the test's %d namespaces", len(list), len(inodes))
	}
	return list
}

func inodeOf(t testing.TB, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func TestEnumerateFindsNamedAndUnnamed(t *testing.T) {
	empty := testnet.NewNS(t) // a name and no process
	busy := testnet.NewNS(t)  // a name and a process
	cmd := exec.Command("sleep", "infinity")
	if err := busy.NetNS().Do(cmd.Start); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	h := testnet.Unnamed(t) // no name, four processes
	joined := []int{h.PID, h.Join(), h.Join(), h.Join()}

	f := enumerate(t)
	n := byInode(t, f, inodeOf(t, empty.NetNS().Path))
	if n.Name != empty.Name || n.PID != 0 || n.Procs != 0 || n.Host || n.Self || n.Path != empty.NetNS().Path {
		t.Errorf("named, empty: %+v", n)
	}
	n = byInode(t, f, inodeOf(t, busy.NetNS().Path))
	if n.Name != busy.Name || n.PID != cmd.Process.Pid || n.Comm != "sleep" || n.Procs != 1 {
		t.Errorf("named, with sleep %d in it: %+v", cmd.Process.Pid, n)
	}
	n = byInode(t, f, h.Inode())
	if n.Procs != len(joined) || n.PID != slices.Min(joined) || n.Name != "pid:"+strconv.Itoa(n.PID) || n.Comm != "sleep" {
		t.Errorf("unnamed, processes %v: %+v", joined, n)
	}
	if n.Path != "/proc/"+strconv.Itoa(n.PID)+"/ns/net" {
		t.Errorf("unnamed: path %s", n.Path)
	}
	if n.ContainerID != "" || n.PodUID != "" {
		t.Errorf("a test's sleep attributed to a container: %+v", n.Attribution)
	}

	// The host's first, exactly one; ours is there and marked.
	if len(f.Namespaces) == 0 || !f.Namespaces[0].Host {
		t.Fatalf("the host's namespace is not first: %v", f.Namespaces)
	}
	self := byInode(t, f, inodeOf(t, "/proc/thread-self/ns/net"))
	if !self.Self || self.NS != netns.Self() {
		t.Errorf("our own namespace: %+v, want Self and the NS that enters nothing", self)
	}
	seen := map[[2]uint64]bool{}
	hosts := 0
	for i, n := range f.Namespaces {
		key := [2]uint64{n.Dev, n.Ino}
		if seen[key] {
			t.Errorf("%s found twice", n.Name)
		}
		seen[key] = true
		if n.Host {
			hosts++
		}
		// Each reaches its namespace, and its name is a spelling Resolve takes.
		if ino, err := n.NS.Inode(); err != nil || ino != n.Ino {
			t.Errorf("%s: NS reaches inode %d (%v), want %d", n.Name, ino, err, n.Ino)
		}
		if r, err := netns.Resolve(n.Name); err == nil {
			if ino, _ := r.Inode(); ino != n.Ino && !n.Self {
				t.Errorf("Resolve(%q) reaches %d, want %d", n.Name, ino, n.Ino)
			}
		} else if !errors.Is(err, netns.ErrNotExist) { // gone meanwhile: another test's
			t.Errorf("Resolve(%q): %v", n.Name, err)
		}
		if i > 0 && !f.Namespaces[i-1].Host && !ordered(f.Namespaces[i-1], n) {
			t.Errorf("%s before %s", f.Namespaces[i-1].Name, n.Name)
		}
	}
	if hosts != 1 {
		t.Errorf("%d namespaces marked Host, want 1", hosts)
	}
}

// ordered: names before pid:PID, names in order, unnamed by inode.
func ordered(a, b netns.Namespace) bool {
	ua, ub := strings.HasPrefix(a.Name, "pid:"), strings.HasPrefix(b.Name, "pid:")
	switch {
	case ua != ub:
		return ub
	case ua:
		return a.Ino < b.Ino
	case strings.HasPrefix(a.Name, "/") != strings.HasPrefix(b.Name, "/"):
		return strings.HasPrefix(b.Name, "/") // docker's paths after /run/netns names
	}
	return a.Name < b.Name
}

// TestWalkReadsEachNamespacesTunables: one namespace tuned, the others at the
// kernel's defaults; a walk reads each one's own values, in and out of Enter.
func TestWalkReadsEachNamespacesTunables(t *testing.T) {
	nss := testnet.NewNamespaces(t, 4)
	tuned := nss[2]
	tuned.Sysctl(sysctl.FileTime, "600")
	tuned.Sysctl(sysctl.FileIntvl, "30")
	tuned.Sysctl(sysctl.FileProbes, "5")
	h := testnet.Unnamed(t)
	inodes := []uint64{h.Inode()}
	for _, ns := range nss {
		inodes = append(inodes, inodeOf(t, ns.NetNS().Path))
	}
	list := ours(t, enumerate(t), inodes...)

	for _, enter := range []bool{true, false} {
		t.Run(fmt.Sprintf("enter=%v", enter), func(t *testing.T) {
			var out bytes.Buffer
			w := &netns.Walker{Parallel: 3, Enter: enter}
			res, err := w.Walk(context.Background(), list, &out, func(ctx context.Context, v *netns.Visit) error {
				tun, err := sysctl.Read(v) // a Visit is a sysctl.Namespace
				if err != nil {
					return err
				}
				// Three writes with yields between: a walk must not interleave them.
				fmt.Fprintf(v.Out, "%s time=%d", v.Name, tun.Time/time.Second)
				runtime.Gosched()
				fmt.Fprintf(v.Out, " intvl=%d", tun.Intvl/time.Second)
				runtime.Gosched()
				fmt.Fprintf(v.Out, " probes=%d\n", tun.Probes)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			var want strings.Builder
			for i, n := range list {
				if res[i].Err != nil {
					t.Fatalf("%s: %v", n.Name, res[i].Err)
				}
				v := "time=7200 intvl=75 probes=9"
				if n.Name == tuned.Name {
					v = "time=600 intvl=30 probes=5"
				}
				// The oracle: sysctl(8) run inside the namespace.
				if got := sysctlIn(t, n.Path, "net.ipv4.tcp_keepalive_time"); !strings.HasPrefix(v, "time="+got+" ") {
					t.Fatalf("%s: sysctl(8) says tcp_keepalive_time=%s, the test expects %s", n.Name, got, v)
				}
				fmt.Fprintf(&want, "%s %s\n", n.Name, v)
			}
			if out.String() != want.String() {
				t.Fatalf("walk wrote:\n%s\nwant:\n%s", out.String(), want.String())
			}
		})
	}
}

func sysctlIn(t testing.TB, path, name string) string {
	t.Helper()
	out, err := exec.Command("nsenter", "--net="+path, "sysctl", "-n", name).Output()
	if err != nil {
		t.Fatalf("nsenter --net=%s sysctl -n %s: %v", path, name, err)
	}
	return strings.TrimSpace(string(out))
}

// TestWalkGoesOnWhenANamespaceIsDeleted: a namespace deleted after it was
// found is reported as ErrGone, and the walk completes with the rest.
func TestWalkGoesOnWhenANamespaceIsDeleted(t *testing.T) {
	nss := testnet.NewNamespaces(t, 4)
	h := testnet.Unnamed(t)
	inodes := []uint64{h.Inode()}
	for _, ns := range nss {
		inodes = append(inodes, inodeOf(t, ns.NetNS().Path))
	}
	list := ours(t, enumerate(t), inodes...)
	named := func(i int) *testnet.NS { // the testnet.NS at list[i]
		for _, ns := range nss {
			if ns.Name == list[i].Name {
				return ns
			}
		}
		t.Fatalf("%s is not a named namespace of the test", list[i].Name)
		return nil
	}
	idx := func(name string) int {
		return slices.IndexFunc(list, func(n netns.Namespace) bool { return n.Name == name })
	}
	victim, later := named(2), named(0)

	t.Run("mid-walk", func(t *testing.T) {
		// One at a time: the first visit deletes the third namespace before the
		// walk reaches it.
		var done []int
		w := &netns.Walker{Parallel: 1, Enter: true, Done: func(r netns.Result) { done = append(done, r.Index) }}
		var out bytes.Buffer
		res, err := w.Walk(context.Background(), list, &out, func(ctx context.Context, v *netns.Visit) error {
			if v.Index == 0 {
				victim.Delete()
			}
			fmt.Fprintln(v.Out, v.Name)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range res {
			switch {
			case i == idx(victim.Name):
				if !errors.Is(r.Err, netns.ErrGone) || !errors.Is(r.Err, netns.ErrNotExist) {
					t.Errorf("deleted %s: %v, want ErrGone", victim.Name, r.Err)
				}
				if strings.Contains(out.String(), victim.Name) {
					t.Errorf("the deleted namespace was visited")
				}
			case r.Err != nil:
				t.Errorf("%s: %v", r.Namespace.Name, r.Err)
			}
		}
		if len(done) != len(list) || !slices.IsSorted(done) {
			t.Errorf("Done for %v, want each of %d in order", done, len(list))
		}
		if strings.Count(out.String(), "\n") != len(list)-1 {
			t.Errorf("visited:\n%s", out.String())
		}
	})
	t.Run("while-visited", func(t *testing.T) {
		// Deleted during its own visit: the open descriptor holds it until the
		// visit ends, so the visit completes.
		i := slices.IndexFunc(list, func(n netns.Namespace) bool { return n.Name == named(1).Name })
		res, err := (&netns.Walker{}).Walk(context.Background(), list[i:i+1], &bytes.Buffer{}, func(ctx context.Context, v *netns.Visit) error {
			named(1).Delete()
			if _, err := sysctl.Read(v); err != nil {
				return err
			}
			c, err := diag.Dial(v)
			if err != nil {
				return err
			}
			return c.Close()
		})
		if err != nil || res[0].Err != nil {
			t.Fatalf("visit of a namespace deleted meanwhile: %v, %v", err, res[0].Err)
		}
	})
	t.Run("before-walk", func(t *testing.T) {
		// Found, then gone: a deleted name and an unnamed namespace whose only
		// process ended. In parallel, the rest complete.
		later.Delete()
		h.Kill()
		w := &netns.Walker{Parallel: 4}
		res, err := w.Walk(context.Background(), list, &bytes.Buffer{}, func(ctx context.Context, v *netns.Visit) error {
			c, err := diag.Dial(v)
			if err != nil {
				return err
			}
			return c.Close()
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res {
			gone := r.Namespace.Name == later.Name || r.Namespace.Name == victim.Name || r.Namespace.Name == named(1).Name || r.Namespace.Ino == inodes[0]
			if gone != errors.Is(r.Err, netns.ErrGone) || (!gone && r.Err != nil) {
				t.Errorf("%s: %v (gone: %v)", r.Namespace.Name, r.Err, gone)
			}
		}
	})
}

// TestWalkCountsWhatSSCounts: per namespace, the sockets a walk dumps through
// sock_diag are the ones `ss -atinoeH` lists there, named and unnamed, dialled
// by descriptor and entered.
func TestWalkCountsWhatSSCounts(t *testing.T) {
	nss := testnet.NewNamespaces(t, 3)
	h := testnet.Unnamed(t)
	want := map[string]int{nss[0].Name: 0}
	want[nss[1].Name] = testnet.Fill(t, []netns.NS{nss[1].NetNS()}, 10)
	n := testnet.Fill(t, []netns.NS{nss[2].NetNS(), h.NetNS()}, 25)
	want[nss[2].Name] = n
	inodes := []uint64{h.Inode()}
	for _, ns := range nss {
		inodes = append(inodes, inodeOf(t, ns.NetNS().Path))
	}
	list := ours(t, enumerate(t), inodes...)
	for _, ns := range list {
		if ns.Ino == inodes[0] {
			want[ns.Name] = n
		}
	}

	for _, enter := range []bool{false, true} {
		t.Run(fmt.Sprintf("enter=%v", enter), func(t *testing.T) {
			var out bytes.Buffer
			w := &netns.Walker{Parallel: 2, Enter: enter}
			res, err := w.Walk(context.Background(), list, &out, func(ctx context.Context, v *netns.Visit) error {
				var ns diag.Namespace = v
				if enter {
					ns = nil // the thread is inside already
				}
				c, err := diag.Dial(ns)
				if err != nil {
					return err
				}
				defer c.Close()
				n := 0
				for s, err := range c.Sockets(ctx, nil) {
					if err != nil {
						return err
					}
					fmt.Fprintf(v.Out, "%s %s %s\n", v.Name, s.State, s.Local)
					n++
				}
				fmt.Fprintf(v.Out, "%s total %d\n", v.Name, n)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]int{}
			prev := ""
			sc := bufio.NewScanner(&out)
			for sc.Scan() {
				f := strings.Fields(sc.Text())
				if f[0] != prev && got[f[0]] != 0 {
					t.Fatalf("%s's records are split by another namespace's", f[0])
				}
				prev = f[0]
				if f[1] == "total" {
					got[f[0]], _ = strconv.Atoi(f[2])
				}
			}
			for i, ns := range list {
				if res[i].Err != nil {
					t.Fatalf("%s: %v", ns.Name, res[i].Err)
				}
				ss := ssCount(t, ns.Path)
				if got[ns.Name] != ss || ss != want[ns.Name] {
					t.Errorf("%s: the walk dumped %d sockets, ss lists %d, the test made %d", ns.Name, got[ns.Name], ss, want[ns.Name])
				}
			}
		})
	}
}

// ssCount counts the sockets `ss -atinoeH` lists in the namespace at path: one
// line each, its tcp_info on a line that starts with a tab.
func ssCount(t testing.TB, path string) int {
	t.Helper()
	out, err := exec.Command("nsenter", "--net="+path, "ss", "-atinoeH").Output()
	if err != nil {
		t.Fatalf("nsenter --net=%s ss -atinoeH: %v", path, err)
	}
	n := 0
	for _, line := range strings.Split(string(out), "\n") {
		if line != "" && line[0] != '\t' && line[0] != ' ' {
			n++
		}
	}
	return n
}

// TestWalkWithoutSysAdmin: without CAP_SYS_ADMIN nothing can be entered but
// our own namespace; the walk says which capability is missing for each of the
// others, and goes on.
func TestWalkWithoutSysAdmin(t *testing.T) {
	ns := testnet.NewNS(t)
	h := testnet.Unnamed(t)
	out := testnet.RunWithoutCaps(t, "TestHelperWalkWithoutSysAdmin",
		[]string{fmt.Sprintf("TCPKEEP_HELPER_INODES=%d,%d", inodeOf(t, ns.NetNS().Path), h.Inode())}, "CAP_SYS_ADMIN")
	if !strings.Contains(out, "walk without CAP_SYS_ADMIN OK") {
		t.Fatalf("helper did not run:\n%s", out)
	}
}

func TestHelperWalkWithoutSysAdmin(t *testing.T) {
	spec := os.Getenv("TCPKEEP_HELPER_INODES")
	if spec == "" {
		t.Skip("helper for TestWalkWithoutSysAdmin")
	}
	if netns.HasCapability(netns.CapSysAdmin) {
		t.Fatal("the helper runs with CAP_SYS_ADMIN")
	}
	var inodes []uint64
	for _, s := range strings.Split(spec, ",") {
		n, _ := strconv.ParseUint(s, 10, 64)
		inodes = append(inodes, n)
	}
	f := enumerate(t) // finding needs no CAP_SYS_ADMIN
	self := byInode(t, f, inodeOf(t, "/proc/thread-self/ns/net"))
	list := append([]netns.Namespace{self}, ours(t, f, inodes...)...)
	for _, enter := range []bool{true, false} {
		res, err := (&netns.Walker{Enter: enter}).Walk(context.Background(), list, &bytes.Buffer{}, func(ctx context.Context, v *netns.Visit) error {
			_, err := sysctl.Read(v)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if res[0].Err != nil {
			t.Errorf("enter=%v: our own namespace: %v", enter, res[0].Err)
		}
		for _, r := range res[1:] {
			c, ok := netns.MissingCapability(r.Err)
			if !ok || c != netns.CapSysAdmin || !errors.Is(r.Err, os.ErrPermission) {
				t.Errorf("enter=%v: %s: %v, want a refusal naming CAP_SYS_ADMIN", enter, r.Namespace.Name, r.Err)
			}
		}
	}
	// NS.Do says the same.
	if c, _ := netns.MissingCapability(list[1].NS.Do(func() error { return nil })); c != netns.CapSysAdmin {
		t.Errorf("NS.Do without CAP_SYS_ADMIN: missing %q, want CAP_SYS_ADMIN", c)
	}
	fmt.Println("walk without CAP_SYS_ADMIN OK")
}

// TestEnumerateWithoutPtrace: without CAP_SYS_PTRACE another user's process's
// namespace cannot be opened: Enumerate lists the process in Skipped, saying
// so, and finds the rest.
func TestEnumerateWithoutPtrace(t *testing.T) {
	h := testnet.UnnamedAs(t, 65534)
	named := testnet.NewNS(t)
	byInode(t, enumerate(t), h.Inode()) // with the capability, it is found
	out := testnet.RunWithoutCaps(t, "TestHelperEnumerateWithoutPtrace",
		[]string{fmt.Sprintf("TCPKEEP_HELPER_HOLDER=%d,%d,%d", h.PID, h.Inode(), inodeOf(t, named.NetNS().Path))}, "CAP_SYS_PTRACE")
	if !strings.Contains(out, "enumerate without CAP_SYS_PTRACE OK") {
		t.Fatalf("helper did not run:\n%s", out)
	}
}

func TestHelperEnumerateWithoutPtrace(t *testing.T) {
	spec := os.Getenv("TCPKEEP_HELPER_HOLDER")
	if spec == "" {
		t.Skip("helper for TestEnumerateWithoutPtrace")
	}
	var pid int
	var ino, named uint64
	if _, err := fmt.Sscanf(spec, "%d,%d,%d", &pid, &ino, &named); err != nil {
		t.Fatal(err)
	}
	f := enumerate(t)
	for _, n := range f.Namespaces {
		if n.Ino == ino {
			t.Fatalf("found nobody's namespace without CAP_SYS_PTRACE: %+v", n)
		}
	}
	byInode(t, f, named) // names need no capability
	i := slices.IndexFunc(f.Skipped, func(s netns.Skip) bool { return s.PID == pid })
	if i < 0 {
		t.Fatalf("process %d is not in Skipped: %v", pid, f.Skipped)
	}
	if c, ok := netns.MissingCapability(f.Skipped[i].Err); !ok || c != netns.CapSysPtrace {
		t.Fatalf("skipped %d: %v, want a refusal naming CAP_SYS_PTRACE", pid, f.Skipped[i].Err)
	}
	fmt.Println("enumerate without CAP_SYS_PTRACE OK")
}

func TestDescribe(t *testing.T) {
	ns := testnet.NewNS(t)
	h := testnet.Unnamed(t)
	for _, tc := range []struct {
		spec string
		ino  uint64
		pid  int
		self bool
	}{
		{ns.Name, inodeOf(t, ns.NetNS().Path), 0, false},
		{"pid:" + strconv.Itoa(h.PID), h.Inode(), h.PID, false},
		{"", inodeOf(t, "/proc/thread-self/ns/net"), 0, true},
	} {
		r, err := netns.Resolve(tc.spec)
		if err != nil {
			t.Fatal(err)
		}
		n, err := netns.Describe(r)
		if err != nil {
			t.Fatal(err)
		}
		want := tc.spec
		if want == "" {
			want = "self"
		}
		if n.Ino != tc.ino || n.Name != want || n.PID != tc.pid || n.Self != tc.self || n.Host != tc.self || n.NS != r {
			t.Errorf("Describe(%q) = %+v", tc.spec, n)
		}
		if tc.pid != 0 && n.Comm != "sleep" {
			t.Errorf("Describe(%q): comm %q, want sleep", tc.spec, n.Comm)
		}
		// It walks like an enumerated one.
		res, err := (&netns.Walker{}).Walk(context.Background(), []netns.Namespace{n}, &bytes.Buffer{}, func(ctx context.Context, v *netns.Visit) error {
			_, err := sysctl.Read(v)
			return err
		})
		if err != nil || res[0].Err != nil {
			t.Errorf("walk of Describe(%q): %v, %v", tc.spec, err, res[0].Err)
		}
	}
}
