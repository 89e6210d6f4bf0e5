package cli

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"

	"github.com/tcpkeep/tcpkeep/diag"
	"github.com/tcpkeep/tcpkeep/internal/kill"
	"github.com/tcpkeep/tcpkeep/internal/netns"
	"github.com/tcpkeep/tcpkeep/internal/proc"
	"github.com/tcpkeep/tcpkeep/internal/report"
	"github.com/tcpkeep/tcpkeep/internal/sweep"
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

// inNS says err happened in ns, unless something already said so (or it is
// the operator's or a signal's doing).
func inNS(ns netns.NS, err error) error {
	var n *nsError
	var u *usageError
	if err == nil || errors.As(err, &n) || errors.As(err, &u) || errors.Is(err, errInterrupted) {
		return err
	}
	return &nsError{ns.String(), err}
}

// explain is err with what to do about it: the one wording each failure has,
// naming what is missing, whichever command met it.
func explain(err error) string {
	if err == nil {
		return ""
	}
	msg, hint := err.Error(), hint(err)
	if hint == "" || strings.Contains(msg, hint) {
		return msg
	}
	return msg + "; " + hint
}

// hint says what to do about err, or "".
func hint(err error) (hint string) {
	perm := errors.Is(err, os.ErrPermission)
	var rb *sysctl.RollbackError
	var pe *netns.PermissionError
	var ppe *proc.PermissionError
	switch {
	case errors.As(err, &pe) && pe.Missing == "":
		hint = "refused although tcpkeep holds the capability it takes: a security module, or a process in another user namespace or not dumpable"
	case errors.Is(err, netns.ErrEnter) && perm:
		hint = "entering another network namespace needs CAP_SYS_ADMIN (run as root)"
	case errors.Is(err, netns.ErrOpen) && perm:
		hint = "another process's network namespace needs CAP_SYS_PTRACE (run as root)"
	case errors.Is(err, netns.ErrNotExist):
		hint = notExistHint(err)
	case errors.Is(err, netns.ErrNotNetNS):
		hint = "give a namespace file such as /proc/PID/ns/net or /run/netns/NAME"
	case errors.As(err, &ppe): // the error names what is missing; a security module or Yama's scope 3 no flag helps
		if ppe.Cause != proc.PermOther && ppe.YamaScope < 3 {
			hint = "run tcpkeep as root, or give it CAP_SYS_PTRACE (systemd: AmbientCapabilities=CAP_SYS_PTRACE; a container: SYS_PTRACE and the host's PID namespace)"
		}
	case errors.Is(err, proc.ErrNotPermitted):
		hint = "another process's sockets needs CAP_SYS_PTRACE (run as root)"
	case errors.Is(err, proc.ErrUnsupported):
		hint = "pidfd_getfd needs Linux 5.6"
	case errors.Is(err, proc.ErrNoProcess):
		hint = "is the process running?"
	case errors.Is(err, sysctl.ErrNoConntrack):
		hint = "give --path-idle-timeout, or --behind a device, instead of --behind conntrack"
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
	return hint
}

// partialError ends a run over every namespace in which some could not be
// read: exit 1 (audit: 3, unless something critical was found).
type partialError struct{ t *report.Total }

func (p *partialError) Error() string {
	s := fmt.Sprintf("%d of %d namespaces could not be read", p.t.Failed, p.t.Namespaces)
	if p.t.Skipped > 0 {
		s += fmt.Sprintf(", %d processes or names not looked at", p.t.Skipped)
	}
	return s + " (see above); the rest were read"
}

// tell writes a line on stderr for each namespace of an --all-netns run that
// went away or failed, one per missing capability for those refused, and
// returns what the exit code says.
func (e *env) tell(o *sweep.Outcome, t *report.Total) error {
	refused, failed := o.Refusals()
	for _, f := range o.Failures {
		switch {
		case sweep.Missing(f.Err) != "":
		case f.Gone:
			fmt.Fprintf(e.stderr, "tcpkeep: netns %s: gone since it was found; the others were read\n", f.Name)
		default:
			fmt.Fprintf(e.stderr, "tcpkeep: %s\n", oneLine(explain(&nsError{f.Name, f.Err})))
		}
	}
	for _, r := range refused {
		var names []string
		for _, f := range r.Failures[:min(3, len(r.Failures))] {
			names = append(names, f.Name)
		}
		if n := len(r.Failures); n > 3 {
			names = append(names, fmt.Sprintf("and %d more", n-3))
		}
		what := "namespaces failed"
		if r.Skip {
			what = "processes or names not looked at (a namespace only they show is missing)"
		}
		fmt.Fprintf(e.stderr, "tcpkeep: %d %s: %s: %s\n", len(r.Failures), what, strings.Join(names, ", "), hint(r.Failures[0].Err))
	}
	switch {
	case o.Interrupted:
		return errInterrupted
	case failed > 0:
		return &partialError{t}
	}
	return nil
}

func oneLine(s string) string { return strings.ReplaceAll(strings.TrimSpace(s), "\n", "; ") }

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
