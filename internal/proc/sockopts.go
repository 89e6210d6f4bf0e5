package proc

import (
	"errors"
	"fmt"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpkeep/tcpkeep/sysctl"
)

// SockOpts are a socket's real keepalive options as its owner set them, read with
// getsockopt on a duplicate of the owner's descriptor. TCP_KEEPIDLE, INTVL and CNT
// read back the namespace's tunables when the socket did not set its own, so
// these are the values the kernel uses for it.
type SockOpts struct {
	// KeepaliveOn is SO_KEEPALIVE.
	KeepaliveOn bool
	// Keepalive is TCP_KEEPIDLE (Time), TCP_KEEPINTVL (Intvl) and TCP_KEEPCNT
	// (Probes): the socket's own values of the namespace's three tunables.
	Keepalive sysctl.Keepalive
	// UserTimeout is TCP_USER_TIMEOUT; 0 means the kernel's default (tcp_retries2).
	UserTimeout time.Duration
}

// Errors that say why options could not be read at all, so a caller can say so
// once instead of for every socket. Test with errors.Is.
var (
	// ErrNotPermitted: pidfd_getfd needs ptrace rights over the owner
	// (PTRACE_MODE_ATTACH_REALCREDS: CAP_SYS_PTRACE, for another user's
	// process). The error is a *PermissionError that says which right was
	// missing.
	ErrNotPermitted = errors.New("not permitted to duplicate another process's socket")
	// ErrUnsupported: pidfd_open and pidfd_getfd need Linux 5.6.
	ErrUnsupported = errors.New("kernel cannot duplicate another process's socket (pidfd_getfd needs Linux 5.6)")
	// ErrGone: the process exited or closed the descriptor since the scan, or
	// the descriptor now refers to another socket. Nothing to report.
	ErrGone = errors.New("socket gone since the process scan")
)

// OptReader reads socket options from their owners. It keeps pidfds open for
// the processes it read from last, at most maxPidfds of them, so a host with
// thousands of socket-owning processes never runs it out of descriptors; Close
// releases them. Not safe for concurrent use.
type OptReader struct {
	pidfds map[int]int   // pid -> open pidfd
	errs   map[int]error // pid -> why pidfd_open failed, so it is not retried
}

// maxPidfds bounds the open pidfds: far below the 20,000 files a process may hold
// here, and enough that sockets of one process, which the dump tends to list
// together, reuse one.
const maxPidfds = 256

// NewOptReader returns a reader with nothing open yet.
func NewOptReader() *OptReader {
	return &OptReader{pidfds: make(map[int]int), errs: make(map[int]error)}
}

// Close closes the pidfds the reader opened.
func (r *OptReader) Close() error {
	for pid, fd := range r.pidfds {
		unix.Close(fd)
		delete(r.pidfds, pid)
	}
	return nil
}

// Read reads the options of the socket with this inode, descriptor o.FD in
// process o.PID. The duplicate descriptor is closed before Read returns. The
// error wraps ErrNotPermitted, ErrUnsupported or ErrGone where one applies.
func (r *OptReader) Read(o Owner, inode uint32, opts *SockOpts) error {
	err := r.read(o, inode, opts)
	if errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE) {
		// Out of descriptors (a low limit, or the caller holds many):
		// let go of every cached pidfd and try once more.
		r.Close()
		err = r.read(o, inode, opts)
	}
	return err
}

func (r *OptReader) read(o Owner, inode uint32, opts *SockOpts) error {
	pidfd, err := r.pidfd(o.PID)
	if err != nil {
		return err
	}
	fd, err := unix.PidfdGetfd(pidfd, o.FD, 0)
	if err != nil {
		return classify(fmt.Sprintf("pidfd_getfd pid %d fd %d", o.PID, o.FD), o.PID, err)
	}
	defer unix.Close(fd)
	// The descriptor number may have been closed and reused since the scan.
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Ino != uint64(inode) {
		return ErrGone
	}
	return getOpts(fd, opts)
}

func (r *OptReader) pidfd(pid int) (int, error) {
	if fd, ok := r.pidfds[pid]; ok {
		return fd, nil
	}
	if err, ok := r.errs[pid]; ok {
		return -1, err
	}
	if len(r.pidfds) >= maxPidfds {
		for p, fd := range r.pidfds { // any one: the map's order is as good as any
			unix.Close(fd)
			delete(r.pidfds, p)
			break
		}
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		err = classify(fmt.Sprintf("pidfd_open pid %d", pid), pid, err)
		if !errors.Is(err, unix.EMFILE) && !errors.Is(err, unix.ENFILE) {
			r.errs[pid] = err
		}
		return -1, err
	}
	r.pidfds[pid] = fd
	return fd, nil
}

// classify maps the kernel's errors to the package's. A refusal becomes a
// *PermissionError that says why.
func classify(op string, pid int, err error) error {
	switch {
	case errPermission(err):
		return permissionError(op, pid, err, true)
	case errors.Is(err, unix.ENOSYS):
		return fmt.Errorf("%s: %w", op, ErrUnsupported)
	case errors.Is(err, unix.ESRCH), errors.Is(err, unix.EBADF):
		return ErrGone
	case errors.Is(err, unix.EMFILE), errors.Is(err, unix.ENFILE):
		return fmt.Errorf("%s: %w", op, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// getOpts reads the options of a socket descriptor this process holds.
func getOpts(fd int, opts *SockOpts) error {
	ka, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE)
	if err != nil {
		return fmt.Errorf("getsockopt SO_KEEPALIVE: %w", err)
	}
	idle, err := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE)
	if err != nil {
		return fmt.Errorf("getsockopt TCP_KEEPIDLE: %w", err)
	}
	intvl, err := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL)
	if err != nil {
		return fmt.Errorf("getsockopt TCP_KEEPINTVL: %w", err)
	}
	cnt, err := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPCNT)
	if err != nil {
		return fmt.Errorf("getsockopt TCP_KEEPCNT: %w", err)
	}
	uto, err := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT)
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOPROTOOPT) {
		// An MPTCP socket has no TCP_USER_TIMEOUT (6.18: getsockopt says
		// EOPNOTSUPP): its subflows keep the kernel's default, 0.
		uto, err = 0, nil
	}
	if err != nil {
		return fmt.Errorf("getsockopt TCP_USER_TIMEOUT: %w", err)
	}
	*opts = SockOpts{
		KeepaliveOn: ka != 0,
		Keepalive:   sysctl.Keepalive{Time: time.Duration(idle) * time.Second, Intvl: time.Duration(intvl) * time.Second, Probes: cnt},
		UserTimeout: time.Duration(uto) * time.Millisecond,
	}
	return nil
}

// ReadOwn reads the options of a socket this process holds, such as a
// connection it made.
func ReadOwn(c syscall.Conn) (SockOpts, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return SockOpts{}, err
	}
	var o SockOpts
	var gerr error
	if err := rc.Control(func(fd uintptr) { gerr = getOpts(int(fd), &o) }); err != nil {
		return SockOpts{}, err
	}
	return o, gerr
}
