package testnet

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// InCgroup moves process pid into the cgroup v2 group at path, made (with its
// parents) under the cgroup2 mount, as a container runtime places a
// container's process: /proc/PID/cgroup then reads "0::PATH", and tcpkeep
// attributes the process's namespace to the container and pod the path names.
// When the test ends the process goes back where it was and what was made is
// removed. Without a cgroup2 hierarchy mounted, the test is skipped.
func InCgroup(t testing.TB, pid int, path string) {
	t.Helper()
	RequireRoot(t)
	root := cgroup2Mount(t)
	if root == "" {
		t.Skip("no cgroup2 hierarchy mounted to place a process in")
	}
	orig, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	back := ""
	for _, line := range strings.Split(string(orig), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			back = p
		}
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
	t.Cleanup(func() {
		// The process may have ended already: then there is nothing to move.
		os.WriteFile(filepath.Join(root, back, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0)
		for i := len(made) - 1; i >= 0; i-- {
			if err := os.Remove(made[i]); err != nil {
				t.Errorf("remove cgroup %s: %v", made[i], err)
			}
		}
	})
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
		t.Fatalf("move %d into cgroup %s: %v", pid, path, err)
	}
}

// cgroup2Mount is where the cgroup2 hierarchy is mounted, "" if nowhere.
func cgroup2Mount(t testing.TB) string {
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
		a, b := strings.Fields(pre), strings.Fields(post)
		if ok && len(a) >= 5 && len(b) >= 1 && a[3] == "/" && b[0] == "cgroup2" {
			return a[4]
		}
	}
	return ""
}
