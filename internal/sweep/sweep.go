// Package sweep runs a command's work in one network namespace or in every
// one on the host (--all-netns). Over many, it walks them a few at a time on
// threads inside each (netns.Walker), hands each to the command's Job with the
// header its records carry, and puts the output together in the order of the
// namespaces, never two interleaved (report.Frame), with a netns_error record
// for each namespace that could not be visited and a netns_total at the end.
// The jobs of conns, audit, kill and sysctl are here, so that the command line
// and an agent run the same thing.
//
// It parses no flags and writes nothing but records: what failed where comes
// back in an Outcome, for the caller to put in words.
package sweep

import (
	"context"
	"errors"
	"io"
	"os"
	"strconv"

	"github.com/tcpkeep/tcpkeep/internal/kernel"
	"github.com/tcpkeep/tcpkeep/internal/kill"
	"github.com/tcpkeep/tcpkeep/internal/netns"
	"github.com/tcpkeep/tcpkeep/internal/proc"
	"github.com/tcpkeep/tcpkeep/internal/report"
)

// Target is one namespace a job works in.
type Target struct {
	// K is the namespace as the engines take it.
	K kernel.NS
	// NS is the namespace as it was found: name, inode, owner, host or not.
	NS netns.Namespace
	// Meta is the header of its records.
	Meta report.Meta
	// Out is where its records go.
	Out io.Writer
	// Arg names it on the command lines its records suggest: "" for the
	// namespace tcpkeep runs in.
	Arg string
	// Index is its place in the list of the run.
	Index int
}

// Job is a command's work in one namespace. It writes whole records to Out.
// When it fails midway it leaves Out with the whole records it wrote (a json
// document closed) and returns why; when ctx ended first, it writes what its
// command writes for an interrupted run and returns ErrInterrupted.
type Job func(ctx context.Context, t *Target) error

// ErrInterrupted ends a job that a signal stopped, once it has written what it
// had.
var ErrInterrupted = errors.New("interrupted: the output ends with what was done before the signal")

// errNotStarted is the result of a namespace the walk reached after the
// signal: it was not visited.
var errNotStarted = errors.New("not visited: the run was interrupted")

// MetaOf is the header of the records about namespace n: base's time and
// host, n's name, inode and owner.
func MetaOf(base report.Meta, n netns.Namespace) report.Meta {
	base.NetNS, base.NetNSInode = n.Name, n.Ino
	base.ContainerID, base.PodUID, base.NetNSComm = n.ContainerID, n.PodUID, n.Comm
	return base
}

// Config is how All runs.
type Config struct {
	// Format is the output's; Meta the run's time and host.
	Format report.Format
	Meta   report.Meta
	// Parallel is how many namespaces are visited at once (0: the Walker's
	// default).
	Parallel int
	// Explain words an error for the netns_error record.
	Explain func(error) string
	// Total is the run's total: the jobs add their summaries to it, All counts
	// the namespaces in it and writes it at the end. Its Command names the
	// command.
	Total *report.Total
	// Kernel makes the kernel.NS of a visit; nil: kernel.Visited.
	Kernel func(*netns.Visit) kernel.NS
	// Visited, when set, is called after each namespace's output and records
	// are written, in order.
	Visited func(netns.Result)
}

// Failure is a namespace that could not be visited (or whose job failed), or
// what enumeration could not look at.
type Failure struct {
	// Name is the namespace's name; for a Skip, pid:PID or the name's path.
	Name string
	// Err is why.
	Err error
	// Gone says the namespace went away before it could be visited.
	Gone bool
	// Skip says enumeration could not look at it: the namespace behind it was
	// not found.
	Skip bool
}

// Outcome is how a run over many namespaces went, besides its records.
type Outcome struct {
	// Failures are the namespaces that were not read, in list order, then
	// what enumeration could not look at.
	Failures []Failure
	// Interrupted says the context ended before every namespace was visited.
	Interrupted bool
}

// Refusal is the failures that one missing capability explains.
type Refusal struct {
	// Missing is the capability.
	Missing netns.Capability
	// Skip says these are what enumeration could not look at; else namespaces
	// that were found.
	Skip bool
	// Failures are the namespaces or what was skipped, in order.
	Failures []Failure
}

// Refusals groups the failures a missing capability explains, in the order
// they came; failed is how many failures there were that are not a namespace
// going away.
func (o *Outcome) Refusals() (r []Refusal, failed int) {
	type key struct {
		c    netns.Capability
		skip bool
	}
	at := map[key]int{}
	for _, f := range o.Failures {
		if !f.Gone {
			failed++
		}
		k := key{Missing(f.Err), f.Skip}
		if k.c == "" {
			continue
		}
		i, ok := at[k]
		if !ok {
			i, at[k] = len(r), len(r)
			r = append(r, Refusal{Missing: k.c, Skip: k.skip})
		}
		r[i].Failures = append(r[i].Failures, f)
	}
	return r, failed
}

// One runs job in one namespace, ns as k reaches it, writing to out: what a
// command does without --all-netns. base is the run's time and host; arg names
// the namespace on the command lines records suggest.
func One(ctx context.Context, ns netns.NS, k kernel.NS, base report.Meta, out io.Writer, arg string, job Job) error {
	n, err := netns.Describe(ns)
	if err != nil {
		n = netns.Namespace{NS: ns, Name: ns.String()}
	}
	return job(ctx, &Target{K: k, NS: n, Meta: MetaOf(base, n), Out: out, Arg: arg})
}

// All runs job in each namespace found, at most cfg.Parallel at once, each on
// a locked thread inside its namespace, and writes what the jobs write to out
// in the order of found.Namespaces, framed (report.Frame): a netns_error
// record for each namespace that went away, could not be opened or entered,
// or whose job failed, and for each of found.Skipped; then the total. A
// failure in one namespace is a record, and the run goes on with the rest.
//
// When ctx ends, the jobs under way write their interrupted output, no other
// job starts, and the total says so. The error is only a failure to write.
func All(ctx context.Context, out io.Writer, cfg *Config, found *netns.Found, job Job) (*Outcome, error) {
	fr := report.NewFrame(out, cfg.Format, cfg.Meta, cfg.Total.Command)
	tot, o := cfg.Total, &Outcome{}
	tot.Namespaces = len(found.Namespaces)
	kern := cfg.Kernel
	if kern == nil {
		kern = kernel.Visited
	}
	fail := func(name string, m report.Meta, err error, headed bool) {
		f := Failure{Name: name, Err: err, Gone: errors.Is(err, netns.ErrGone)}
		reason := "error"
		switch {
		case f.Gone:
			reason = "gone"
		case errors.Is(err, os.ErrPermission):
			reason = "denied"
		}
		fr.Error(&report.NetNSError{Meta: m, Reason: reason, Err: cfg.Explain(err), Missing: string(Missing(err)), Headed: headed})
		o.Failures = append(o.Failures, f)
	}
	w := &netns.Walker{Parallel: cfg.Parallel, Enter: true, Done: func(r netns.Result) {
		fr.Next()
		switch {
		case errors.Is(r.Err, errNotStarted):
			o.Interrupted = true
		case r.Err == nil, errors.Is(r.Err, ErrInterrupted):
			o.Interrupted = o.Interrupted || r.Err != nil
			tot.Visited++
		case errors.Is(r.Err, netns.ErrGone):
			tot.Gone++
			fail(r.Namespace.Name, MetaOf(cfg.Meta, r.Namespace), r.Err, r.Wrote > 0)
		default:
			tot.Failed++
			fail(r.Namespace.Name, MetaOf(cfg.Meta, r.Namespace), r.Err, r.Wrote > 0)
		}
		if cfg.Visited != nil {
			cfg.Visited(r)
		}
	}}
	// The walk is never cancelled: a cancelled walk fails the writes of the
	// visits under way, which would cut their records short. Visits that
	// start after the signal return at once instead.
	_, err := w.Walk(context.WithoutCancel(ctx), found.Namespaces, fr, func(_ context.Context, v *netns.Visit) error {
		if ctx.Err() != nil {
			return errNotStarted
		}
		t := &Target{K: kern(v), NS: v.Namespace, Meta: MetaOf(cfg.Meta, v.Namespace), Out: v.Out, Index: v.Index}
		if !v.Self {
			t.Arg = v.Name
		}
		if err := fr.Heading(v.Out, t.Meta); err != nil {
			return err
		}
		return job(ctx, t)
	})
	if err != nil {
		return o, err
	}
	for _, s := range found.Skipped {
		tot.Skipped++
		m := cfg.Meta
		m.NetNS = skipName(s)
		fail(m.NetNS, m, s.Err, false)
		o.Failures[len(o.Failures)-1].Skip = true
	}
	tot.Interrupted = o.Interrupted
	return o, fr.Close(tot)
}

// skipName names what enumeration skipped as --netns would: pid:PID, a name
// under /run/netns, or the path.
func skipName(s netns.Skip) string {
	switch {
	case s.PID > 0:
		return "pid:" + strconv.Itoa(s.PID)
	case len(s.Path) > len(netns.RunDir)+1 && s.Path[:len(netns.RunDir)+1] == netns.RunDir+"/":
		return s.Path[len(netns.RunDir)+1:]
	}
	return s.Path
}

// Missing is the capability whose absence err reports: CAP_SYS_ADMIN to enter
// a namespace, CAP_SYS_PTRACE to open another user's process's or to take its
// sockets (arm, kill --via-owner), CAP_NET_ADMIN to destroy sockets; "" when
// none explains it.
func Missing(err error) netns.Capability {
	if c, ok := netns.MissingCapability(err); ok {
		return c
	}
	// Taking owners' descriptors (arm, kill --via-owner): the refusal says
	// what was missing.
	if pe := (*proc.PermissionError)(nil); errors.As(err, &pe) {
		if pe.Cause == proc.PermNoCapSysPtrace {
			return netns.CapSysPtrace
		}
		return ""
	}
	if errors.Is(err, kill.ErrStopped) && errors.Is(err, os.ErrPermission) && !netns.HasCapability(netns.CapNetAdmin) {
		return netns.CapNetAdmin
	}
	return ""
}
