package netns

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// DockerRunDir is where docker binds the namespaces of its containers, one file
// per sandbox (and "default" for the host's).
const DockerRunDir = "/var/run/docker/netns"

// ErrGone reports a namespace that was found and is no longer there: its name
// was deleted and no process is left in it. errors.Is(err, ErrNotExist) holds.
var ErrGone = fmt.Errorf("%w (gone since it was found)", ErrNotExist)

// Namespace is one network namespace on the host, as Enumerate found it.
type Namespace struct {
	// NS reaches the namespace: pass it wherever an NS goes (Do, Open, a
	// sock_diag dial). For the namespace tcpkeep runs in it is Self(), which
	// enters nothing and so needs no CAP_SYS_ADMIN.
	NS
	// Name is what records call it (netns): its name under /run/netns, else the
	// path of its name under DockerRunDir, else pid:PID of the process it is
	// attributed to. Each is a spelling Resolve accepts.
	Name string
	// Dev and Ino identify it: the device and inode of its nsfs file. Ino is what
	// records carry as netns_inode.
	Dev, Ino uint64
	// Host marks the host's namespace: PID 1's, or the one tcpkeep runs in where
	// PID 1's cannot be read (a sandbox that hides PID 1).
	Host bool
	// Self marks the namespace tcpkeep runs in.
	Self bool
	// PID is the process the namespace is attributed to: the first (lowest PID)
	// whose cgroup names a container or pod, else the lowest PID in it; 0 when no
	// process is in it (a name that only `ip netns exec` uses).
	PID int
	// Comm is that process's command name (/proc/PID/comm): netns_comm.
	Comm string
	// Attribution is the container and pod of that process, from its cgroup path;
	// empty for the host's namespace (a host-network pod shares it, and it is
	// not the pod's).
	Attribution
	// Procs is how many processes were seen in it.
	Procs int
	// alt are other processes in it, to reach it by should PID and the name go.
	alt []int
}

// String is Name.
func (n Namespace) String() string { return n.Name }

// Skip is something Enumerate could not look at.
type Skip struct {
	// Path is the file it could not read: a namespace name or /proc/PID/ns/net.
	Path string
	// PID is the process whose namespace it could not see, 0 for a name.
	PID int
	// Err says why: a *PermissionError (MissingCapability tells which
	// capability would have allowed it), or another error.
	Err error
}

// Found is what Enumerate saw.
type Found struct {
	// Namespaces are every distinct namespace found, each once: the host's first,
	// then those with a name under /run/netns (by name), then those with a docker
	// name (by name), then the rest by inode (the order the kernel made them in).
	Namespaces []Namespace
	// Skipped is what could not be looked at: the namespaces behind it are
	// missing from Namespaces unless another process or name showed them.
	Skipped []Skip
}

// maxAttribution bounds how many processes of one namespace have their cgroup
// read while looking for its container.
const maxAttribution = 64

// maxAlt bounds the other processes kept to reach a namespace by.
const maxAlt = 4

// Enumerate finds every network namespace on the host: the names under RunDir
// and DockerRunDir, and the namespace of every process under /proc (so unnamed
// container namespaces are found). What it cannot see it skips and lists in
// Skipped; it fails only when it can see nothing (no /proc).
//
// Call it from the namespace tcpkeep runs in (not inside Do): that is the one
// it marks Self.
func Enumerate() (*Found, error) {
	return enumerate("/proc", []string{RunDir, DockerRunDir})
}

type nsKey struct{ dev, ino uint64 }

type building struct {
	ns      Namespace
	path    string
	pids    []int // non-host namespaces only: every process seen in it
	minPID  int
	nprocs  int
	hasName bool
}

func enumerate(proc string, dirs []string) (*Found, error) {
	found := &Found{}
	var self unix.Stat_t
	if err := unix.Stat(proc+"/thread-self/ns/net", &self); err != nil {
		return nil, fmt.Errorf("netns: read own namespace: %w", err)
	}
	selfKey := nsKey{self.Dev, self.Ino}
	nsfs := self.Dev // every namespace file lives on nsfs
	hostKey := findHost(proc, selfKey)
	var st unix.Stat_t
	all := map[nsKey]*building{}
	get := func(k nsKey) *building {
		b := all[k]
		if b == nil {
			b = &building{}
			b.ns.Dev, b.ns.Ino = k.dev, k.ino
			all[k] = b
		}
		return b
	}
	get(selfKey)
	get(hostKey)

	for gi, dir := range dirs {
		names, err := readNames(dir)
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				found.Skipped = append(found.Skipped, Skip{Path: dir, Err: classifyOpen(dir, dir, err, "")})
			}
			continue
		}
		slices.Sort(names)
		for _, name := range names {
			path := filepath.Join(dir, name)
			k, ok, err := namedNS(path, nsfs)
			if err != nil {
				found.Skipped = append(found.Skipped, Skip{Path: path, Err: classifyOpen(name, path, err, "")})
				continue
			}
			if !ok {
				continue // a file left behind, not a namespace
			}
			b := get(k)
			if b.hasName || (gi > 0 && k == hostKey) {
				continue // the first name wins; docker's "default" is the host's
			}
			b.hasName, b.path = true, path
			b.ns.Name = name
			if gi > 0 {
				b.ns.Name = path // only /run/netns names resolve bare
			}
		}
	}

	pids, err := readNames(proc)
	if err != nil {
		return nil, fmt.Errorf("netns: list processes: %w", err)
	}
	buf := make([]byte, 0, 64)
	for _, s := range pids {
		pid, err := strconv.Atoi(s)
		if err != nil || pid <= 0 {
			continue
		}
		buf = append(strconv.AppendInt(append(append(buf[:0], proc...), '/'), int64(pid), 10), "/ns/net"...)
		path := string(buf)
		if err := unix.Stat(path, &st); err != nil {
			// Gone since the listing, or a zombie (its namespaces are released):
			// nothing to see. A refusal is worth telling.
			if isDenied(err) {
				found.Skipped = append(found.Skipped, Skip{Path: path, PID: pid, Err: denied("open", "pid:"+s, path, err, CapSysPtrace)})
			}
			continue
		}
		if st.Dev != nsfs {
			continue
		}
		k := nsKey{st.Dev, st.Ino}
		b := get(k)
		b.nprocs++
		if b.minPID == 0 || pid < b.minPID {
			b.minPID = pid
		}
		if k != hostKey {
			b.pids = append(b.pids, pid)
		}
	}

	for k, b := range all {
		b.ns.Host = k == hostKey
		if b.minPID == 0 && !b.hasName && k != selfKey {
			// Only the host's key can get here without a process or name: PID 1's
			// namespace with no process left visible. Nothing reaches it.
			continue
		}
		b.attribute(proc, k == hostKey)
		b.ns.Procs = b.nprocs
		b.ns.Self = k == selfKey
		if !b.hasName {
			b.ns.Name = "pid:" + strconv.Itoa(b.ns.PID)
			b.path = proc + "/" + strconv.Itoa(b.ns.PID) + "/ns/net"
		}
		switch {
		case b.ns.Self:
			b.ns.NS = Self()
		default:
			b.ns.NS = NS{Spec: b.ns.Name, Path: b.path}
		}
		found.Namespaces = append(found.Namespaces, b.ns)
	}
	slices.SortFunc(found.Namespaces, compareNS)
	return found, nil
}

// findHost identifies the host's namespace: PID 1's; where PID 1 is hidden (a
// sandbox's init), kthreadd's (kernel threads run in the initial namespaces);
// else self.
func findHost(proc string, self nsKey) nsKey {
	var st unix.Stat_t
	if err := unix.Stat(proc+"/1/ns/net", &st); err == nil {
		return nsKey{st.Dev, st.Ino}
	}
	if isKernelThread(proc, 2) && unix.Stat(proc+"/2/ns/net", &st) == nil {
		return nsKey{st.Dev, st.Ino}
	}
	return self
}

// group orders namespaces: the host's, named, docker-named, unnamed.
func (n *Namespace) group() int {
	switch {
	case n.Host:
		return 0
	case strings.HasPrefix(n.Name, "pid:"):
		return 3
	case strings.ContainsRune(n.Name, '/'):
		return 2
	}
	return 1
}

func compareNS(a, b Namespace) int {
	if ga, gb := a.group(), b.group(); ga != gb {
		return ga - gb
	}
	if a.group() != 3 {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
	}
	switch {
	case a.Ino < b.Ino:
		return -1
	case a.Ino > b.Ino:
		return 1
	}
	return 0
}

// attribute picks the process the namespace is named and attributed by.
func (b *building) attribute(proc string, host bool) {
	if host || len(b.pids) == 0 {
		b.ns.PID = b.minPID
	} else {
		slices.Sort(b.pids)
		b.ns.PID = b.pids[0]
		for _, pid := range b.pids[:min(len(b.pids), maxAttribution)] {
			cg, err := os.ReadFile(proc + "/" + strconv.Itoa(pid) + "/cgroup")
			if err != nil {
				continue
			}
			if a := ParseCgroup(cg); a != (Attribution{}) {
				b.ns.PID, b.ns.Attribution = pid, a
				break
			}
		}
		for _, pid := range b.pids {
			if len(b.ns.alt) == maxAlt {
				break
			}
			if pid != b.ns.PID {
				b.ns.alt = append(b.ns.alt, pid)
			}
		}
	}
	if b.ns.PID > 0 {
		if c, err := os.ReadFile(proc + "/" + strconv.Itoa(b.ns.PID) + "/comm"); err == nil {
			b.ns.Comm = string(bytes.TrimSuffix(c, []byte{'\n'}))
		}
	}
}

// readNames lists a directory, unsorted.
func readNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}

// namedNS tells whether path is a network namespace (a bind mount of an nsfs
// file) and which.
func namedNS(path string, nsfs uint64) (nsKey, bool, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nsKey{}, false, nil // deleted since the listing
		}
		return nsKey{}, false, err
	}
	if st.Dev != nsfs {
		return nsKey{}, false, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nsKey{}, false, err
	}
	defer f.Close()
	// nsfs holds every kind of namespace: keep the network ones.
	t, err := unix.IoctlRetInt(int(f.Fd()), unix.NS_GET_NSTYPE)
	if err != nil || t != unix.CLONE_NEWNET {
		return nsKey{}, false, nil
	}
	return nsKey{st.Dev, st.Ino}, true, nil
}

// classifyOpen turns a refused open of a namespace file into a
// *PermissionError naming c if this process lacks it ("" names none).
func classifyOpen(name, path string, err error, c Capability) error {
	if isDenied(err) {
		return denied("open", name, path, err, c)
	}
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w: %s does not exist", ErrNotExist, path)
	}
	return fmt.Errorf("%w: %s: %w", ErrOpen, path, err)
}

// pfKthread is PF_KTHREAD, the flag of a kernel thread (include/linux/sched.h).
const pfKthread = 0x00200000

// isKernelThread tells from /proc/PID/stat's flags (the 9th field) whether pid
// is a kernel thread: in the host's PID namespace, PID 2 is kthreadd.
func isKernelThread(proc string, pid int) bool {
	b, err := os.ReadFile(proc + "/" + strconv.Itoa(pid) + "/stat")
	return err == nil && statIsKthread(b)
}

// statIsKthread reads the flags of /proc/PID/stat's contents.
func statIsKthread(b []byte) bool {
	// "PID (COMM) STATE PPID PGRP SESSION TTY TPGID FLAGS ...": COMM may hold
	// spaces and parentheses, so count from the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 7 {
		return false
	}
	flags, err := strconv.ParseUint(f[6], 10, 64)
	return err == nil && flags&pfKthread != 0
}

// Describe makes the Namespace ns refers to (a value Resolve returned), so that
// one namespace can be walked like many: Name is ns's spelling ("self" for the
// namespace tcpkeep runs in), Dev and Ino its identity, Host and Self as
// Enumerate sets them. For pid:PID it is attributed to that process. Call it,
// like Enumerate, from the namespace tcpkeep runs in.
func Describe(ns NS) (Namespace, error) {
	n := Namespace{NS: ns, Name: ns.String()}
	var st, self unix.Stat_t
	if err := unix.Stat(ns.Path, &st); err != nil {
		if isDenied(err) {
			return Namespace{}, classifyOpen(n.Name, ns.Path, err, openCap(ns.Path))
		}
		return Namespace{}, classifyOpen(n.Name, ns.Path, err, "")
	}
	n.Dev, n.Ino = st.Dev, st.Ino
	if err := unix.Stat("/proc/thread-self/ns/net", &self); err != nil {
		return Namespace{}, fmt.Errorf("netns: read own namespace: %w", err)
	}
	selfKey := nsKey{self.Dev, self.Ino}
	n.Self = nsKey{st.Dev, st.Ino} == selfKey
	host := findHost("/proc", selfKey) == nsKey{st.Dev, st.Ino}
	n.Host = host
	if pid, ok := strings.CutPrefix(ns.Spec, "pid:"); ok {
		b := &building{ns: n, pids: []int{}}
		if p, err := strconv.Atoi(pid); err == nil {
			b.pids, b.minPID = []int{p}, p
		}
		b.attribute("/proc", host)
		n = b.ns
		n.Procs = len(b.pids)
	}
	return n, nil
}
