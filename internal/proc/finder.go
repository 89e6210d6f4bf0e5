package proc

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// ErrNoProcess: the process a Finder is restricted to does not exist.
var ErrNoProcess = errors.New("no such process")

// Finder finds the process holding a socket from scans of /proc made when
// first needed, for callers that act on sockets through their owners. Socket
// inodes are unique host-wide, whatever the network namespace, so one Finder
// serves every namespace of a run. Not safe for concurrent use.
//
// A socket opened after the scan is not in it: the first socket not found
// makes one more scan, and only one, so a run over many ownerless sockets
// (orphans closing, request sockets) scans /proc at most twice.
type Finder struct {
	root      string
	pid       int
	owners    *Owners
	rescanned bool
	r         *OptReader
}

// NewFinder returns a Finder over root (normally "/proc"). With pid > 0 it
// sees only that process's descriptors: a socket it does not hold has no
// owner. Close releases the pidfds Take keeps.
func NewFinder(root string, pid int) *Finder {
	return &Finder{root: root, pid: pid, r: NewOptReader()}
}

// Close closes the pidfds Take opened.
func (f *Finder) Close() error { return f.r.Close() }

// scan indexes the owners: every process, or the one.
func (f *Finder) scan() error {
	if f.pid <= 0 {
		o, err := ScanOwners(f.root)
		if err != nil {
			return err
		}
		f.owners = o
		return nil
	}
	o, err := ScanPID(f.root, f.pid)
	if err != nil {
		return err
	}
	f.owners = o
	return nil
}

// Scan scans /proc now if it was not yet: for a Finder restricted to one
// process, it says whether that process exists (ErrNoProcess).
func (f *Finder) Scan() error {
	if f.owners != nil {
		return nil
	}
	return f.scan()
}

// Find returns the process and descriptor holding the socket with this
// inode. The error is ErrNoOwner when no process (or not the Finder's one)
// holds it; a *PermissionError (ErrNotPermitted) when it was not found and
// the scan could not read some processes' descriptors for want of
// CAP_SYS_PTRACE; or the failure of the first scan.
func (f *Finder) Find(inode uint32) (Owner, error) {
	if inode == 0 {
		// The kernel reports inode 0 for sockets no file refers to: orphans
		// closing, TIME_WAIT and request sockets.
		return Owner{}, ErrNoOwner
	}
	if f.owners == nil {
		if err := f.scan(); err != nil {
			return Owner{}, err
		}
	}
	if o, ok := f.owners.Lookup(inode); ok {
		return o, nil
	}
	if !f.rescanned {
		f.rescanned = true
		if err := f.scan(); err == nil {
			if o, ok := f.owners.Lookup(inode); ok {
				return o, nil
			}
		}
	}
	return Owner{}, f.notFound(inode)
}

// notFound says why a socket has no owner in the scan. If the scan could not
// read some processes' descriptors because this process lacks
// CAP_SYS_PTRACE, the owner may well be one of them: that is the answer, not
// "no owner". With the capability, a few processes may still be hidden (a
// security module, or a process in a user namespace the capability does not
// reach, as a container runtime's own init can be): then the socket has no
// owner as far as tcpkeep can tell, and the error says how many it could not
// see.
func (f *Finder) notFound(inode uint32) error {
	n, pid := f.owners.Denied()
	if n == 0 {
		return ErrNoOwner
	}
	pe := hidden(fmt.Sprintf("find the owner of socket inode %d: ", inode), n, pid)
	if pe.Cause == PermNoCapSysPtrace {
		return pe
	}
	return fmt.Errorf("%w among the processes this one may see (%v)", ErrNoOwner, pe)
}

// hidden is the refusal to read n processes' descriptors, pid the first.
func hidden(what string, n, pid int) *PermissionError {
	op := fmt.Sprintf("%sread the descriptors of pid %d", what, pid)
	if n > 1 {
		op = fmt.Sprintf("%sread the descriptors of %d processes (pid %d first)", what, n, pid)
	}
	return permissionError(op, pid, unix.EACCES, false)
}

// Relook looks through one process's descriptors again for the socket with
// this inode, after the descriptor the scan found no longer holds it: a
// program may have moved it to another number (dup2). It reports the
// descriptor that holds it now.
func (f *Finder) Relook(pid int, inode uint32) (Owner, bool) {
	o, err := ScanPID(f.root, pid)
	if err != nil {
		return Owner{}, false
	}
	w, ok := o.Lookup(inode)
	if ok && f.owners != nil {
		f.owners.byInode[inode] = owner{pid: int32(w.PID), fd: int32(w.FD)}
	}
	return w, ok
}

// Comm is the command name of a process that holds a socket, as read during
// the scan.
func (f *Finder) Comm(pid int) string { return f.owners.comm[int32(pid)] }

// ScanPID indexes the socket descriptors of one process, as ScanOwners does
// for all. The error wraps ErrNoProcess when root has no such process, and
// ErrNotPermitted when its descriptors may not be read.
func ScanPID(root string, pid int) (*Owners, error) {
	if pid <= 0 || pid > 1<<31-1 {
		return nil, fmt.Errorf("pid %d: %w", pid, ErrNoProcess)
	}
	dir := root + "/" + strconv.Itoa(pid) + "/fd"
	if _, err := os.Stat(dir); err != nil {
		switch {
		case errors.Is(err, os.ErrNotExist):
			return nil, fmt.Errorf("pid %d: %w", pid, ErrNoProcess)
		case errors.Is(err, os.ErrPermission):
			return nil, fmt.Errorf("read %s: %w", dir, ErrNotPermitted)
		}
		return nil, fmt.Errorf("read %s: %w", dir, err)
	}
	o := &Owners{byInode: make(map[uint32]owner), comm: make(map[int32]string), root: root}
	var buf [64]byte
	o.scanPID(int32(pid), buf[:])
	if o.denied > 0 {
		return nil, hidden("", 1, pid)
	}
	return o, nil
}

// Take finds the owner of the socket a dump reported (its inode and cookie)
// and duplicates its descriptor (OptReader.Dup: the identity is checked). If
// the descriptor no longer holds that socket, the owner's descriptors are
// looked through once more (Relook) and the socket taken where it is now;
// otherwise the owner has let go of it and the error wraps ErrGone or
// ErrIdentityMismatch. The owner is returned whenever one was found, also
// with an error. Close the Sock when done.
func (f *Finder) Take(inode uint32, cookie uint64) (*Sock, Owner, error) {
	o, err := f.Find(inode)
	if err != nil {
		return nil, Owner{}, err
	}
	s, err := f.r.Dup(o, inode, cookie)
	if err == nil || !(errors.Is(err, ErrGone) || errors.Is(err, ErrIdentityMismatch)) {
		return s, o, err
	}
	moved, ok := f.Relook(o.PID, inode)
	if !ok || moved == o {
		return nil, o, err
	}
	s, err = f.r.Dup(moved, inode, cookie)
	return s, moved, err
}
