package sweep

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/tcpkeep/tcpkeep/diag"
	"github.com/tcpkeep/tcpkeep/internal/audit"
	"github.com/tcpkeep/tcpkeep/internal/kernel"
	"github.com/tcpkeep/tcpkeep/internal/kill"
	"github.com/tcpkeep/tcpkeep/internal/proc"
	"github.com/tcpkeep/tcpkeep/internal/report"
	"github.com/tcpkeep/tcpkeep/sysctl"
)

// Sysctl shows a namespace's tunables: sysctl's job.
func Sysctl(f report.Format) Job {
	return func(ctx context.Context, t *Target) error {
		tun, err := t.K.Tunables()
		if err != nil {
			return err
		}
		return report.WriteSysctl(t.Out, f, t.Meta, &tun)
	}
}

// Conns lists a namespace's sockets: conns's job.
type Conns struct {
	Format report.Format
	// Filter selects the sockets, in the kernel.
	Filter *diag.Filter
	// Table chooses the table's optional columns; Processes also puts pid and
	// comm in the records.
	Table report.TableOptions
	// Owners finds sockets' processes and options; nil for neither. One index
	// serves every namespace (socket inodes are unique on the host).
	Owners *proc.Index
	// Total adds up the namespaces' listings.
	Total *report.Total
}

// Run is the Job.
func (c *Conns) Run(ctx context.Context, t *Target) error {
	start := time.Now()
	dc, err := t.K.Dial()
	if err != nil {
		return err
	}
	defer dc.Close()
	sw, err := report.NewSocketWriter(t.Out, c.Format, t.Meta, c.Table)
	if err != nil {
		return err
	}
	var (
		sum   report.ConnsSummary
		owner proc.Owner
		opts  proc.SockOpts
	)
	for s, err := range dc.Sockets(ctx, c.Filter) {
		if err != nil {
			if sum.Interrupted = ctx.Err() != nil; !sum.Interrupted {
				sw.Abort()
				return err
			}
			break
		}
		sum.Counts.Add(s)
		var po *proc.Owner
		var op *proc.SockOpts
		if o, ok := c.Owners.Owner(s.Inode); ok && c.Table.Processes {
			owner, po = o, &owner
		}
		if c.Owners.Options(s.Inode, &opts) {
			op = &opts
		}
		if err := sw.Socket(s, po, op); err != nil {
			return err
		}
	}
	sum.Duration = time.Since(start)
	if err := sw.Finish(&sum); err != nil {
		return err
	}
	c.Total.AddConns(&sum)
	if sum.Interrupted {
		return ErrInterrupted
	}
	return nil
}

// Audit audits a namespace: audit's job.
type Audit struct {
	Format report.Format
	// Config holds the rules' thresholds, the filter and the owners (one
	// shared index; see Conns).
	Config audit.Config
	// Words words the findings; Run names the namespace in them.
	Words report.Words
	// Total adds up the namespaces' audits.
	Total *report.Total
	// Prom, when set, is handed each namespace's metrics (its Index), for the
	// caller to write all of them at once; the namespace's own output then has
	// no metrics.
	Prom func(i int, p report.PromAudit)
}

// Run is the Job.
func (a *Audit) Run(ctx context.Context, t *Target) error {
	w := a.Words
	w.NetNS, w.PodUID = t.Arg, t.Meta.PodUID
	k := t.K
	if w.PodUID != "" {
		// A pod's findings about its tunables give the values for its spec:
		// read them first (the audit reads the same ones).
		if tun, err := k.Tunables(); err == nil {
			w.Recommended, k = Recommended(tun), known{k, tun}
		}
	}
	out := t.Out
	if a.Format == report.Prom && a.Prom != nil {
		out = io.Discard
	}
	aw := report.NewAuditWriter(out, a.Format, t.Meta, w)
	var werr error
	sum, err := audit.Run(ctx, k, a.Config, func(f *audit.Finding) {
		if werr == nil {
			werr = aw.Finding(f)
		}
	})
	p := report.PromAudit{NetNS: t.Meta.NetNS, Start: t.Meta.TS}
	if sum.HaveTunables {
		p.Tunables = &sum.Tunables
	}
	if err != nil && !sum.Interrupted {
		if a.Prom != nil {
			a.Prom(t.Index, p)
		}
		aw.Abort()
		return err
	}
	if err := aw.Finish(&sum, t.Meta.NetNS); werr == nil {
		werr = err
	}
	if a.Prom != nil {
		if !sum.Interrupted {
			p.Summary = &sum
		}
		a.Prom(t.Index, p)
	}
	a.Total.AddAudit(&sum)
	if werr == nil && sum.Interrupted {
		werr = ErrInterrupted
	}
	return werr
}

// known is a namespace whose tunables were read already.
type known struct {
	kernel.NS
	t sysctl.Tunables
}

func (k known) Tunables() (sysctl.Tunables, error) { return k.t, nil }

// Recommended are the values sysctl recommend gives a namespace with these
// tunables when nothing is said about the path (sysctl.ChoosePath: the local
// conntrack timeout where it is shorter than the assumed path, else the
// assumed path). Zero when there are none.
func Recommended(t sysctl.Tunables) sysctl.Keepalive {
	p, err := sysctl.ChoosePath(sysctl.PathChoice{Conntrack: t.ConntrackEstablished})
	if err != nil {
		return sysctl.Keepalive{}
	}
	r, err := sysctl.Recommend(sysctl.Request{Path: p})
	if err != nil {
		return sysctl.Keepalive{}
	}
	return r.Keepalive
}

// Kill closes a namespace's selected sockets: kill's job.
type Kill struct {
	Format report.Format
	// Config says what is selected; its Owners (with Procs) is one shared
	// index (see Conns).
	Config kill.Config
	// Procs puts a PROCESS column in the table.
	Procs bool
	// ViaOwner closes every socket through its owner (kill.OwnerCloser,
	// forced), with a closer of its own in each namespace.
	ViaOwner bool
	// Total adds up the namespaces' runs.
	Total *report.Total
}

// Run is the Job. A namespace where some sockets could not be closed is not a
// failure of the job: its records say so, and the total counts them.
func (x *Kill) Run(ctx context.Context, t *Target) error {
	w := report.NewKillWriter(t.Out, x.Format, t.Meta, report.Words{NetNS: t.Arg}, x.Config.DryRun, x.Procs)
	cfg := x.Config
	if x.ViaOwner {
		cfg.ViaOwner = &kill.OwnerCloser{Force: true}
		defer cfg.ViaOwner.Close()
	}
	var werr error
	sum, runErr := kill.Run(ctx, t.K, cfg, func(a *kill.Action) {
		if werr == nil {
			werr = w.Action(a)
		}
	})
	if err := w.Finish(&sum); werr == nil {
		werr = err
	}
	x.Total.AddKill(&sum)
	switch {
	case sum.Interrupted:
		return ErrInterrupted
	case sum.Stopped:
		return fmt.Errorf("kill: %w; nothing else was tried", runErr)
	case runErr != nil:
		return runErr
	}
	return werr
}

// Arm arms a namespace's sockets through their owners: arm's job.
type Arm struct {
	Format report.Format
	// Config says what is selected and set. Its Owners must be nil: each
	// namespace's run scans /proc with a Finder of its own, since runs in
	// several namespaces go at once and a Finder is for one at a time.
	Config kill.ArmConfig
	// Procs puts a PROCESS column in the table.
	Procs bool
	// Total adds up the namespaces' runs.
	Total *report.Total
}

// Run is the Job. A namespace where some sockets could not be armed is not a
// failure of the job: its records say so, and the total counts them. When
// the model cannot choose values there (kill.ErrValues), nothing is written.
func (x *Arm) Run(ctx context.Context, t *Target) error {
	w := report.NewArmWriter(t.Out, x.Format, t.Meta, report.Words{NetNS: t.Arg}, x.Config.DryRun, x.Procs)
	var werr error
	sum, runErr := kill.Arm(ctx, t.K, x.Config, func(a *kill.ArmAction) {
		if werr == nil {
			werr = w.Action(a)
		}
	})
	if errors.Is(runErr, kill.ErrValues) {
		return runErr
	}
	if err := w.Finish(&sum); werr == nil {
		werr = err
	}
	x.Total.AddArm(&sum)
	switch {
	case sum.Interrupted:
		return ErrInterrupted
	case sum.Stopped:
		return fmt.Errorf("arm: %w; nothing else was tried", runErr)
	case runErr != nil:
		return runErr
	}
	return werr
}

// Proms gathers the metrics of many namespaces' audits (Audit.Prom), to be
// written together (report.Metrics). It is safe for concurrent use.
type Proms struct {
	// Build is which tcpkeep writes them (tcpkeep_build_info).
	Build report.BuildInfo
	// Failed is what is written when no audit was added: one that failed
	// before it started.
	Failed report.PromAudit

	mu sync.Mutex
	ps map[int]report.PromAudit
}

// Write writes the metrics to w (if toW) and, atomically, to the file at path
// ("" for none; report.Metrics.WriteFile).
func (p *Proms) Write(w io.Writer, toW bool, path string) error {
	ps := p.List()
	if len(ps) == 0 {
		ps = []report.PromAudit{p.Failed}
	}
	m := report.NewMetrics(p.Build)
	for _, a := range ps {
		m.SetAudit(a)
	}
	var err error
	if toW {
		if werr := m.Write(w); werr != nil {
			err = fmt.Errorf("write output: %w", werr)
		}
	}
	if path != "" {
		if perr := m.WriteFile(path); perr != nil {
			err = errors.Join(err, fmt.Errorf("--prom-file %s: %w", path, perr))
		}
	}
	return err
}

// Add is an Audit.Prom.
func (p *Proms) Add(i int, a report.PromAudit) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ps == nil {
		p.ps = map[int]report.PromAudit{}
	}
	p.ps[i] = a
}

// List is what was added, in the order of the namespaces.
func (p *Proms) List() []report.PromAudit {
	p.mu.Lock()
	defer p.mu.Unlock()
	var l []report.PromAudit
	for _, i := range slices.Sorted(maps.Keys(p.ps)) {
		l = append(l, p.ps[i])
	}
	return l
}
