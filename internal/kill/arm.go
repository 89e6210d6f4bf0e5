package kill

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tcpkeep/tcpkeep/diag"
	"github.com/tcpkeep/tcpkeep/internal/audit"
	"github.com/tcpkeep/tcpkeep/internal/kernel"
	"github.com/tcpkeep/tcpkeep/internal/proc"
	"github.com/tcpkeep/tcpkeep/sysctl"
)

// Results of arming, beside Gone, Denied, Unsupported and Error, which mean
// for arming what they mean for closing (see ArmResult).
const (
	// Armed: keepalive is on with the values asked for, read back from the
	// socket.
	Armed Result = 16 + iota
	// Unchanged: the socket already had keepalive on with exactly those values;
	// nothing was set.
	Unchanged
	// WouldArm: a dry run read the socket's options and would set them.
	WouldArm
)

// ArmConfig says what an arm run selects and what it sets. The selection
// works as Config's for kill: the same filter, findings and listener rule.
type ArmConfig struct {
	// Filter is applied by the kernel to the dump; nil: every socket.
	Filter *diag.Filter
	// All selects every socket the filter matches (reason "filter").
	All bool
	// Findings selects sockets that audit rules with these codes flag (tunable
	// codes and peer_limit_exceeded select nothing).
	Findings []audit.Code
	// Audit holds the rules' thresholds; Arm reads the namespace's tunables
	// into it when Findings is not empty.
	Audit audit.Config
	// Listeners lets LISTEN sockets be selected: the connections they accept
	// afterwards inherit the values. Without it they never are.
	Listeners bool
	// Keepalive is what to set; with Model, its three values are chosen in
	// the namespace and only its user timeout is taken from here.
	Keepalive proc.Keepalive
	// Model, when not nil, has Arm choose the three values for the
	// namespace as sysctl recommend does, before the dump: what
	// sysctl.Recommend gives for the path sysctl.ChoosePath picks, with the
	// namespace's own nf_conntrack timeout (so that "conntrack" means each
	// namespace's own). ArmSummary.Values says what they were.
	Model *ArmModel
	// DryRun takes each selected socket from its owner and reads its options,
	// and sets nothing.
	DryRun bool
	// Owners finds owners and takes their descriptors. nil: a Finder over
	// /proc for this run (restricted to PID when set). One Finder may serve
	// the runs of several namespaces; the caller closes it.
	Owners *proc.Finder
	// PID, when not 0, selects only sockets this process holds. With Owners
	// set, Owners must be restricted to the same process.
	PID int
}

// Armable are the states of the connections Arm acts on: those a program
// holds and tcp_keepalive_timer probes. Sockets closing are mostly orphans,
// and TIME_WAIT and request sockets are no one's: there is no descriptor to
// go through, and Arm leaves them out whatever the filter says. LISTEN comes
// with ArmConfig.Listeners.
const Armable = diag.StateSet(1<<diag.StateEstablished | 1<<diag.StateCloseWait)

// ErrValues marks the error Arm returns, before the dump, when the model
// cannot choose values in the namespace; the sysctl error it wraps says why
// (sysctl.ErrImpossible, sysctl.ErrNoConntrack, sysctl.ErrUnknownMiddlebox,
// sysctl.ErrPathConflict).
var ErrValues = errors.New("no keepalive values")

// ArmModel is what the values are chosen from when the model chooses them.
type ArmModel struct {
	// Path names the path: a timeout, a middlebox, or nothing; Arm fills in
	// Conntrack from the namespace.
	Path sysctl.PathChoice
	// DetectWithin is the longest a dead idle peer may go unnoticed; 0: no
	// target.
	DetectWithin time.Duration
}

// ArmAction is one selected socket and what arming did to it.
type ArmAction struct {
	// Socket is the socket as the dump reported it, valid during the emit
	// call only.
	Socket *diag.Socket
	// Owner is the process it was taken from (PID, Comm), when one was found;
	// FD is the descriptor number there (-1 when none was found). Like
	// Socket, Before and After, it is valid during the emit call only.
	Owner *proc.Owner
	FD    int
	// MPTCP: the descriptor is an MPTCP socket and Socket its TCP subflow.
	MPTCP bool
	// Reason is the finding code that selected it, or ReasonFilter.
	Reason string
	// Finding is the finding that selected it; nil for ReasonFilter. Valid
	// during the emit call only.
	Finding *audit.Finding
	// Before are the options read before anything was set, After those read
	// back after: nil where they were not read.
	Before, After *proc.SockOpts
	Result        Result
	// Err says why (Gone: how it was found gone; Denied, Unsupported, Error).
	Err error
}

// ArmSummary counts what an arm run did.
type ArmSummary struct {
	// Sockets is how many sockets the dump handed out.
	Sockets int
	// Selected is how many were selected: each has an ArmAction.
	Selected int
	// Armed, Unchanged, Gone and Failed (Denied, Unsupported, Error) count
	// results; WouldArm counts a dry run's.
	Armed, Unchanged, WouldArm, Gone, Failed int
	// DryRun is the config's.
	DryRun bool
	// Values are what was set (or, in a dry run, would be): the config's,
	// or the model's choice.
	Values proc.Keepalive
	// Stopped: a refusal that holds for every socket ended the run early.
	Stopped bool
	// Interrupted says the run's context ended first.
	Interrupted bool
	// Duration is how long Arm took.
	Duration time.Duration
}

// ArmResult maps what taking or arming a socket returned to a Result: the
// owner or its descriptor gone (after a second look), or a descriptor that
// now holds another socket, is Gone; a refused pidfd_getfd is Denied; a
// kernel without pidfd_getfd, or a socket refusing an option, Unsupported;
// no owner found, and anything else, Error.
func ArmResult(err error) Result {
	switch {
	case err == nil:
		return Armed
	case errors.Is(err, proc.ErrGone), errors.Is(err, proc.ErrIdentityMismatch):
		return Gone
	case errors.Is(err, proc.ErrNotPermitted):
		return Denied
	case errors.Is(err, proc.ErrUnsupported), errors.Is(err, proc.ErrOptionUnsupported):
		return Unsupported
	}
	return Error
}

// stops says whether an error holds for every socket, so that a run ends
// at the first instead of failing for each: a kernel without pidfd_getfd, or
// a refusal. A refusal may in principle spare some owners (those of the same
// user with no more capabilities than tcpkeep), but a run that was refused
// once is one the operator must rerun with the right privileges anyway.
func stops(err error) bool {
	return errors.Is(err, proc.ErrUnsupported) || errors.Is(err, proc.ErrNotPermitted)
}

// armRun is one Arm's state.
type armRun struct {
	cfg  ArmConfig
	sel  *run // the selection, as kill's
	f    *proc.Finder
	emit func(*ArmAction)
	sum  ArmSummary
	act  ArmAction
	own  proc.Owner
	bef  proc.SockOpts
	aft  proc.SockOpts
	stop error
}

// Arm selects sockets from one dump of ns, as Run does, and sets
// cfg.Keepalive on each through a duplicate of its owner's descriptor
// (proc.Finder.Take: the duplicate is checked to be the very socket the dump
// reported, inode and cookie), reading the options before and after. Every
// selected socket's ArmAction goes to emit, in dump order. Like Run, it needs
// no command line: a namespace, a configuration and a sink.
//
// A socket is handled once however many processes hold it: the dump lists it
// once, and the first owner found (the lowest PID) is the one it is taken
// from. A socket the dump did not select is never touched: only the selected
// socket's own descriptor is duplicated.
//
// Arm returns the summary and the error that ended it early: the model's
// before the dump (ErrValues), a failed dump, ctx's end (the summary says Interrupted), a failed scan of
// /proc, or a refusal that holds for every socket (a kernel without
// pidfd_getfd, or no ptrace rights), wrapped with ErrStopped (the summary
// says Stopped).
func Arm(ctx context.Context, ns kernel.NS, cfg ArmConfig, emit func(*ArmAction)) (ArmSummary, error) {
	start := time.Now()
	sum, err := arm(ctx, ns, cfg, emit)
	sum.Duration = time.Since(start)
	sum.Interrupted = err != nil && ctx.Err() != nil
	return sum, err
}

func arm(ctx context.Context, ns kernel.NS, cfg ArmConfig, emit func(*ArmAction)) (ArmSummary, error) {
	a := &armRun{emit: emit}
	a.sum.DryRun = cfg.DryRun
	if len(cfg.Findings) > 0 || cfg.Model != nil {
		t, err := ns.Tunables()
		if err != nil {
			return a.sum, err
		}
		cfg.Audit.Tunables = t
	}
	if m := cfg.Model; m != nil {
		choice := m.Path
		choice.Conntrack = cfg.Audit.Tunables.ConntrackEstablished
		p, err := sysctl.ChoosePath(choice)
		if err != nil {
			return a.sum, fmt.Errorf("%w: %w", ErrValues, err)
		}
		rec, err := sysctl.Recommend(sysctl.Request{Path: p, DetectWithin: m.DetectWithin})
		if err != nil {
			return a.sum, fmt.Errorf("%w: %w", ErrValues, err)
		}
		cfg.Keepalive.Keepalive = rec.Keepalive
		if p.Kind == sysctl.PathMiddlebox && cfg.Audit.PathIdleTimeout == 0 {
			cfg.Audit.PathIdleTimeout = p.IdleTimeout // the path keepalive_after_path_timeout judges by, too
		}
	}
	a.cfg, a.sum.Values = cfg, cfg.Keepalive
	if err := cfg.Keepalive.Check(); err != nil {
		return a.sum, err
	}
	a.sel = &run{cfg: Config{Filter: cfg.Filter, All: cfg.All, Findings: cfg.Findings, Audit: cfg.Audit, Listeners: cfg.Listeners}}
	a.sel.aud = auditor(cfg.Findings, cfg.Audit)
	a.f = cfg.Owners
	if a.f == nil {
		a.f = proc.NewFinder("/proc", cfg.PID)
		defer a.f.Close()
	}
	if cfg.PID != 0 {
		// Scan the one process now: a PID that does not exist is an error,
		// not an empty selection.
		if err := a.f.Scan(); err != nil {
			return a.sum, err
		}
	}
	dump, err := ns.Dial()
	if err != nil {
		return a.sum, err
	}
	defer dump.Close()
	for s, err := range dump.Sockets(ctx, cfg.Filter) {
		if err != nil {
			return a.sum, err
		}
		a.sum.Sockets++
		if !a.sel.candidate(s) || s.State != diag.StateListen && Armable&diag.Of(s.State) == 0 {
			continue
		}
		reason, f, ok := a.sel.selected(s)
		if !ok {
			continue
		}
		if cfg.PID != 0 {
			// Only the process's own sockets are selected at all.
			if o, err := a.f.Find(s.Inode); err != nil || o.PID != cfg.PID {
				continue
			}
		}
		a.handle(s, reason, f)
		if a.stop != nil {
			a.sum.Stopped = true
			return a.sum, a.stop
		}
	}
	return a.sum, nil
}

// auditor is the audit Run and Arm select with: only the socket rules
// among codes, without the per-peer rule, and without owners in the messages
// (the action carries the owner apart). Run builds its own the same way.
func auditor(codes []audit.Code, cfg audit.Config) *audit.Auditor {
	var only []audit.Code
	for _, c := range codes {
		if !c.Tunable() && c != audit.PeerLimitExceeded {
			only = append(only, c)
		}
	}
	if len(only) == 0 {
		return nil
	}
	cfg.Only, cfg.MaxPerPeer = only, 0
	return audit.New(cfg)
}

// handle takes one selected socket from its owner, arms it and emits its
// action.
func (a *armRun) handle(s *diag.Socket, reason string, f *audit.Finding) {
	a.sum.Selected++
	a.act = ArmAction{Socket: s, Reason: reason, Finding: f, FD: -1}
	sock, o, err := a.f.Take(s.Inode, s.Cookie)
	if o.PID != 0 {
		a.own = proc.Owner{PID: o.PID, FD: o.FD, Comm: a.f.Comm(o.PID)}
		a.act.Owner, a.act.FD = &a.own, o.FD
	}
	if err == nil {
		a.act.MPTCP = sock.MPTCP()
		err = a.arm(sock)
		sock.Close()
	}
	if err != nil {
		a.act.Result, a.act.Err = ArmResult(err), err
		if stops(err) {
			a.stop = fmt.Errorf("%w: %w", ErrStopped, err)
		}
	}
	switch a.act.Result {
	case Armed:
		a.sum.Armed++
	case Unchanged:
		a.sum.Unchanged++
	case WouldArm:
		a.sum.WouldArm++
	case Gone:
		a.sum.Gone++
	default:
		a.sum.Failed++
	}
	a.emit(&a.act)
}

// arm reads the socket's options and sets the config's where they differ;
// the result is set on the action when there is no error.
func (a *armRun) arm(sock *proc.Sock) error {
	var err error
	if a.bef, err = sock.Options(); err != nil {
		return fmt.Errorf("read options of pid %d fd %d: %w", sock.Owner.PID, sock.Owner.FD, err)
	}
	a.act.Before = &a.bef
	k := a.cfg.Keepalive
	switch {
	case k.Holds(a.bef):
		a.act.Result, a.act.After = Unchanged, &a.bef
		return nil
	case a.cfg.DryRun:
		a.act.Result = WouldArm
		return nil
	}
	a.aft, err = sock.Arm(k, a.bef)
	if err != nil {
		return err
	}
	a.act.After = &a.aft
	a.act.Result = Armed
	return nil
}
