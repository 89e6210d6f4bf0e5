package audit

import (
	"fmt"
	"time"

	"github.com/tcpkeep/tcpkeep/diag"
	"github.com/tcpkeep/tcpkeep/internal/proc"
	"github.com/tcpkeep/tcpkeep/sysctl"
)

// Severity is how bad a finding is. The zero value is no severity: nothing found.
type Severity uint8

// Severities, in increasing order.
const (
	Info Severity = 1 + iota
	Warning
	Critical
)

// String is the name records use: info, warning or critical ("none" for 0).
func (s Severity) String() string {
	switch s {
	case Info:
		return "info"
	case Warning:
		return "warning"
	case Critical:
		return "critical"
	}
	return "none"
}

// ParseSeverity reads info, warning or critical.
func ParseSeverity(s string) (Severity, error) {
	for _, v := range []Severity{Info, Warning, Critical} {
		if s == v.String() {
			return v, nil
		}
	}
	return 0, fmt.Errorf("%q: want info, warning or critical", s)
}

// Code names a rule: the finding codes of DESIGN.md and docs/findings.md. Each
// code's doc says what its Finding's facts hold.
type Code string

// The finding codes.
const (
	// HalfOpenKeepalive: Count keepalive probes unanswered, nothing received
	// for Value; Keepalive holds the interval and count in use (from
	// ValueFrom); DropIn and DropBy say when the kernel drops it, by
	// keepalive_probes or, where the socket sets it, user_timeout (DropLimit);
	// DropNone: the socket sets its own TCP_KEEPCNT, which was not read.
	HalfOpenKeepalive Code = "half_open_keepalive"
	// HalfOpenRetrans: Count retransmissions in a row (Limit: the threshold),
	// no ACK for Value; the kernel gives up DropAfter after the first
	// retransmission, by DropBy (tcp_retries2 or orphan_retries with Retries
	// retransmissions, or user_timeout), holding that time against
	// DropLimit; DropIn from now. DropNone: tcp_retries2 is unknown.
	HalfOpenRetrans Code = "half_open_retrans"
	// ZeroWindowStall: Count zero-window probes sent (on the persist timer, or
	// the retransmit timer's zero-window path); the window has been closed
	// for about Value. Where the kernel will drop it (TCP_USER_TIMEOUT
	// DropLimit, or a peer silent until tcp_retries2), DropIn and DropBy say
	// when.
	ZeroWindowStall Code = "zero_window_stall"
	// IdleNoKeepalive: idle for Value, over Threshold, without SO_KEEPALIVE.
	IdleNoKeepalive Code = "idle_no_keepalive"
	// IdleOverlong: idle for Value, over Threshold.
	IdleOverlong Code = "idle_overlong"
	// KeepaliveAfterPathTimeout: keepalive probes the idle connection every
	// Value, max(idle time, interval) of Keepalive (from ValueFrom; the
	// interval is unknown when inferred from the timer), which does not stay
	// under Threshold, the path's idle timeout (from ThresholdFrom), less
	// sysctl.Margin: the path can forget the flow between probes.
	KeepaliveAfterPathTimeout Code = "keepalive_after_path_timeout"
	// CloseWaitStale: in CLOSE_WAIT and idle for Value, over Threshold.
	CloseWaitStale Code = "close_wait_stale"
	// PeerLimitExceeded: the socket's remote address holds Count connections
	// to its local port, over Limit.
	PeerLimitExceeded Code = "peer_limit_exceeded"
	// ListenQueueFull: Count connections wait in the accept queue of a backlog
	// of Limit.
	ListenQueueFull Code = "listen_queue_full"
	// SysctlKeepaliveDefault: tcp_keepalive_time (Value) is the kernel
	// default; Keepalive holds the three tunables.
	SysctlKeepaliveDefault Code = "sysctl_keepalive_default"
	// SysctlKeepaliveAfterConntrack: keepalive's cadence, max(time, intvl) of
	// the tunables (Value; Keepalive holds them), does not stay under
	// nf_conntrack_tcp_timeout_established (Threshold) less sysctl.Margin.
	SysctlKeepaliveAfterConntrack Code = "sysctl_keepalive_after_conntrack"
)

// Codes lists every code, in the order of DESIGN.md's table.
var Codes = []Code{
	HalfOpenKeepalive, HalfOpenRetrans, ZeroWindowStall, IdleNoKeepalive, IdleOverlong,
	KeepaliveAfterPathTimeout, CloseWaitStale, PeerLimitExceeded, ListenQueueFull,
	SysctlKeepaliveDefault, SysctlKeepaliveAfterConntrack,
}

// Source says where a value a rule used came from.
type Source uint8

// Sources.
const (
	SourceNone Source = iota
	// SourceSocket: the socket's own options, read from its owner.
	SourceSocket
	// SourceTimer: inferred from the socket's pending keepalive timer.
	SourceTimer
	// SourceNamespace: the namespace's tunables.
	SourceNamespace
	// SourceConfig: Config.PathIdleTimeout, what the operator said.
	SourceConfig
	// SourceConntrack: the namespace's nf_conntrack_tcp_timeout_established.
	SourceConntrack
)

// Remedy is what to do about a finding.
type Remedy uint8

// Remedies.
const (
	RemedyNone Remedy = iota
	// RemedyClose: close the socket now; nothing else will.
	RemedyClose
	// RemedyUserTimeout: set TCP_USER_TIMEOUT in the application, so that it
	// gives up sooner.
	RemedyUserTimeout
	// RemedyFixReader: the peer must read; bound the wait with TCP_USER_TIMEOUT.
	RemedyFixReader
	// RemedyKeepalive: set SO_KEEPALIVE in the application.
	RemedyKeepalive
	// RemedySocketKeepidle: the socket's own TCP_KEEPIDLE must come down
	// below the path's timeout.
	RemedySocketKeepidle
	// RemedyTune: the namespace's tcp_keepalive_time must come down.
	RemedyTune
	// RemedyFixClose: the application must close its end on EOF or error.
	RemedyFixClose
	// RemedyAcceptFaster: the application must accept faster, or the backlog grow.
	RemedyAcceptFaster
	// RemedyLimitPeer: close the peer's surplus connections, and find why it
	// opens so many.
	RemedyLimitPeer
)

var remedyNames = [...]string{RemedyNone: "", RemedyClose: "close", RemedyUserTimeout: "user_timeout",
	RemedyFixReader: "fix_reader", RemedyKeepalive: "keepalive", RemedySocketKeepidle: "socket_keepidle",
	RemedyTune: "tune", RemedyFixClose: "fix_close", RemedyAcceptFaster: "accept_faster", RemedyLimitPeer: "limit_peer"}

// String is the name records use (close, user_timeout, ...).
func (r Remedy) String() string {
	if int(r) < len(remedyNames) {
		return remedyNames[r]
	}
	return ""
}

// Holder says who holds a flagged socket.
type Holder uint8

// Holders.
const (
	// HolderUnknown: owners were not looked up.
	HolderUnknown Holder = iota
	// HolderProcess: Finding.Owner holds it.
	HolderProcess
	// HolderOrphan: the application closed it; the kernel finishes it alone.
	HolderOrphan
	// HolderAcceptQueue: it waits in its listener's accept queue, not accepted yet.
	HolderAcceptQueue
	// HolderNotFound: no process found; it may have exited, or live in another
	// pid namespace.
	HolderNotFound
)

// Defaults of the thresholds (DESIGN.md's findings table).
const (
	DefaultMaxIdle          = 10 * time.Minute
	DefaultCloseWaitAfter   = 60 * time.Second
	DefaultRetransThreshold = 3
	// ZeroWindowProbes is how many unanswered zero-window probes make a stall.
	ZeroWindowProbes = 3
)

// Owners is where an audit learns who holds a flagged socket and, when it can,
// that socket's real options; *proc.Index is one.
type Owners interface {
	Owner(inode uint32) (proc.Owner, bool)
	Options(inode uint32, o *proc.SockOpts) bool
}

// Config is what an audit checks against.
type Config struct {
	// MaxIdle is idle_no_keepalive's threshold.
	MaxIdle time.Duration
	// IdleLimit is idle_overlong's threshold; 0 turns the rule off.
	IdleLimit time.Duration
	// CloseWaitAfter is close_wait_stale's threshold.
	CloseWaitAfter time.Duration
	// RetransThreshold is how many retransmissions make half_open_retrans.
	RetransThreshold int
	// MaxPerPeer is how many connections one remote address may hold to one local
	// port; 0 turns peer_limit_exceeded off.
	MaxPerPeer int
	// PathIdleTimeout is how long the path keeps an idle flow; 0 means the
	// namespace's nf_conntrack_tcp_timeout_established, or no check without it.
	PathIdleTimeout time.Duration
	// Tunables are the namespace's, from sysctl.Read; Run reads them.
	Tunables sysctl.Tunables
	// Owners finds the process holding a flagged socket and, where it reads
	// them, its real options; nil leaves owners out and infers the options
	// from what sock_diag shows and the tunables.
	Owners Owners
	// Only, when not empty, limits the socket rules to these codes (what a kill
	// by finding selects): the others are not checked, so they cost no lookup.
	Only []Code
	// Filter selects the sockets Run dumps; nil: every socket.
	Filter *diag.Filter
}

// DefaultConfig is Config with DESIGN.md's defaults and the given tunables.
func DefaultConfig(t sysctl.Tunables) Config {
	return Config{MaxIdle: DefaultMaxIdle, CloseWaitAfter: DefaultCloseWaitAfter, RetransThreshold: DefaultRetransThreshold, Tunables: t}
}

// Finding is one thing wrong, as facts: what was measured and against what,
// when the kernel will act, and what to do. The command line words them; what
// each fact holds depends on the Code (see its doc).
type Finding struct {
	Code     Code
	Severity Severity
	// Socket is a copy of the flagged socket; nil for findings about the tunables.
	Socket *diag.Socket
	// Holder says who holds Socket; Owner is the process, for HolderProcess.
	Holder Holder
	Owner  *proc.Owner
	// Opts are Socket's real options, when they were read.
	Opts *proc.SockOpts
	// Value is the duration the rule measured, Threshold the one it held it
	// against; ValueFrom and ThresholdFrom say where they came from where
	// there is more than one place.
	Value, Threshold         time.Duration
	ValueFrom, ThresholdFrom Source
	// Count is what the rule counted, Limit what it held it against.
	Count, Limit int
	// Keepalive are the keepalive values the rule used.
	Keepalive sysctl.Keepalive
	// DropIn is how long until the kernel drops the socket, by DropBy, counted
	// from when the dump showed it, as sysctl's model of the kernel's clocks
	// predicts (sysctl.Socket); 0 with sysctl.DropNone, when it will not or
	// cannot be told. DropAfter is how long after the condition began (the
	// last packet received, the first retransmission, the start of zero-window
	// probing) the drop comes; DropLimit is the time the kernel holds it
	// against (TCP_USER_TIMEOUT, or tcp_retries2's or tcp_orphan_retries'
	// give-up time; 0 for a probe count); Retries is tcp_retries2 or
	// tcp_orphan_retries, where one of them drops it.
	DropIn, DropAfter, DropLimit time.Duration
	DropBy                       sysctl.DropCause
	Retries                      int
	// Remedy is what to do.
	Remedy Remedy
	// Arm is what arming the socket now, through its owner, would set: the
	// values recommended for the path, TCP_USER_TIMEOUT included (see
	// Config.PathIdleTimeout); the remedies RemedyKeepalive,
	// RemedyUserTimeout and RemedyFixReader point to it. Zero for the
	// tunables' findings, and where no keepalive values can keep the path.
	Arm proc.Keepalive
}

// Summary is what an audit saw and found.
type Summary struct {
	// Tunables are the namespace's, as Run read them; HaveTunables says it did.
	Tunables     sysctl.Tunables
	HaveTunables bool
	// Counts counts the sockets checked, by state.
	Counts diag.Counts
	// Findings counts findings per code and severity.
	Findings map[Code]*[Critical + 1]int
	// Worst is the highest severity found; 0 when nothing was.
	Worst Severity
	// Duration is how long Run took.
	Duration time.Duration
	// Interrupted says the run's context ended before the dump did: the counts
	// cover the sockets seen until then, and peer limits were not judged.
	Interrupted bool
}

// Total is how many findings there were of code, of any severity.
func (s Summary) Total(c Code) int {
	n := 0
	if v := s.Findings[c]; v != nil {
		for _, k := range v {
			n += k
		}
	}
	return n
}

// Severities are the severities a code's findings can have.
func (c Code) Severities() []Severity {
	switch c {
	case HalfOpenKeepalive, HalfOpenRetrans:
		return []Severity{Critical}
	case ListenQueueFull:
		return []Severity{Warning, Critical}
	}
	return []Severity{Warning}
}

// Tunable reports whether c's findings are about the namespace's tunables
// rather than about one socket (such findings carry no socket).
func (c Code) Tunable() bool {
	for _, r := range tunableRules {
		if r.code == c {
			return true
		}
	}
	return false
}

// HoldsPeer reports whether a socket in state st counts toward its peer's
// connections, for peer_limit_exceeded and tcpkeep kill --max-per-peer: not
// listeners, TIME_WAIT, closed or still connecting sockets.
func HoldsPeer(st diag.State) bool { return connState(st) }

// PathTimeout is the path timeout keepalive_after_path_timeout checks
// against and where it comes from; 0 when there is none.
func (c *Config) PathTimeout() (time.Duration, Source) {
	if c.PathIdleTimeout > 0 {
		return c.PathIdleTimeout, SourceConfig
	}
	if c.Tunables.ConntrackEstablished != nil && *c.Tunables.ConntrackEstablished > 0 {
		return *c.Tunables.ConntrackEstablished, SourceConntrack
	}
	return 0, SourceNone
}

// Auditor checks sockets one at a time. It is not safe for concurrent use.
type Auditor struct {
	cfg     Config
	sum     Summary
	peers   *Peers
	pathTO  time.Duration
	pathSrc Source
	sock    sockCtx
	only    map[Code]bool
	arm     proc.Keepalive
	f       Finding // the finding being built, handed to emit
}

// New makes an Auditor for cfg.
func New(cfg Config) *Auditor {
	a := &Auditor{cfg: cfg, sum: Summary{Tunables: cfg.Tunables, HaveTunables: true, Findings: map[Code]*[Critical + 1]int{}}}
	a.pathTO, a.pathSrc = cfg.PathTimeout()
	a.arm = armValues(cfg)
	if cfg.MaxPerPeer > 0 {
		a.peers = NewPeers(cfg.MaxPerPeer)
	}
	if len(cfg.Only) > 0 {
		a.only = map[Code]bool{}
		for _, c := range cfg.Only {
			a.only[c] = true
		}
	}
	return a
}

// Summary is what the audit has counted so far.
func (a *Auditor) Summary() Summary { return a.sum }

func (a *Auditor) count(f *Finding) {
	v := a.sum.Findings[f.Code]
	if v == nil {
		v = new([Critical + 1]int)
		a.sum.Findings[f.Code] = v
	}
	v[f.Severity]++
	if f.Severity > a.sum.Worst {
		a.sum.Worst = f.Severity
	}
}

// Tunables checks the namespace's tunables: call it once per audit. The
// Finding handed to emit is valid during the call only.
func (a *Auditor) Tunables(emit func(*Finding)) {
	for _, r := range tunableRules {
		a.f = Finding{Code: r.code}
		if r.check(a.cfg.Tunables, &a.f) {
			a.count(&a.f)
			emit(&a.f)
		}
	}
}

// Check checks one socket and emits a finding for every rule it breaks. s may be
// reused by the caller once Check returns: findings carry their own copy. The
// Finding handed to emit is valid during the call only; its Socket, Owner and
// Opts stay valid.
func (a *Auditor) Check(s *diag.Socket, emit func(*Finding)) {
	a.sum.Counts.Add(s)
	if a.peers != nil {
		a.peers.Add(s)
	}
	c := &a.sock
	c.reset(a, s)
	for _, r := range socketRules {
		if a.only != nil && !a.only[r.code] {
			continue
		}
		a.f = Finding{Code: r.code}
		if !r.check(c, s, &a.f) {
			continue
		}
		a.f.Socket = c.copy()
		// A flagged socket's record carries its owner and, where they are
		// read, its real options.
		a.f.Holder, a.f.Owner = c.holder()
		a.f.Arm = a.arm
		if _, ok := c.sockopts(); ok {
			a.f.Opts = c.optsCopy()
		}
		a.count(&a.f)
		emit(&a.f)
	}
}

// Finish emits what needs the whole dump (peer_limit_exceeded): call it once,
// after the last socket.
func (a *Auditor) Finish(emit func(*Finding)) {
	if a.peers == nil {
		return
	}
	for _, p := range a.peers.Over() {
		a.f = Finding{Code: PeerLimitExceeded, Severity: Warning, Socket: p.First, Count: p.N, Limit: a.cfg.MaxPerPeer, Remedy: RemedyLimitPeer}
		var c sockCtx
		c.reset(a, p.First)
		a.f.Holder, a.f.Owner = c.holder()
		a.count(&a.f)
		emit(&a.f)
	}
}

// sockCtx is what rules know about the socket being checked: its owner and
// options, looked up at most once and only when a rule asks.
type sockCtx struct {
	a                   *Auditor
	s                   *diag.Socket
	cp                  *diag.Socket
	ownerDone, optsDone bool
	ownerOK, optsOK     bool
	ownerV              proc.Owner
	optsV               proc.SockOpts
	ownerP              *proc.Owner
	optsP               *proc.SockOpts
}

func (c *sockCtx) reset(a *Auditor, s *diag.Socket) { *c = sockCtx{a: a, s: s} }

// copy is one copy of the socket shared by all its findings.
func (c *sockCtx) copy() *diag.Socket {
	if c.cp == nil {
		cp := *c.s
		c.cp = &cp
	}
	return c.cp
}

func (c *sockCtx) owner() (proc.Owner, bool) {
	if !c.ownerDone {
		c.ownerDone = true
		if c.a.cfg.Owners != nil && c.s.Inode != 0 {
			c.ownerV, c.ownerOK = c.a.cfg.Owners.Owner(c.s.Inode)
		}
	}
	return c.ownerV, c.ownerOK
}

func (c *sockCtx) sockopts() (proc.SockOpts, bool) {
	if !c.optsDone {
		c.optsDone = true
		if c.a.cfg.Owners != nil && c.s.Inode != 0 {
			c.optsOK = c.a.cfg.Owners.Options(c.s.Inode, &c.optsV)
		}
	}
	return c.optsV, c.optsOK
}

// optsCopy is one copy of the options shared by all the socket's findings.
func (c *sockCtx) optsCopy() *proc.SockOpts {
	if c.optsP == nil {
		o := c.optsV
		c.optsP = &o
	}
	return c.optsP
}

// holder says who holds the socket, and the owner, copied once.
func (c *sockCtx) holder() (Holder, *proc.Owner) {
	if c.a.cfg.Owners == nil {
		return HolderUnknown, nil
	}
	if o, ok := c.owner(); ok {
		if c.ownerP == nil {
			c.ownerP = &o
		}
		return HolderProcess, c.ownerP
	}
	// Only a socket with a file has an inode: one the application has closed
	// has none any more, one still in a listener's accept queue none yet.
	switch {
	case Orphan(c.s):
		return HolderOrphan, nil
	case c.s.Inode == 0 && (c.s.State == diag.StateEstablished || c.s.State == diag.StateCloseWait):
		return HolderAcceptQueue, nil
	}
	return HolderNotFound, nil
}
