package sysctl

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Namespace is a network namespace to work in: Do runs fn on an OS thread that has
// entered it (internal/netns.NS is one).
type Namespace interface {
	Do(fn func() error) error
}

// Names of the files under /proc/sys, as sysctl(8) names them with slashes.
const (
	FileTime        = "net/ipv4/tcp_keepalive_time"
	FileIntvl       = "net/ipv4/tcp_keepalive_intvl"
	FileProbes      = "net/ipv4/tcp_keepalive_probes"
	FileRetries2    = "net/ipv4/tcp_retries2"
	FileFinTimeout  = "net/ipv4/tcp_fin_timeout"
	FileOrphanRetr  = "net/ipv4/tcp_orphan_retries"
	FileConntrackEs = "net/netfilter/nf_conntrack_tcp_timeout_established"
)

// Tunables is what Read finds in one namespace. The related tunables are absent
// (nil) where the kernel has no such file, as nf_conntrack's before the module loads.
type Tunables struct {
	Keepalive
	// Retries2 is tcp_retries2: how many retransmission backoffs before the kernel
	// drops a connection whose peer acknowledges nothing.
	Retries2 *int
	// FinTimeout is tcp_fin_timeout: how long an orphaned FIN_WAIT2 socket lives.
	FinTimeout *time.Duration
	// OrphanRetries is tcp_orphan_retries: the retransmission limit of a socket
	// the application has closed (see OrphanRetries).
	OrphanRetries *int
	// ConntrackEstablished is nf_conntrack_tcp_timeout_established: how long local
	// connection tracking keeps an idle established flow.
	ConntrackEstablished *time.Duration
}

// ProcSys is the root of a sysctl tree: "/proc/sys" on a live system (Live), where
// it resolves against the calling thread's network namespace. Another root, a copy
// of the tree, lets tests and tools work on files.
type ProcSys string

// Live is the kernel's sysctl tree.
const Live ProcSys = "/proc/sys"

// Read reads the tunables of ns.
func Read(ns Namespace) (Tunables, error) {
	var t Tunables
	err := ns.Do(func() (err error) {
		t, err = Live.Read()
		return err
	})
	return t, err
}

// Write sets the three keepalive tunables of ns, all or none, and returns the values
// it replaced. See ProcSys.Write.
func Write(ns Namespace, k Keepalive) (old Keepalive, err error) {
	err = ns.Do(func() (err error) {
		old, err = Live.Write(k)
		return err
	})
	return old, err
}

// Restore puts back the keepalive tunables of ns that Write replaced. See
// ProcSys.Restore.
func Restore(ns Namespace, k Keepalive) error {
	return ns.Do(func() error { return Live.Restore(k) })
}

// Read reads the tunables under p, on the calling thread.
func (p ProcSys) Read() (Tunables, error) {
	var t Tunables
	k, err := p.readKeepalive()
	if err != nil {
		return t, err
	}
	t.Keepalive = k
	if n, ok, err := p.readOptional(FileRetries2); err != nil {
		return t, err
	} else if ok {
		t.Retries2 = &n
	}
	if n, ok, err := p.readOptional(FileOrphanRetr); err != nil {
		return t, err
	} else if ok {
		t.OrphanRetries = &n
	}
	if n, ok, err := p.readOptional(FileFinTimeout); err != nil {
		return t, err
	} else if ok {
		d := time.Duration(n) * time.Second
		t.FinTimeout = &d
	}
	if n, ok, err := p.readOptional(FileConntrackEs); err != nil {
		return t, err
	} else if ok {
		d := time.Duration(n) * time.Second
		t.ConntrackEstablished = &d
	}
	return t, nil
}

func (p ProcSys) readKeepalive() (Keepalive, error) {
	var v [3]int
	for i, f := range [3]string{FileTime, FileIntvl, FileProbes} {
		n, err := p.readInt(f)
		if err != nil {
			return Keepalive{}, err
		}
		v[i] = n
	}
	return Keepalive{Time: time.Duration(v[0]) * time.Second, Intvl: time.Duration(v[1]) * time.Second, Probes: v[2]}, nil
}

func (p ProcSys) path(file string) string { return filepath.Join(string(p), file) }

// sysctlName turns a file name into sysctl(8)'s dotted name, for messages.
func sysctlName(file string) string { return strings.ReplaceAll(file, "/", ".") }

func (p ProcSys) readInt(file string) (int, error) {
	b, err := os.ReadFile(p.path(file))
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", sysctlName(file), err)
	}
	n, err := parseValue(b)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", sysctlName(file), err)
	}
	return n, nil
}

// parseValue reads what the kernel writes for an integer sysctl: decimal digits,
// perhaps signed, and a newline.
func parseValue(b []byte) (int, error) {
	n, err := strconv.Atoi(strings.TrimSuffix(string(b), "\n"))
	if err != nil {
		return 0, fmt.Errorf("not an integer: %q", b)
	}
	return n, nil
}

func (p ProcSys) readOptional(file string) (int, bool, error) {
	n, err := p.readInt(file)
	if errors.Is(err, os.ErrNotExist) {
		return 0, false, nil
	}
	return n, err == nil, err
}

func (p ProcSys) writeInt(file string, n int) error {
	// Without O_CREATE: a missing sysctl is an error, not a new file. O_TRUNC is
	// what a shell's redirection does; procfs ignores it, a copy of the tree needs it.
	f, err := os.OpenFile(p.path(file), os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return fmt.Errorf("write %s: %w", sysctlName(file), err)
	}
	_, werr := f.WriteString(strconv.Itoa(n) + "\n")
	cerr := f.Close()
	if werr == nil {
		werr = cerr
	}
	if werr != nil {
		return fmt.Errorf("write %s = %d: %w", sysctlName(file), n, werr)
	}
	return nil
}

// RollbackError reports a Write that failed part way and what became of the values
// already written.
type RollbackError struct {
	// Err is the failure that stopped the write.
	Err error
	// Restored lists the tunables set back to their old values.
	Restored []string
	// RestoreErr is why restoring failed, if it did: the tunables are then mixed.
	RestoreErr error
}

func (e *RollbackError) Error() string {
	switch {
	case e.RestoreErr != nil:
		return fmt.Sprintf("%v; restoring the old values failed too, the tunables are now mixed: %v", e.Err, e.RestoreErr)
	case len(e.Restored) > 0:
		return fmt.Sprintf("%v; restored the old value of %s, nothing changed", e.Err, strings.Join(e.Restored, ", "))
	default:
		return fmt.Sprintf("%v; nothing changed", e.Err)
	}
}

func (e *RollbackError) Unwrap() error { return e.Err }

// Write sets the three keepalive tunables under p, on the calling thread, all or
// none: it validates k first, writes only what differs, and if a write fails it
// restores the ones already written (a *RollbackError says what happened). It then
// reads the values back and fails if they are not what it wrote.
func (p ProcSys) Write(k Keepalive) (old Keepalive, err error) {
	if err := k.Validate(); err != nil {
		return Keepalive{}, err
	}
	return p.write(k)
}

// Restore writes back values Write (or Read) returned, as Write does but without
// checking them against tcpkeep's ranges: the kernel accepts more (a
// tcp_keepalive_time above 32767 set by someone else), and undoing a change must
// put back exactly what was there.
func (p ProcSys) Restore(k Keepalive) error {
	_, err := p.write(k)
	return err
}

func (p ProcSys) write(k Keepalive) (old Keepalive, err error) {
	old, err = p.readKeepalive()
	if err != nil {
		return Keepalive{}, err
	}
	type item struct {
		file     string
		old, new int
	}
	items := []item{
		{FileTime, int(old.Time / time.Second), int(k.Time / time.Second)},
		{FileIntvl, int(old.Intvl / time.Second), int(k.Intvl / time.Second)},
		{FileProbes, old.Probes, k.Probes},
	}
	var done []item
	for _, it := range items {
		if it.old == it.new {
			continue
		}
		if err := p.writeInt(it.file, it.new); err != nil {
			rb := &RollbackError{Err: err}
			for i := len(done) - 1; i >= 0; i-- {
				if rerr := p.writeInt(done[i].file, done[i].old); rerr != nil {
					rb.RestoreErr = errors.Join(rb.RestoreErr, rerr)
					continue
				}
				rb.Restored = append(rb.Restored, sysctlName(done[i].file))
			}
			return old, rb
		}
		done = append(done, it)
	}
	got, err := p.readKeepalive()
	if err != nil {
		return old, fmt.Errorf("read back: %w", err)
	}
	if got != k {
		return old, fmt.Errorf("read back %d/%d/%d after writing %d/%d/%d: something else changed them",
			got.Time/time.Second, got.Intvl/time.Second, got.Probes, k.Time/time.Second, k.Intvl/time.Second, k.Probes)
	}
	return old, nil
}
