package kill

import (
	"context"
	"errors"
	"iter"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpkeep/tcpkeep/diag"
	"github.com/tcpkeep/tcpkeep/internal/audit"
	"github.com/tcpkeep/tcpkeep/internal/kernel"
	"github.com/tcpkeep/tcpkeep/internal/proc"
)

// Result is what became of a selected socket.
type Result uint8

// Results, as action records name them.
const (
	// WouldClose: a dry run selected it and left it alone.
	WouldClose Result = iota
	// Closed: the kernel destroyed it; its owner's next call fails with
	// ECONNABORTED.
	Closed
	// Gone: no socket with that identity was left to destroy: it closed by
	// itself between the dump and the destroy, or its 4-tuple now belongs to a
	// new connection (another cookie), which was not touched.
	Gone
	// Unsupported: the kernel cannot destroy sockets (CONFIG_INET_DIAG_DESTROY off).
	Unsupported
	// Denied: the caller lacks CAP_NET_ADMIN in the socket's namespace (or,
	// through the owner, ptrace rights over it: a *proc.PermissionError).
	Denied
	// Error: any other failure.
	Error
)

// String is the name records use: would_close, closed, gone, unsupported,
// denied or error; armed, unchanged or would_arm for arming.
func (r Result) String() string {
	switch r {
	case Armed:
		return "armed"
	case Unchanged:
		return "unchanged"
	case WouldArm:
		return "would_arm"
	case WouldClose:
		return "would_close"
	case Closed:
		return "closed"
	case Gone:
		return "gone"
	case Unsupported:
		return "unsupported"
	case Denied:
		return "denied"
	}
	return "error"
}

// ReasonFilter is the reason of a socket selected by the filter alone.
const ReasonFilter = "filter"

// Action is one selected socket and what became of it. It is only valid during
// the emit call: copy what you keep.
type Action struct {
	// Socket is the socket as the dump reported it.
	Socket *diag.Socket
	// Owner is the process holding it, when Config.Owners found one.
	Owner *proc.Owner
	// Reason is the finding code that selected it, or ReasonFilter.
	Reason string
	// Finding is the finding that selected it; nil for ReasonFilter.
	Finding *audit.Finding
	Result  Result
	// Err is why it was not closed (Result Unsupported, Denied or Error).
	Err error
}

// Summary counts what a run did.
type Summary struct {
	// Sockets is how many sockets the first dump handed out (the filter's).
	Sockets int
	// Selected is how many sockets were selected: every one has an Action.
	Selected int
	// Closed, Gone and Failed count the results; a dry run closes nothing.
	Closed, Gone, Failed int
	// Dumps is how many dumps the run took: 1, or 2 with MaxPerPeer.
	Dumps int
	// Stopped says the run stopped at a destroy the kernel refused for a
	// reason that holds for every socket (ErrStopped).
	Stopped bool
	// Interrupted says the run's context ended first.
	Interrupted bool
	// Duration is how long Run took.
	Duration time.Duration
}

// Config says what a run selects.
type Config struct {
	// Filter is applied by the kernel to every dump; nil: every socket.
	Filter *diag.Filter
	// All selects every socket the filter matches (reason "filter"). It is
	// meant for when neither Findings nor MaxPerPeer says what to close.
	All bool
	// Findings selects sockets that audit rules with these codes flag. Codes
	// about tunables and peer_limit_exceeded (see MaxPerPeer) select nothing.
	Findings []audit.Code
	// Audit holds the rules' thresholds and the namespace's tunables; its
	// Only and MaxPerPeer are set by Run.
	Audit audit.Config
	// MaxPerPeer, when positive, closes for each remote address and local port
	// the idlest connections beyond this many (reason peer_limit_exceeded).
	// Sockets that All or Findings select are closed for that reason and do
	// not count toward their peer's limit.
	MaxPerPeer int
	// Listeners lets LISTEN sockets be selected. Without it they never are,
	// whatever the filter says.
	Listeners bool
	// DryRun selects and reports, and destroys nothing.
	DryRun bool
	// Max, when positive, ends the run once this many sockets are selected: a
	// bound on what one run may close (an agent's per-interval budget).
	Max int
	// Owners finds the process holding a selected socket; nil: none.
	Owners *proc.Index
	// ViaOwner, when not nil, closes through it instead of with SOCK_DESTROY
	// alone: Run makes the namespace's connection its Destroyer, tried first
	// unless it is forced (see OwnerCloser). The caller closes it.
	ViaOwner *OwnerCloser
}

// Dumper streams sockets; *diag.Conn is one.
type Dumper interface {
	Sockets(ctx context.Context, f *diag.Filter) iter.Seq2[*diag.Socket, error]
}

// Destroyer closes one socket by its exact identity; *diag.Conn is one. It
// must not be the Conn streaming the dump: a Conn runs one request at a time.
type Destroyer interface {
	Destroy(s *diag.Socket) error
}

// ErrStopped marks the error Run returns when the kernel refused a destroy for
// a reason that holds for every socket (no CONFIG_INET_DIAG_DESTROY, no
// CAP_NET_ADMIN): the run stops there instead of failing once per socket.
var ErrStopped = errors.New("stopped at the first socket")

// stopError is a destroy refused for every socket: it is ErrStopped, and says
// what the kernel said.
type stopError struct{ err error }

func (e stopError) Error() string        { return e.err.Error() }
func (e stopError) Unwrap() error        { return e.err }
func (e stopError) Is(target error) bool { return target == ErrStopped }

// run is one Run's state.
type run struct {
	cfg   Config
	d     Destroyer
	emit  func(*Action)
	sum   Summary
	aud   *audit.Auditor
	act   Action
	owner proc.Owner
	found audit.Finding // the finding that selected the socket being checked
	hit   bool          // found holds one
	stop  error
}

// Run selects sockets from dumps of ns, destroys each (unless cfg.DryRun) and
// hands every selected socket's Action to emit, in the order they are handled.
// It needs no command line: a Go program or an agent runs it with a namespace,
// a configuration and a sink.
//
// Sockets are destroyed as the dump hands them out. The dump goes on meanwhile:
// the kernel resumes a dump by position within a hash bucket, but it builds
// each datagram when the previous one is read, one ahead of us, so a destroy
// can shift only a bucket holding more than a whole datagram of sockets.
//
// With MaxPerPeer, a first dump counts connections per (remote address, local
// port), in a map bounded by the number of distinct peers; if a peer is over
// the limit, a second dump keeps, for those peers only, a bounded heap of the
// MaxPerPeer least idle connections seen so far: a connection pushed out of the
// heap (or never let in) has at least MaxPerPeer less idle ones beside it, so it
// is destroyed then and there. What the second dump finds is what counts: a
// connection that changed between the dumps is judged on its new values, and
// connections that opened meanwhile count too.
//
// Run returns the summary and the first error that stopped it: a failed dump,
// ctx's end (the summary says Interrupted), or a destroy refused for every
// socket (wrapped with ErrStopped; the summary says Stopped).
func Run(ctx context.Context, ns kernel.NS, cfg Config, emit func(*Action)) (Summary, error) {
	start := time.Now()
	if len(cfg.Findings) > 0 {
		t, err := ns.Tunables()
		if err != nil {
			return Summary{}, err
		}
		cfg.Audit.Tunables = t
	}
	c, err := ns.Dial()
	if err != nil {
		return Summary{}, err
	}
	defer c.Close()
	var d Destroyer = c
	if cfg.ViaOwner != nil {
		cfg.ViaOwner.Destroyer, d = c, cfg.ViaOwner
	}
	sum, err := run1(ctx, cfg, c, d, emit)
	sum.Duration = time.Since(start)
	sum.Stopped = errors.Is(err, ErrStopped)
	sum.Interrupted = err != nil && ctx.Err() != nil
	return sum, err
}

// run1 is Run on a dump and a destroyer, one Conn or two.
func run1(ctx context.Context, cfg Config, dump Dumper, d Destroyer, emit func(*Action)) (Summary, error) {
	r := &run{cfg: cfg, d: d, emit: emit}
	if r.cfg.DryRun {
		r.d = nil
	}
	var codes []audit.Code
	for _, c := range cfg.Findings {
		if !c.Tunable() && c != audit.PeerLimitExceeded {
			codes = append(codes, c)
		}
	}
	if len(codes) > 0 {
		ac := cfg.Audit
		ac.Only, ac.MaxPerPeer = codes, 0
		// The action carries the owner; the rules read options through the index.
		if cfg.Owners != nil {
			ac.Owners = cfg.Owners
		}
		r.aud = audit.New(ac)
	}
	var peers *peerCounts
	// handled remembers, only when a second dump may come, which sockets the
	// first one closed: bounded by what is selected, not by the table.
	var handled map[uint64]bool
	if cfg.MaxPerPeer > 0 {
		peers = newPeerCounts(cfg.MaxPerPeer)
		handled = make(map[uint64]bool)
	}
	r.sum.Dumps = 1
	for s, err := range dump.Sockets(ctx, cfg.Filter) {
		if err != nil {
			return r.sum, err
		}
		r.sum.Sockets++
		if !r.candidate(s) {
			continue
		}
		if reason, f, ok := r.selected(s); ok {
			r.handle(s, reason, f)
			if r.stop != nil {
				return r.sum, r.stop
			}
			if handled != nil {
				handled[s.Cookie] = true
			}
			if r.full() {
				return r.sum, nil
			}
			continue
		}
		if peers != nil {
			peers.count(s)
		}
	}
	if peers == nil || !peers.over() {
		return r.sum, nil
	}
	r.sum.Dumps = 2
	for s, err := range dump.Sockets(ctx, cfg.Filter) {
		if err != nil {
			return r.sum, err
		}
		if !r.candidate(s) {
			continue
		}
		// Selected by a finding or the filter: handled in the first dump
		// already (and gone, unless destroying it failed or this is a dry run),
		// or flagged only now (its idle time crossed a threshold meanwhile).
		if reason, f, ok := r.selected(s); ok {
			if !handled[s.Cookie] {
				handled[s.Cookie] = true
				r.handle(s, reason, f)
				if r.stop != nil {
					return r.sum, r.stop
				}
				if r.full() {
					return r.sum, nil
				}
			}
			continue
		}
		if victim := peers.offer(s); victim != nil {
			r.found = peers.finding(victim)
			r.handle(victim, string(audit.PeerLimitExceeded), &r.found)
			if r.stop != nil {
				return r.sum, r.stop
			}
			if r.full() {
				return r.sum, nil
			}
		}
	}
	return r.sum, nil
}

// full says Config.Max sockets are selected: the run ends.
func (r *run) full() bool { return r.cfg.Max > 0 && r.sum.Selected >= r.cfg.Max }

// candidate: may s be selected at all?
func (r *run) candidate(s *diag.Socket) bool {
	return s.State != diag.StateListen || r.cfg.Listeners
}

// selected says whether All or a finding selects s, and why.
func (r *run) selected(s *diag.Socket) (reason string, f *audit.Finding, ok bool) {
	if r.aud != nil {
		r.hit = false
		r.aud.Check(s, r.onFinding)
		if r.hit {
			return string(r.found.Code), &r.found, true
		}
	}
	if r.cfg.All {
		return ReasonFilter, nil, true
	}
	return "", nil, false
}

func (r *run) onFinding(f *audit.Finding) {
	if !r.hit {
		r.found, r.hit = *f, true
	}
}

// handle destroys one selected socket and emits its action.
func (r *run) handle(s *diag.Socket, reason string, f *audit.Finding) {
	r.sum.Selected++
	r.act = Action{Socket: s, Reason: reason, Finding: f}
	if f != nil && f.Owner != nil {
		r.act.Owner = f.Owner
	} else if o, ok := r.cfg.Owners.Owner(s.Inode); ok {
		r.owner = o
		r.act.Owner = &r.owner
	}
	if r.d == nil {
		r.act.Result = WouldClose
	} else {
		err := r.d.Destroy(s)
		r.act.Result, r.act.Err = Classify(err)
		switch r.act.Result {
		case Closed:
			r.sum.Closed++
		case Gone:
			r.act.Err = nil
			r.sum.Gone++
		default:
			r.sum.Failed++
		}
		if r.act.Result == Unsupported || r.act.Result == Denied {
			r.stop = stopError{err}
		}
	}
	r.emit(&r.act)
}

// Classify maps what Destroy returned to a Result, OwnerCloser's errors
// included.
func Classify(err error) (Result, error) {
	switch {
	case err == nil:
		return Closed, nil
	case errors.Is(err, diag.ErrNotFound), errors.Is(err, proc.ErrGone), errors.Is(err, proc.ErrIdentityMismatch):
		return Gone, err
	case errors.Is(err, diag.ErrDestroyUnsupported), errors.Is(err, proc.ErrUnsupported):
		return Unsupported, err
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES), errors.Is(err, proc.ErrNotPermitted):
		return Denied, err
	}
	return Error, err
}
