package netns_test

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/tcpkeep/tcpkeep/internal/netns"
	"github.com/tcpkeep/tcpkeep/internal/testnet"
)

// cgroupMount finds where a cgroup hierarchy is mounted: cgroup2's (controller
// "") or cgroup v1's with that controller.
func cgroupMount(t testing.TB, controller string) string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		a, b := strings.Fields(pre), strings.Fields(post)
		if len(a) < 5 || len(b) < 3 || a[3] != "/" {
			continue
		}
		switch {
		case controller == "" && b[0] == "cgroup2":
			return a[4]
		case controller != "" && b[0] == "cgroup" && strings.Contains(","+b[2]+",", ","+controller+","):
			return a[4]
		}
	}
	return ""
}

// cgroupLine is the line of /proc/PID/cgroup-style content for a hierarchy:
// "0" for cgroup2's, else the one whose controllers include controller. It
// returns the path.
func cgroupLine(b []byte, controller string) (string, bool) {
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		if controller == "" && f[0] == "0" || controller != "" && strings.Contains(","+f[1]+",", ","+controller+",") {
			return f[2], true
		}
	}
	return "", false
}

// placeIn makes the cgroup path under the hierarchy at root (ctl: its
// controller, "" for cgroup2), moves pid into it, and returns how to move it
// back and remove what was made.
func placeIn(t testing.TB, root, ctl, path string, pid int) (undo func()) {
	t.Helper()
	orig, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	var made []string
	dir := root
	for _, el := range strings.Split(strings.Trim(path, "/"), "/") {
		dir = filepath.Join(dir, el)
		if err := os.Mkdir(dir, 0o755); err == nil {
			made = append(made, dir)
		} else if !errors.Is(err, os.ErrExist) {
			t.Fatalf("mkdir %s: %v", dir, err)
		}
	}
	undo = func() {
		back, _ := cgroupLine(orig, ctl)
		if err := os.WriteFile(filepath.Join(root, back, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
			t.Errorf("move %d back to %s: %v", pid, back, err)
		}
		for i := len(made) - 1; i >= 0; i-- {
			if err := os.Remove(made[i]); err != nil {
				t.Errorf("remove cgroup %s: %v", made[i], err)
			}
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
		undo()
		t.Fatalf("move %d into %s: %v", pid, dir, err)
	}
	return undo
}

// TestCgroupLayoutsOnTheKernel puts a process holding an unnamed namespace in
// each layout of the fixtures, as real cgroups on this kernel: the kernel
// writes the fixture's line in /proc/PID/cgroup, and Enumerate attributes the
// namespace to the fixture's container and pod.
func TestCgroupLayoutsOnTheKernel(t *testing.T) {
	testnet.RequireRoot(t)
	v2 := cgroupMount(t, "")
	v1 := cgroupMount(t, "pids")
	if v2 == "" && v1 == "" {
		t.Skip("no cgroup hierarchy mounted to build the layouts in")
	}
	h := testnet.Unnamed(t)
	ents, err := os.ReadDir(filepath.Join("testdata", "cgroup"))
	if err != nil {
		t.Fatal(err)
	}
	tried := 0
	for _, e := range ents {
		fix, err := os.ReadFile(filepath.Join("testdata", "cgroup", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		want := netns.ParseCgroup(fix)
		if want == (netns.Attribution{}) {
			continue // a host's layout: nothing to attribute
		}
		// The v2 layouts are single lines; the v1 ones are checked on pids.
		root, ctl := v2, ""
		path, ok := cgroupLine(fix, "")
		if !ok || strings.Count(string(fix), "\n") > 1 {
			root, ctl = v1, "pids"
			path, ok = cgroupLine(fix, "pids")
		}
		if !ok || root == "" || strings.Contains(path, "..") {
			continue // a cgroup namespace's view: not a path to make
		}
		t.Run(strings.TrimSuffix(e.Name(), ".txt"), func(t *testing.T) {
			undo := placeIn(t, root, ctl, path, h.PID)
			defer undo()
			got, err := os.ReadFile("/proc/" + strconv.Itoa(h.PID) + "/cgroup")
			if err != nil {
				t.Fatal(err)
			}
			if line, _ := cgroupLine(got, ctl); line != path {
				t.Fatalf("the kernel writes %q for the layout, the fixture has %q", line, path)
			}
			if a := netns.ParseCgroup(got); a != want {
				t.Fatalf("ParseCgroup(the kernel's file) = %+v, the fixture's gives %+v\n%s", a, want, got)
			}
			n := byInode(t, enumerate(t), h.Inode())
			if n.Attribution != want || n.PID != h.PID || n.Comm != "sleep" {
				t.Fatalf("namespace attributed as %+v (pid %d, %s), want %+v (pid %d, sleep)", n.Attribution, n.PID, n.Comm, want, h.PID)
			}
		})
		tried++
	}
	if tried == 0 {
		t.Fatal("no fixture layout could be built")
	}
}
