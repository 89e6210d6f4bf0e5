package cli

import (
	"errors"
	"os"
	"strings"
	"syscall"

	"github.com/tcpkeep/tcpkeep/diag"
	"github.com/tcpkeep/tcpkeep/internal/kill"
	"github.com/tcpkeep/tcpkeep/internal/netns"
	"github.com/tcpkeep/tcpkeep/internal/proc"
	"github.com/tcpkeep/tcpkeep/sysctl"
)

// nsError is an error inside one namespace: it names the namespace once, what
// ever below it says.
type nsError struct {
	ns  string
	err error
}

func (n *nsError) Error() string { return "netns " + n.ns + ": " + n.err.Error() }
func (n *nsError) Unwrap() error { return n.err }

// inNS says err happened in ns, unless something already said so.
func inNS(ns netns.NS, err error) error {
	var n *nsError
	if err == nil || errors.As(err, &n) {
		return err
	}
	return &nsError{ns.String(), err}
}

// explain is err with what to do about it: the one wording each failure has,
// naming what is missing, whichever command met it.
func explain(err error) string {
	msg := err.Error()
	perm := errors.Is(err, os.ErrPermission)
	var rb *sysctl.RollbackError
	var pe *proc.PermissionError
	hint := ""
	switch {
	case errors.Is(err, netns.ErrEnter) && perm:
		hint = "entering another network namespace needs CAP_SYS_ADMIN (run as root)"
	case errors.Is(err, netns.ErrOpen) && perm:
		hint = "another process's network namespace needs CAP_SYS_PTRACE (run as root)"
	case errors.Is(err, netns.ErrNotExist):
		hint = notExistHint(err)
	case errors.Is(err, netns.ErrNotNetNS):
		hint = "give a namespace file such as /proc/PID/ns/net or /run/netns/NAME"
	case errors.As(err, &pe) && pe.Cause == proc.PermYama && pe.YamaScope >= 3:
		hint = "nothing but a reboot lowers it"
	case errors.As(err, &pe) && pe.Cause == proc.PermYama:
		hint = "run tcpkeep as root (with CAP_SYS_PTRACE), or lower kernel.yama.ptrace_scope to 1"
	case errors.As(err, &pe) && pe.Cause == proc.PermOther:
		hint = "look for the security module's denial in the kernel log (SELinux: ausearch -m avc; AppArmor: dmesg)"
	case errors.As(err, &pe):
		hint = "run tcpkeep as root, or give it the capability (systemd: AmbientCapabilities=CAP_SYS_PTRACE; a container: SYS_PTRACE and the host's PID namespace)"
	case errors.Is(err, proc.ErrNotPermitted):
		hint = "another process's sockets needs CAP_SYS_PTRACE (run as root)"
	case errors.Is(err, proc.ErrUnsupported):
		hint = "pidfd_getfd needs Linux 5.6"
	case errors.Is(err, proc.ErrNoProcess):
		hint = "is the process running?"
	case errors.Is(err, diag.ErrDestroyUnsupported):
		hint = "this kernel cannot close sockets from outside (it needs CONFIG_INET_DIAG_DESTROY=y): close them through their owners with kill --via-owner"
	case errors.Is(err, diag.ErrUnsupported):
		hint = "load the modules: modprobe inet_diag tcp_diag"
	case errors.As(err, &rb) && perm:
		hint = "changing the tunables needs CAP_NET_ADMIN over the namespace (run as root)"
	case errors.Is(err, kill.ErrStopped) && perm:
		hint = "closing sockets needs CAP_NET_ADMIN (run as root)"
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		hint = "raise the open files limit (ulimit -n)"
	case errors.Is(err, syscall.ECONNREFUSED):
		hint = "is 'tcpkeep probe serve' running there?"
	}
	if hint == "" || strings.Contains(msg, hint) {
		return msg
	}
	return msg + "; " + hint
}

// notExistHint says how to find the namespaces there are.
func notExistHint(err error) string {
	var n *nsError
	spec := ""
	if errors.As(err, &n) {
		spec = n.ns
	}
	switch {
	case strings.HasPrefix(spec, "pid:"):
		return "is the process running?"
	case strings.ContainsRune(spec, '/'):
		return "give a namespace file such as /proc/PID/ns/net or /run/netns/NAME"
	}
	return "list them with: ip netns list"
}
