package watch

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tcpkeep/tcpkeep/diag"
	"github.com/tcpkeep/tcpkeep/internal/audit"
	"github.com/tcpkeep/tcpkeep/internal/kernel"
	"github.com/tcpkeep/tcpkeep/internal/kill"
	"github.com/tcpkeep/tcpkeep/internal/netns"
	"github.com/tcpkeep/tcpkeep/sysctl"
)

// How says how a finding was resolved.
type How uint8

// Hows.
const (
	// HowClosed: the socket is gone; Event.End says how it ended, where the
	// kernel's broadcast said.
	HowClosed How = 1 + iota
	// HowCleared: the socket lives on (or, for the tunables, the namespace
	// does) and the condition went away.
	HowCleared
	// HowKilled: the engine's kill closed the socket (Config.Kill).
	HowKilled
)

// String is the name events and metric labels use: closed, cleared, killed.
func (h How) String() string {
	switch h {
	case HowClosed:
		return "closed"
	case HowCleared:
		return "cleared"
	case HowKilled:
		return "killed"
	}
	return "unknown"
}

// Kind is what an Event says.
type Kind uint8

// Kinds.
const (
	// Opened: a finding appeared.
	Opened Kind = 1 + iota
	// Resolved: an open finding went away.
	Resolved
	// Acted: the engine's kill handled a socket (Event.Action).
	Acted
)

// Event is one thing the engine tells: a finding opened or resolved, or a
// socket its kill handled. It is valid during the Emit call only.
type Event struct {
	Kind Kind
	// Time is when the engine learnt it.
	Time time.Time
	// NetNS names the namespace (Namespace.Name); Namespace is the namespace
	// as the round found it: its inode and whose it is, where known.
	NetNS     string
	Namespace netns.Namespace
	// Finding is the finding (Opened, Resolved): for Resolved, as the last
	// audit that saw it saw it.
	Finding *audit.Finding
	// How, End and Open are a Resolved finding's: how it went, how its
	// connection ended (EndUnknown where not known, and for HowCleared), and
	// how long it was open.
	How  How
	End  audit.End
	Open time.Duration
	// Action is what the kill did to a socket (Acted).
	Action *kill.Action
}

// Destroyed is a subscription to the sockets a namespace frees;
// *diag.Subscription is one.
type Destroyed interface {
	Sockets(ctx context.Context) iter.Seq2[*diag.Socket, error]
	// Lost is how many broadcasts the kernel dropped so far (diag.ErrOverrun).
	Lost() (uint64, error)
	Close() error
}

// Metrics is what the engine counts and measures; *report.Metrics is one.
type Metrics interface {
	// Watching: the engine watches this namespace from now on.
	Watching(netns string)
	// Audited records a namespace's last audit: sum is nil when it failed,
	// t when its tunables could not be read.
	Audited(netns string, start time.Time, t *sysctl.Tunables, sum *audit.Summary)
	// Forget: the namespace is gone, or no longer watched.
	Forget(netns string)
	Opened(netns string, code audit.Code, sev audit.Severity)
	Resolved(netns string, code audit.Code, how string)
	// Ended: a connection of the namespace ended so.
	Ended(netns string, end audit.End)
	// Lost: the kernel dropped n broadcasts of the namespace's freed sockets.
	Lost(netns string, n int)
}

// Round is what one round did, for Config.Rounds.
type Round struct {
	// N counts rounds from 1.
	N int
	// Start and Duration: when the round started and how long it took.
	Start    time.Time
	Duration time.Duration
	// Namespaces were audited, Failed of them failed.
	Namespaces, Failed int
	// Open is how many findings are open after it.
	Open int
	// Stopping says the context ended: the round is the last.
	Stopping bool
}

// Config is what the engine watches and how.
type Config struct {
	// Interval is the time from the start of one round to the next.
	Interval time.Duration
	// Namespaces lists the namespaces to audit, called at the start of every
	// round: a namespace that leaves the list is no longer watched. An error
	// fails the round (it is logged; the next round tries again).
	Namespaces func() ([]netns.Namespace, error)
	// Kernel opens a namespace: kernel.Live, or a Fake in tests.
	Kernel func(netns.NS) kernel.NS
	// Subscribe subscribes to the sockets a namespace frees; nil:
	// diag.SubscribeDestroyed. Where it fails, every ending is learnt from
	// the next audit.
	Subscribe func(netns.NS) (Destroyed, error)
	// Audit are the rules' thresholds and the filter; the engine sets Owners.
	Audit audit.Config
	// Sockopts reads the owners' real socket options for the rules, as
	// audit's sockopts do (a scan of /proc and pidfd_getfd).
	Sockopts bool
	// Kill closes the sockets flagged with these codes (kill.Run with
	// Findings); peer_limit_exceeded closes each peer's idlest connections
	// beyond Audit.MaxPerPeer. Empty: nothing is closed.
	Kill []audit.Code
	// KillMax bounds the sockets Kill selects in one round, in all
	// namespaces together.
	KillMax int
	// DryRun: Kill selects and reports, and closes nothing.
	DryRun bool
	// Emit receives every event, one at a time. An error ends Run.
	Emit func(*Event) error
	// Metrics, if not nil, are kept up to date.
	Metrics Metrics
	// Log, if not nil, gets what the engine has to say that is not an event:
	// namespaces that failed, lost broadcasts, rounds.
	Log *slog.Logger
	// Rounds, if not nil, is called after every round.
	Rounds func(Round)
	// Listener, if not nil, is where Run serves HTTP while it runs:
	// MetricsHandler on /metrics, and the engine's health on /healthz (Serve).
	Listener       net.Listener
	MetricsHandler http.Handler
}

// Engine runs the rounds. Its methods are safe for concurrent use.
type Engine struct {
	cfg     Config
	log     *slog.Logger
	started time.Time
	// lastRound is when the last round ended, in Unix nanoseconds.
	lastRound atomic.Int64

	mu     sync.Mutex // guards what follows, and serializes Emit
	states map[nsKey]*nsState
	round  int
	budget int   // what Kill may still select this round
	err    error // the first Emit error
	wg     sync.WaitGroup
}

// nsKey identifies a namespace across rounds: its inode, or its name where
// the inode is unknown.
type nsKey struct {
	ino  uint64
	name string
}

func keyOf(n netns.Namespace) nsKey {
	if n.Ino != 0 {
		return nsKey{ino: n.Ino}
	}
	return nsKey{name: n.Name}
}

// New makes an engine for cfg.
func New(cfg Config) *Engine {
	e := &Engine{cfg: cfg, log: cfg.Log, states: map[nsKey]*nsState{}, started: time.Now()}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	if e.cfg.Kernel == nil {
		e.cfg.Kernel = kernel.Live
	}
	if e.cfg.Subscribe == nil {
		e.cfg.Subscribe = func(ns netns.NS) (Destroyed, error) {
			s, err := diag.SubscribeDestroyed(ns)
			if err != nil {
				return nil, err
			}
			return s, nil
		}
	}
	return e
}

// All is a Config.Namespaces of every network namespace on the host
// (netns.Enumerate), found anew every round: a namespace made since the last
// round is watched from this one, one that is gone is no longer. What
// enumeration could not look at (netns.Found.Skipped) is not watched.
func All() ([]netns.Namespace, error) {
	f, err := netns.Enumerate()
	if err != nil {
		return nil, err
	}
	return f.Namespaces, nil
}

// Only is a Config.Namespaces of one namespace, ns, described anew every
// round (a namespace that is gone fails the round).
func Only(ns netns.NS) func() ([]netns.Namespace, error) {
	return func() ([]netns.Namespace, error) {
		n, err := netns.Describe(ns)
		if err != nil {
			return nil, fmt.Errorf("netns %s: %w", ns, err)
		}
		return []netns.Namespace{n}, nil
	}
}

// Run runs a round every Interval until ctx ends. A round audits every
// namespace in turn; when ctx ends, the audit under way finishes (its events
// are emitted), the round stops there, and Run returns nil. It returns an
// error only when Emit failed.
func (e *Engine) Run(ctx context.Context) error {
	defer e.shutdown()
	e.log.Info("watching", "interval", e.cfg.Interval.String(), "kill", fmt.Sprint(e.cfg.Kill), "dry_run", e.cfg.DryRun)
	defer func() { e.log.Info("stopped", "signal", ctx.Err() != nil) }()
	if l := e.cfg.Listener; l != nil {
		served, stop := context.WithCancel(context.Background())
		defer stop()
		e.log.Info("serving /metrics and /healthz", "addr", l.Addr().String())
		go func() {
			if err := e.Serve(served, l, e.cfg.MetricsHandler); err != nil {
				e.log.Error("serving HTTP stopped", "err", err.Error())
			}
		}()
	}
	t := time.NewTicker(e.cfg.Interval)
	defer t.Stop()
	for {
		e.runRound(ctx)
		if err := e.emitErr(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (e *Engine) emitErr() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.err
}

// runRound audits every namespace of the list, once.
func (e *Engine) runRound(ctx context.Context) {
	start := time.Now()
	e.mu.Lock()
	e.round++
	r := Round{N: e.round, Start: start}
	e.budget = e.cfg.KillMax
	e.mu.Unlock()
	list, err := e.cfg.Namespaces()
	if err != nil {
		e.log.Warn("cannot list the namespaces to audit; trying again next round", "err", err.Error())
	}
	inList := map[nsKey]bool{}
	for _, n := range list {
		if ctx.Err() != nil {
			r.Stopping = true
			break
		}
		k := keyOf(n)
		inList[k] = true
		r.Namespaces++
		if err := e.auditNS(ctx, n, k); err != nil {
			r.Failed++
			e.failed(n, k, err)
		}
		if e.emitErr() != nil {
			return
		}
	}
	if err == nil && !r.Stopping {
		// What left the list is not watched any more: its sockets went with it.
		e.mu.Lock()
		for k, st := range e.states {
			if !inList[k] {
				e.log.Info("namespace left the list: no longer watched", "netns", st.name)
				e.drop(k, st)
			}
		}
		e.mu.Unlock()
	}
	r.Stopping = r.Stopping || ctx.Err() != nil
	r.Duration = time.Since(start)
	e.mu.Lock()
	for _, st := range e.states {
		r.Open += len(st.open)
	}
	e.mu.Unlock()
	e.lastRound.Store(time.Now().UnixNano())
	e.log.Debug("round done", "round", r.N, "namespaces", r.Namespaces, "failed", r.Failed, "open", r.Open, "duration_ms", r.Duration.Milliseconds())
	if e.cfg.Rounds != nil {
		e.cfg.Rounds(r)
	}
}

// failed logs a namespace whose audit failed and records it: a namespace that
// is gone stops being watched, another is tried again next round.
func (e *Engine) failed(n netns.Namespace, k nsKey, err error) {
	if errors.Is(err, netns.ErrNotExist) {
		e.log.Warn("namespace is gone: skipped", "netns", n.Name, "err", err.Error())
		e.mu.Lock()
		if st := e.states[k]; st != nil {
			e.drop(k, st)
		}
		e.mu.Unlock()
		return
	}
	e.log.Warn("audit failed: namespace skipped this round", "netns", n.Name, "err", err.Error())
}

// shutdown ends every subscription and waits for their readers.
func (e *Engine) shutdown() {
	e.mu.Lock()
	for _, st := range e.states {
		st.unsubscribe()
	}
	e.mu.Unlock()
	e.wg.Wait()
}

// emit hands an event to Emit, and keeps its first error. Called with e.mu held.
func (e *Engine) emit(ev *Event) {
	if e.err != nil || e.cfg.Emit == nil {
		return
	}
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	e.err = e.cfg.Emit(ev)
}

// Healthy says whether rounds keep coming: an error when none ended for two
// intervals and a minute (a hung dump, a stuck namespace).
func (e *Engine) Healthy() error {
	last := e.started
	if n := e.lastRound.Load(); n != 0 {
		last = time.Unix(0, n)
	}
	if since := time.Since(last); since > 2*e.cfg.Interval+time.Minute {
		return &staleError{since.Round(time.Second)}
	}
	return nil
}

type staleError struct{ since time.Duration }

func (s *staleError) Error() string { return "no round ended for " + s.since.String() }
