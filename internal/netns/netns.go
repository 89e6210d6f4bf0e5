// Package netns names network namespaces the way an operator does (a name under
// /run/netns, a path such as /proc/PID/ns/net, or pid:PID) and runs code inside one.
//
// A namespace is a value passed down to whatever needs it, never process state:
// Do enters it on a locked OS thread and always comes back, so the rest of the
// program keeps running in the namespace it started in.
//
// Enumerate finds every network namespace on the host (named, and unnamed ones
// through the processes in them), with the container and pod each belongs to
// (ParseCgroup); a Walker visits many of them in parallel and writes their output
// in order. Refusals are *PermissionError values that name the missing
// capability. docs/all-netns.md says how and at what cost.
package netns

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// RunDir is where `ip netns add` binds named namespaces.
const RunDir = "/run/netns"

// Errors a caller can test with errors.Is. They do not name the namespace:
// the caller, which knows it, names it once.
var (
	// ErrNotExist reports a namespace that does not exist.
	ErrNotExist = errors.New("no such network namespace")
	// ErrSpelling reports a spelling that cannot name a namespace at all,
	// whatever exists on the host: a usage error, not a runtime one.
	ErrSpelling = errors.New("not a namespace")
	// ErrNotNetNS reports a file that is not a network namespace.
	ErrNotNetNS = errors.New("not a network namespace")
	// ErrOpen marks a namespace file that could not be opened; with
	// os.ErrPermission, another process's namespace needs ptrace access to it
	// (CAP_SYS_PTRACE).
	ErrOpen = errors.New("cannot open the namespace")
	// ErrEnter marks a namespace that could not be entered; with
	// os.ErrPermission, setns needs CAP_SYS_ADMIN.
	ErrEnter = errors.New("cannot enter the namespace")
)

// NS identifies one network namespace.
type NS struct {
	// Spec is what the operator gave: a name, a path, pid:PID, or "" for the
	// namespace tcpkeep runs in.
	Spec string
	// Path is the file that refers to the namespace.
	Path string
}

// Self is the namespace of the calling thread: the one tcpkeep was started in,
// as long as nobody has entered another one on this thread.
func Self() NS { return NS{Path: "/proc/thread-self/ns/net"} }

// Resolve turns an operator's spelling into a namespace and checks that it exists
// and is a network namespace.
func Resolve(spec string) (NS, error) {
	ns, err := parse(spec)
	if err != nil || spec == "" {
		return ns, err
	}
	if err := ns.check(); err != nil {
		return NS{}, err
	}
	return ns, nil
}

// parse maps a spelling to a path, touching no file.
func parse(spec string) (NS, error) {
	var ns NS
	switch {
	case spec == "":
		return Self(), nil
	case strings.HasPrefix(spec, "pid:"):
		pid, err := strconv.Atoi(spec[len("pid:"):])
		if err != nil || pid <= 0 {
			return NS{}, fmt.Errorf("%q is %w: pid:PID needs a positive process ID", spec, ErrSpelling)
		}
		ns = NS{Spec: spec, Path: fmt.Sprintf("/proc/%d/ns/net", pid)}
	case strings.ContainsRune(spec, '/'):
		ns = NS{Spec: spec, Path: spec}
	default:
		if spec == "." || spec == ".." {
			return NS{}, fmt.Errorf("%q is %w name", spec, ErrSpelling)
		}
		ns = NS{Spec: spec, Path: filepath.Join(RunDir, spec)}
	}
	return ns, nil
}

func (ns NS) check() error {
	// Only a regular-looking file can be a namespace: never open a FIFO or device.
	if st, err := os.Stat(ns.Path); err == nil && !st.Mode().IsRegular() {
		return fmt.Errorf("%s is %w", ns.Path, ErrNotNetNS)
	}
	f, err := ns.open()
	if err != nil {
		return err
	}
	defer f.Close()
	// NS_GET_NSTYPE tells a network namespace from any other file.
	t, err := unix.IoctlRetInt(int(f.Fd()), unix.NS_GET_NSTYPE)
	if err != nil || t != unix.CLONE_NEWNET {
		return fmt.Errorf("%s is %w", ns.Path, ErrNotNetNS)
	}
	return nil
}

// open opens the namespace file.
func (ns NS) open() (*os.File, error) {
	f, err := os.Open(ns.Path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("%w: %s does not exist", ErrNotExist, ns.Path)
	case err != nil:
		return nil, classifyOpen(ns.String(), ns.Path, err, openCap(ns.Path))
	}
	return f, nil
}

// String names the namespace for people and for the netns field of records:
// the operator's spelling, or "self" for the namespace tcpkeep runs in.
func (ns NS) String() string {
	if ns.Spec == "" {
		return "self"
	}
	return ns.Spec
}

// Open opens the namespace file, for APIs that take a namespace descriptor
// (setns). The caller closes it.
func (ns NS) Open() (*os.File, error) { return ns.open() }

// Inode is the namespace's identity: two files refer to the same namespace when
// their inodes (on nsfs) are equal.
func (ns NS) Inode() (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(ns.Path, &st); err != nil {
		return 0, fmt.Errorf("stat %s: %w", ns.Path, err)
	}
	return st.Ino, nil
}

// IsHost reports whether ns is the host's namespace, the one PID 1 runs in.
// Settings persisted under /etc/sysctl.d reach only that namespace at boot. Where
// PID 1's namespace cannot be read (a sandbox that hides PID 1), the namespace
// tcpkeep runs in stands for the host's.
func (ns NS) IsHost() (bool, error) {
	a, err := ns.Inode()
	if err != nil {
		return false, err
	}
	b, err := (NS{Spec: "pid:1", Path: "/proc/1/ns/net"}).Inode()
	if err != nil {
		if b, err = Self().Inode(); err != nil {
			return false, err
		}
	}
	return a == b, nil
}

// Do runs fn on an OS thread that has entered ns, then returns the thread to the
// namespace it was in; for Self it runs fn as it is. Files under /proc/sys/net, and sockets, belong to the
// namespace of the thread that opens or creates them, so open them inside fn.
//
// Do runs fn on a new goroutine: if the thread cannot be returned, it stays locked
// and dies with that goroutine instead of serving other code in the wrong namespace.
func (ns NS) Do(fn func() error) error {
	if ns.Spec == "" && ns.Path == Self().Path {
		// Already there: no setns, which would need CAP_SYS_ADMIN for nothing
		// (a container or unit with only CAP_NET_ADMIN could not run at all).
		return fn()
	}
	target, err := ns.open()
	if err != nil {
		return err
	}
	defer target.Close()
	return onThreadIn(target, ns.String(), fn)
}
