package proc

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// PermCause says why the kernel refused to duplicate another process's
// descriptor. pidfd_getfd checks ptrace_may_access(PTRACE_MODE_ATTACH_REALCREDS)
// (kernel/pid.c): the same user and no capability the caller lacks, or
// CAP_SYS_PTRACE; then the security modules, Yama among them.
type PermCause uint8

// Causes of a refusal.
const (
	// PermNoCapSysPtrace: this process lacks CAP_SYS_PTRACE, and the owner
	// belongs to another user or holds capabilities this process has not.
	PermNoCapSysPtrace PermCause = iota + 1
	// PermYama: Yama's ptrace_scope forbids it: 3 forbids every process, 2
	// every process without CAP_SYS_PTRACE.
	PermYama
	// PermOther: this process has CAP_SYS_PTRACE and Yama does not forbid it:
	// another security module (SELinux, AppArmor) refused, or the owner lives
	// in a user namespace the capability does not reach.
	PermOther
)

// String names the cause: no_cap_sys_ptrace, yama or other.
func (c PermCause) String() string {
	switch c {
	case PermNoCapSysPtrace:
		return "no_cap_sys_ptrace"
	case PermYama:
		return "yama"
	}
	return "other"
}

// PermissionError is a refusal to duplicate a descriptor, with what this
// process had when it happened. errors.Is(err, ErrNotPermitted) holds.
type PermissionError struct {
	// Op is the system call and its arguments, as "pidfd_getfd pid 42 fd 7".
	Op  string
	PID int
	// CapSysPtrace says whether this process had CAP_SYS_PTRACE in its
	// effective set.
	CapSysPtrace bool
	// YamaScope is kernel.yama.ptrace_scope (0 to 3), or -1 without Yama or
	// where Yama does not apply (reading another process's descriptors under
	// /proc is PTRACE_MODE_READ, which Yama leaves alone).
	YamaScope int
	Cause     PermCause
	// Err is what the kernel returned (EPERM).
	Err error
}

func (e *PermissionError) Error() string {
	var why string
	switch {
	case e.Cause == PermYama && e.YamaScope >= 3:
		why = "Yama's kernel.yama.ptrace_scope is 3: no process may take another's descriptors (it can only be lowered by a reboot)"
	case e.Cause == PermYama:
		why = fmt.Sprintf("Yama's kernel.yama.ptrace_scope is %d and this process lacks CAP_SYS_PTRACE", e.YamaScope)
	case e.Cause == PermNoCapSysPtrace && e.YamaScope >= 1:
		why = fmt.Sprintf("this process lacks CAP_SYS_PTRACE (which Yama's kernel.yama.ptrace_scope %d also requires for processes that are not its descendants)", e.YamaScope)
	case e.Cause == PermNoCapSysPtrace:
		why = "this process lacks CAP_SYS_PTRACE, needed for another user's process or one with capabilities this process has not"
	default:
		why = "refused although this process has CAP_SYS_PTRACE and Yama allows it (a security module such as SELinux or AppArmor, or a user namespace the capability does not reach)"
	}
	return fmt.Sprintf("%s: %v: %s", e.Op, e.Err, why)
}

// Is makes errors.Is(err, ErrNotPermitted) hold.
func (e *PermissionError) Is(target error) bool { return target == ErrNotPermitted }

// Unwrap returns the kernel's error.
func (e *PermissionError) Unwrap() error { return e.Err }

// yamaScopePath is Yama's switch; absent when Yama is not in the kernel.
const yamaScopePath = "/proc/sys/kernel/yama/ptrace_scope"

// permissionError describes a refusal of op on pid with what this process has
// now. attach: the check was PTRACE_MODE_ATTACH (pidfd_getfd), which Yama
// restricts; otherwise PTRACE_MODE_READ (the links under /proc/PID/fd).
func permissionError(op string, pid int, err error, attach bool) *PermissionError {
	e := &PermissionError{Op: op, PID: pid, Err: err, CapSysPtrace: hasCapSysPtrace(), YamaScope: -1}
	if attach {
		e.YamaScope = yamaScope(yamaScopePath)
	}
	e.Cause = permCause(e.CapSysPtrace, e.YamaScope)
	return e
}

// permCause judges a refusal from what the caller had. Without the
// capability, the capability is named first: it is what lets root through
// every Yama scope but 3.
func permCause(capSysPtrace bool, yama int) PermCause {
	switch {
	case yama >= 3:
		return PermYama
	case !capSysPtrace && yama == 2:
		return PermYama
	case !capSysPtrace:
		return PermNoCapSysPtrace
	}
	return PermOther
}

// yamaScope reads Yama's ptrace_scope from path: -1 when it is absent (no Yama)
// or unreadable.
func yamaScope(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return -1
	}
	return parseYamaScope(b)
}

// parseYamaScope parses the file's content, a number and a newline: -1 for
// anything else.
func parseYamaScope(b []byte) int {
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n < 0 {
		return -1
	}
	return n
}

// hasCapSysPtrace says whether the calling thread has CAP_SYS_PTRACE in its
// effective set, which is what ptrace_may_access checks.
func hasCapSysPtrace() bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData // version 3: two 32-bit halves
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false
	}
	const c = unix.CAP_SYS_PTRACE
	return data[c/32].Effective&(1<<(c%32)) != 0
}

// errPermission is true for the errors a permission check returns.
func errPermission(err error) bool {
	return errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES)
}
