package proc

import (
	"fmt"
	"io"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// Owner is a process holding a socket: its PID, the descriptor number the
// socket has in it, and its command name.
type Owner struct {
	PID int
	FD  int
	// Comm is /proc/PID/comm as the scan read it; "" if it could not be read.
	Comm string
}

// owner is an Owner packed for the map: the scan keeps one per socket inode.
type owner struct{ pid, fd int32 }

// Owners maps socket inodes to the process holding them, from one scan of
// /proc/*/fd. Only socket descriptors are kept, so its size is bounded by the
// number of sockets, not of files. A socket shared by several processes (after
// fork, or passed over a unix socket) is attributed to the first one found, the
// lowest PID.
type Owners struct {
	byInode map[uint32]owner
	comm    map[int32]string
	root    string
	// denied counts the processes whose descriptors the kernel would not
	// show (ptrace_may_access, PTRACE_MODE_READ); deniedPID is the first.
	denied    int
	deniedPID int32
}

// ScanOwners scans root (normally "/proc") once. Processes that exit during the
// scan, and descriptors it may not read, are skipped: without root it sees only
// the caller's own processes.
func ScanOwners(root string) (*Owners, error) {
	d, err := os.Open(root)
	if err != nil {
		return nil, fmt.Errorf("scan processes: %w", err)
	}
	defer d.Close()
	o := &Owners{byInode: make(map[uint32]owner), comm: make(map[int32]string), root: root}
	var link [64]byte
	for {
		names, err := d.Readdirnames(256)
		for _, n := range names {
			pid, ok := atoi32(n)
			if !ok {
				continue
			}
			o.scanPID(pid, link[:])
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("scan processes: read %s: %w", root, err)
		}
	}
	return o, nil
}

// scanPID records the socket descriptors of one process.
func (o *Owners) scanPID(pid int32, buf []byte) {
	dir := o.root + "/" + strconv.Itoa(int(pid)) + "/fd"
	dfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		if errPermission(err) {
			o.deny(pid)
		}
		return // gone, or a kernel thread's, or not ours to read
	}
	f := os.NewFile(uintptr(dfd), dir)
	defer f.Close()
	found := false
	for {
		names, err := f.Readdirnames(1024)
		for _, n := range names {
			fd, ok := atoi32(n)
			if !ok {
				continue
			}
			k, err := unix.Readlinkat(dfd, n, buf)
			if errPermission(err) {
				// The directory lists, the links do not resolve: another
				// user's process, and no CAP_SYS_PTRACE.
				o.deny(pid)
				return
			}
			if err != nil {
				continue
			}
			ino, ok := socketInode(buf[:k])
			if !ok {
				continue
			}
			if _, seen := o.byInode[ino]; !seen {
				o.byInode[ino] = owner{pid: pid, fd: fd}
				found = true
			}
		}
		if err != nil {
			break
		}
	}
	if found {
		o.comm[pid] = readComm(o.root, pid)
	}
}

func (o *Owners) deny(pid int32) {
	if o.denied == 0 {
		o.deniedPID = pid
	}
	o.denied++
}

// Denied is how many processes' descriptors the scan was not allowed to
// read, and the first of them: a socket not found may belong to one.
func (o *Owners) Denied() (n, firstPID int) {
	if o == nil {
		return 0, 0
	}
	return o.denied, int(o.deniedPID)
}

// socketInode parses a descriptor's link target "socket:[INODE]".
func socketInode(b []byte) (uint32, bool) {
	const pre = "socket:["
	if len(b) < len(pre)+2 || string(b[:len(pre)]) != pre || b[len(b)-1] != ']' {
		return 0, false
	}
	var n uint64
	for _, c := range b[len(pre) : len(b)-1] {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
		if n > 1<<32-1 {
			return 0, false
		}
	}
	return uint32(n), true
}

// atoi32 parses a non-negative decimal that fits an int32.
func atoi32(s string) (int32, bool) {
	if s == "" || len(s) > 10 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int64(s[i]-'0')
	}
	if n > 1<<31-1 {
		return 0, false
	}
	return int32(n), true
}

func readComm(root string, pid int32) string {
	b, err := os.ReadFile(root + "/" + strconv.Itoa(int(pid)) + "/comm")
	if err != nil {
		return ""
	}
	if len(b) > 0 && b[len(b)-1] == '\n' {
		b = b[:len(b)-1]
	}
	return string(b)
}

// Lookup returns the process holding the socket with this inode.
func (o *Owners) Lookup(inode uint32) (Owner, bool) {
	if o == nil || inode == 0 {
		return Owner{}, false
	}
	w, ok := o.byInode[inode]
	if !ok {
		return Owner{}, false
	}
	return Owner{PID: int(w.pid), FD: int(w.fd), Comm: o.comm[w.pid]}, true
}

// Len is how many socket inodes the scan found.
func (o *Owners) Len() int {
	if o == nil {
		return 0
	}
	return len(o.byInode)
}
