package netns

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Capability names a Linux capability, as capabilities(7) spells it.
type Capability string

// The capabilities that decide what can be seen and entered.
const (
	// CapSysAdmin lets setns(2) enter another network namespace.
	CapSysAdmin Capability = "CAP_SYS_ADMIN"
	// CapSysPtrace lets a process open /proc/PID/ns/net of a process of another
	// user (ptrace_may_access with PTRACE_MODE_READ_FSCREDS).
	CapSysPtrace Capability = "CAP_SYS_PTRACE"
	// CapNetAdmin lets sock_diag destroy sockets (SOCK_DESTROY) and a process
	// write a namespace's tunables.
	CapNetAdmin Capability = "CAP_NET_ADMIN"
)

// capBits are the bit numbers capget(2) reports them at.
var capBits = map[Capability]uint{
	CapSysAdmin:  unix.CAP_SYS_ADMIN,
	CapSysPtrace: unix.CAP_SYS_PTRACE,
	CapNetAdmin:  unix.CAP_NET_ADMIN,
}

// HasCapability reports whether the calling thread has c in its effective set.
// A thread that cannot tell (capget failed) is taken not to have it.
func HasCapability(c Capability) bool {
	bit, ok := capBits[c]
	if !ok {
		return false
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false
	}
	return data[bit/32].Effective&(1<<(bit%32)) != 0
}

// PermissionError reports that the kernel refused to open or enter a namespace.
// errors.Is(err, os.ErrPermission) holds for it.
type PermissionError struct {
	// Op is what was refused: "open" (the namespace file) or "enter" (setns).
	Op string
	// NS names the namespace as records do (a name, or pid:PID).
	NS string
	// Path is the namespace file.
	Path string
	// Missing is the capability whose absence explains the refusal; empty when
	// the process has it and was refused anyway (a security module, a process in
	// another user namespace, one that is not dumpable).
	Missing Capability
	// Err is the kernel's error (EPERM, EACCES).
	Err error
}

// Error does not name the namespace: whoever reports it names it once.
func (e *PermissionError) Error() string {
	s := fmt.Sprintf("%v: %s: %v", e.sentinel(), e.Path, e.Err)
	if e.Missing != "" {
		s += " (needs " + string(e.Missing) + ")"
	}
	return s
}

// Unwrap is the kernel's error.
func (e *PermissionError) Unwrap() error { return e.Err }

// Is makes a refused open an ErrOpen and a refused setns an ErrEnter.
func (e *PermissionError) Is(target error) bool { return target == e.sentinel() }

func (e *PermissionError) sentinel() error {
	if e.Op == "enter" {
		return ErrEnter
	}
	return ErrOpen
}

// MissingCapability returns the capability whose absence err reports, if it
// reports one.
func MissingCapability(err error) (Capability, bool) {
	var pe *PermissionError
	if errors.As(err, &pe) && pe.Missing != "" {
		return pe.Missing, true
	}
	return "", false
}

// denied wraps a refusal to op the namespace file at path, naming the
// capability that would have allowed it if this process lacks it.
func denied(op, name, path string, err error, c Capability) error {
	pe := &PermissionError{Op: op, NS: name, Path: path, Err: err}
	if c != "" && !HasCapability(c) {
		pe.Missing = c
	}
	return pe
}

// isDenied tells a refusal (EPERM, EACCES) from other errors.
func isDenied(err error) bool { return errors.Is(err, os.ErrPermission) }
