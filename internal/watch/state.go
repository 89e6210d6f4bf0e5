package watch

import (
	"context"
	"errors"
	"iter"
	"slices"
	"time"

	"github.com/tcpkeep/tcpkeep/diag"
	"github.com/tcpkeep/tcpkeep/internal/audit"
	"github.com/tcpkeep/tcpkeep/internal/kernel"
	"github.com/tcpkeep/tcpkeep/internal/kill"
	"github.com/tcpkeep/tcpkeep/internal/netns"
	"github.com/tcpkeep/tcpkeep/internal/proc"
)

// destroyReadBuffer is the kernel receive buffer of each subscription: a
// broadcast takes 1,920 bytes of it (diag.Subscription.SetReadBuffer), so it
// holds about 1,000 while the reader waits (destroyBatch, the engine's lock).
const destroyReadBuffer = 4 << 20

// destroyBatch is how long the reader of a subscription lets broadcasts
// gather once it has read all there were (diag.Subscription.SetBatch): at
// 1,000 closes a second (2,000 broadcasts), 20 wakeups a second instead of
// 2,000, for events up to 50 ms late. destroyReadBuffer holds 50 ms of
// 20,000 broadcasts a second.
const destroyBatch = 200 * time.Millisecond

// killedRounds is how many rounds the engine remembers a socket it closed,
// waiting for the kernel's broadcast of it (which comes when its owner closes
// the descriptor), so that the broadcast is not taken for a kernel drop.
const killedRounds = 10

// key identifies a finding within a namespace: the socket's cookie (0 for
// the tunables' findings) and the code.
type key struct {
	cookie uint64
	code   audit.Code
}

func findingKey(f *audit.Finding) key {
	if f.Socket == nil {
		return key{code: f.Code}
	}
	return key{f.Socket.Cookie, f.Code}
}

// entry is an open finding.
type entry struct {
	f      audit.Finding // as the last audit saw it; Socket, Owner, Opts are its own
	opened time.Time
	// missing: the last audit did not see the socket, and no broadcast said
	// it was freed; the owner may still hold a connection the kernel dropped.
	missing bool
	// reported: a dry run reported the socket's would-be kill already.
	reported bool
}

// ending is a socket freed while its namespace's audit ran.
type ending struct {
	end      audit.End
	resolved bool // it had open findings, resolved then
}

// nsState is what the engine holds for one namespace.
type nsState struct {
	name  string
	ns    netns.Namespace // as the last round found it
	open  map[key]*entry
	sub   Destroyed
	alive bool // a reader of sub is running
	lossy bool // broadcasts were lost since the last audit
	// subWarned: a failed subscription was logged (once until one works).
	subWarned bool
	// during holds the sockets freed while an audit of the namespace runs;
	// nil between audits.
	during map[uint64]*ending
	// killed are the cookies the engine closed, with the round it did.
	killed map[uint64]int
	// audited: an audit of it succeeded (its metrics are watched).
	audited bool
}

// listening says whether the namespace's broadcasts can be trusted to say
// that a socket was freed.
func (st *nsState) listening() bool { return st.sub != nil && st.alive && !st.lossy }

func (st *nsState) unsubscribe() {
	if st.sub != nil {
		st.sub.Close()
		st.sub, st.alive = nil, false
	}
}

// socketCodes are the codes of findings about a socket.
var socketCodes = func() []audit.Code {
	var c []audit.Code
	for _, k := range audit.Codes {
		if !k.Tunable() {
			c = append(c, k)
		}
	}
	return c
}()

// state returns the namespace's state, made on its first round. Called with
// e.mu held.
func (e *Engine) state(n netns.Namespace, k nsKey) *nsState {
	st := e.states[k]
	if st == nil {
		st = &nsState{name: n.Name, open: map[key]*entry{}, killed: map[uint64]int{}}
		e.states[k] = st
	}
	st.ns = n
	if st.name != n.Name { // renamed (pid:PID follows the processes in it)
		if e.cfg.Metrics != nil && st.audited {
			e.cfg.Metrics.Forget(st.name)
		}
		st.name, st.audited = n.Name, false
	}
	return st
}

// auditNS subscribes to a namespace's freed sockets if it is not yet, audits
// it, turns the findings into events, and kills what Kill says.
func (e *Engine) auditNS(ctx context.Context, n netns.Namespace, k nsKey) error {
	e.mu.Lock()
	st := e.state(n, k)
	subscribe := e.cfg.Subscribe != nil && st.sub == nil
	e.mu.Unlock()
	if subscribe {
		if err := e.subscribe(ctx, n, st); err != nil {
			return err
		}
	}

	// What the audit needs from the open findings: which of their sockets it
	// sees, and their owners (so that steady findings cost no /proc scan).
	e.mu.Lock()
	seen := map[uint64]bool{}
	own := &owners{known: map[uint32]held{}, sockopts: e.cfg.Sockopts}
	for kk, en := range st.open {
		if kk.cookie == 0 {
			continue
		}
		seen[kk.cookie] = false
		if in := en.f.Socket.Inode; in != 0 {
			own.known[in] = held{en.f.Owner, en.f.Opts}
		}
	}
	st.during = map[uint64]*ending{}
	for c, r := range st.killed {
		if e.round-r > killedRounds {
			delete(st.killed, c)
		}
	}
	e.mu.Unlock()
	defer own.close()

	cfg := e.cfg.Audit
	cfg.Owners = own
	var found []audit.Finding
	start := time.Now()
	kns := e.cfg.Kernel(n.NS)
	// The audit under way finishes when ctx ends: its events are the last.
	sum, err := audit.Run(context.WithoutCancel(ctx), seeing{kns, seen}, cfg, func(f *audit.Finding) { found = append(found, *f) })
	if err := own.err(); err != nil {
		e.log.Debug("owners of flagged sockets not read", "netns", n.Name, "err", err.Error())
	}
	if err != nil {
		e.mu.Lock()
		st.during = nil
		e.mu.Unlock()
		if e.cfg.Metrics != nil && !errors.Is(err, netns.ErrNotExist) {
			t := &sum.Tunables
			if !sum.HaveTunables {
				t = nil
			}
			e.cfg.Metrics.Audited(n.Name, start, t, nil)
		}
		return err
	}
	e.mu.Lock()
	if e.cfg.Metrics != nil {
		if !st.audited {
			e.cfg.Metrics.Watching(n.Name)
		}
		e.cfg.Metrics.Audited(n.Name, start, &sum.Tunables, &sum)
	}
	st.audited = true
	e.reconcile(st, found, seen)
	e.mu.Unlock()
	if len(e.cfg.Kill) > 0 && ctx.Err() == nil {
		e.kill(ctx, st, n, kns, cfg)
	}
	return nil
}

// reconcile turns one audit's findings into events. Called with e.mu held.
func (e *Engine) reconcile(st *nsState, found []audit.Finding, seen map[uint64]bool) {
	now := time.Now()
	byKey := make(map[key]int, len(found))
	for i := range found {
		byKey[findingKey(&found[i])] = i
	}
	for k, en := range st.open {
		if i, ok := byKey[k]; ok {
			en.f, en.missing = found[i], false
			continue
		}
		switch d := st.during[k.cookie]; {
		case k.cookie == 0 || seen[k.cookie]:
			e.resolve(st, k, en, HowCleared, audit.EndUnknown, now)
		case d != nil:
			e.resolve(st, k, en, HowClosed, d.end, now)
		case st.listening() && !en.missing:
			// Gone from the dump, not yet freed: the kernel dropped it and the
			// owner holds it still, or it closed a moment ago and its broadcast
			// is on the way. One more audit for the broadcast to say how.
			en.missing = true
		default:
			e.resolve(st, k, en, HowClosed, audit.EndUnknown, now)
		}
	}
	for i := range found {
		k := findingKey(&found[i])
		if _, ok := st.open[k]; ok {
			continue
		}
		d := st.during[k.cookie]
		if d != nil && d.resolved {
			continue // opened before, and resolved while this audit ran
		}
		en := &entry{f: found[i], opened: now}
		st.open[k] = en
		e.emit(&Event{Kind: Opened, Time: now, NetNS: st.name, Namespace: st.ns, Finding: &en.f})
		if e.cfg.Metrics != nil {
			e.cfg.Metrics.Opened(st.name, en.f.Code, en.f.Severity)
		}
		if d != nil { // flagged, then freed before the audit ended
			e.resolve(st, k, en, HowClosed, d.end, now)
		}
	}
	st.during, st.lossy = nil, false
}

// resolve ends an open finding. Called with e.mu held.
func (e *Engine) resolve(st *nsState, k key, en *entry, how How, end audit.End, now time.Time) {
	delete(st.open, k)
	e.emit(&Event{Kind: Resolved, Time: now, NetNS: st.name, Namespace: st.ns, Finding: &en.f, How: how, End: end, Open: now.Sub(en.opened)})
	if e.cfg.Metrics != nil {
		e.cfg.Metrics.Resolved(st.name, en.f.Code, how.String())
	}
}

// drop stops watching a namespace: its open findings are resolved as closed
// (its sockets went with it), its series forgotten. Called with e.mu held.
func (e *Engine) drop(k nsKey, st *nsState) {
	now := time.Now()
	for kk, en := range st.open {
		how := HowClosed
		if kk.cookie == 0 {
			how = HowCleared
		}
		e.resolve(st, kk, en, how, audit.EndUnknown, now)
	}
	st.unsubscribe()
	delete(e.states, k)
	if e.cfg.Metrics != nil && st.audited {
		e.cfg.Metrics.Forget(st.name)
	}
}

// subscribe starts reading the namespace's freed sockets. A namespace that
// does not exist fails; any other failure is logged, and the namespace's
// endings are learnt from its audits.
func (e *Engine) subscribe(ctx context.Context, n netns.Namespace, st *nsState) error {
	sub, err := e.cfg.Subscribe(n.NS)
	if errors.Is(err, netns.ErrNotExist) {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if err != nil {
		if !st.subWarned {
			e.log.Warn("no destroy broadcasts: how connections end is learnt from the next audit", "netns", n.Name, "err", err.Error())
			st.subWarned = true
		}
		return nil
	}
	if rb, ok := sub.(interface{ SetReadBuffer(int) error }); ok {
		if err := rb.SetReadBuffer(destroyReadBuffer); err != nil {
			e.log.Debug("destroy broadcasts keep the default buffer", "netns", n.Name, "err", err.Error())
		}
	}
	if b, ok := sub.(interface{ SetBatch(time.Duration) }); ok {
		b.SetBatch(destroyBatch)
	}
	st.sub, st.alive, st.subWarned = sub, true, false
	e.wg.Add(1)
	go e.listen(ctx, st, sub)
	return nil
}

// listen reads one namespace's freed sockets until ctx ends or the
// subscription is closed.
func (e *Engine) listen(ctx context.Context, st *nsState, sub Destroyed) {
	defer e.wg.Done()
	var lost uint64 // the subscription's drops counted so far
	for s, err := range sub.Sockets(ctx) {
		switch {
		case errors.Is(err, diag.ErrOverrun):
			e.mu.Lock()
			st.lossy = true
			name := st.name
			e.mu.Unlock()
			n, lerr := sub.Lost()
			if lerr != nil {
				n = lost + 1 // at least one
			}
			e.log.Warn("destroy broadcasts lost: how those connections ended is learnt from the next audit", "netns", name, "lost", n-lost)
			if e.cfg.Metrics != nil {
				e.cfg.Metrics.Lost(name, int(n-lost))
			}
			lost = n
		case err != nil:
			if ctx.Err() == nil {
				e.log.Warn("reading destroy broadcasts", "netns", st.name, "err", err.Error())
			}
		default:
			e.ended(st, s)
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if st.sub == sub { // it ended by itself: subscribe again next round
		st.unsubscribe()
	}
}

// ended handles one freed socket: how it ended, counted, and its open
// findings resolved.
func (e *Engine) ended(st *nsState, s *diag.Socket) {
	e.mu.Lock()
	defer e.mu.Unlock()
	_, killed := st.killed[s.Cookie]
	h := audit.EndHints{Destroyed: killed}
	var open []key
	for _, c := range socketCodes {
		k := key{s.Cookie, c}
		if en, ok := st.open[k]; ok {
			open = append(open, k)
			if en.f.Opts != nil {
				h.Sockopts = en.f.Opts
			}
		}
	}
	end := audit.HowEnded(s, h)
	delete(st.killed, s.Cookie)
	if e.cfg.Metrics != nil {
		e.cfg.Metrics.Ended(st.name, end)
	}
	if st.during != nil {
		st.during[s.Cookie] = &ending{end: end, resolved: len(open) > 0}
	}
	now := time.Now()
	for _, k := range open {
		e.resolve(st, k, st.open[k], HowClosed, end, now)
	}
}

// kill closes, within the round's budget, the sockets flagged with Kill's
// codes, if any open finding has one.
func (e *Engine) kill(ctx context.Context, st *nsState, n netns.Namespace, kns kernel.NS, ac audit.Config) {
	e.mu.Lock()
	budget, flagged := e.budget, false
	for k := range st.open {
		flagged = flagged || slices.Contains(e.cfg.Kill, k.code)
	}
	e.mu.Unlock()
	if !flagged || budget <= 0 {
		return
	}
	kc := kill.Config{Filter: ac.Filter, Findings: e.cfg.Kill, Audit: ac, DryRun: e.cfg.DryRun, Max: budget}
	if slices.Contains(e.cfg.Kill, audit.PeerLimitExceeded) {
		kc.MaxPerPeer = ac.MaxPerPeer
	}
	sum, err := kill.Run(context.WithoutCancel(ctx), kns, kc, func(a *kill.Action) { e.acted(st, a) })
	e.mu.Lock()
	e.budget -= sum.Selected
	e.mu.Unlock()
	if err != nil {
		e.log.Warn("kill failed", "netns", n.Name, "err", err.Error(), "closed", sum.Closed)
	}
}

// acted reports what the kill did to one socket, and resolves the socket's
// open findings if it closed it.
func (e *Engine) acted(st *nsState, a *kill.Action) {
	e.mu.Lock()
	defer e.mu.Unlock()
	var open []key
	reported := false
	for _, c := range socketCodes {
		k := key{a.Socket.Cookie, c}
		if en, ok := st.open[k]; ok {
			open = append(open, k)
			reported = reported || en.reported
		}
	}
	now := time.Now()
	if a.Result == kill.WouldClose {
		// A dry run selects the same sockets every round: report each once.
		if reported {
			return
		}
		for _, k := range open {
			st.open[k].reported = true
		}
	}
	e.emit(&Event{Kind: Acted, Time: now, NetNS: st.name, Namespace: st.ns, Action: a})
	if a.Result != kill.Closed {
		return
	}
	st.killed[a.Socket.Cookie] = e.round
	for _, k := range open {
		e.resolve(st, k, st.open[k], HowKilled, audit.EndDestroyed, now)
	}
}

// held is what an open finding knows of its socket's owner.
type held struct {
	owner *proc.Owner
	opts  *proc.SockOpts
}

// owners is an audit's audit.Owners: the owners of sockets with open
// findings are known already; others are looked up in an index made on the
// first lookup (one scan of /proc).
type owners struct {
	known    map[uint32]held
	sockopts bool
	idx      *proc.Index
}

func (o *owners) index() *proc.Index {
	if o.idx == nil {
		o.idx = proc.NewIndex("/proc", o.sockopts)
	}
	return o.idx
}

func (o *owners) Owner(inode uint32) (proc.Owner, bool) {
	if h, ok := o.known[inode]; ok {
		if h.owner == nil {
			return proc.Owner{}, false
		}
		return *h.owner, true
	}
	return o.index().Owner(inode)
}

func (o *owners) Options(inode uint32, so *proc.SockOpts) bool {
	if h, ok := o.known[inode]; ok {
		if h.opts == nil {
			return false
		}
		*so = *h.opts
		return true
	}
	if !o.sockopts {
		return false
	}
	return o.index().Options(inode, so)
}

func (o *owners) err() error {
	if o.idx == nil {
		return nil
	}
	return o.idx.Err()
}

func (o *owners) close() {
	if o.idx != nil {
		o.idx.Close()
	}
}

// seeing is a namespace whose dumps mark, in seen, the cookies they hand out
// that are keys of seen: which sockets with open findings are still there.
type seeing struct {
	kernel.NS
	seen map[uint64]bool
}

func (s seeing) Dial() (kernel.Conn, error) {
	c, err := s.NS.Dial()
	if err != nil || len(s.seen) == 0 {
		return c, err
	}
	return seeingConn{c, s.seen}, nil
}

type seeingConn struct {
	kernel.Conn
	seen map[uint64]bool
}

func (c seeingConn) Sockets(ctx context.Context, f *diag.Filter) iter.Seq2[*diag.Socket, error] {
	return func(yield func(*diag.Socket, error) bool) {
		for s, err := range c.Conn.Sockets(ctx, f) {
			if err == nil {
				if _, ok := c.seen[s.Cookie]; ok {
					c.seen[s.Cookie] = true
				}
			}
			if !yield(s, err) {
				return
			}
		}
	}
}
