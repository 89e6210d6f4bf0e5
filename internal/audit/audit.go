package audit

import (
	"fmt"
	"net/netip"
	"sort"
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

// Code names a rule: the finding codes of DESIGN.md and README.
type Code string

// The finding codes.
const (
	HalfOpenKeepalive            Code = "half_open_keepalive"
	HalfOpenRetrans              Code = "half_open_retrans"
	ZeroWindowStall              Code = "zero_window_stall"
	IdleNoKeepalive              Code = "idle_no_keepalive"
	IdleOverlong                 Code = "idle_overlong"
	KeepaliveAfterPathTimeout    Code = "keepalive_after_path_timeout"
	CloseWaitStale               Code = "close_wait_stale"
	PeerLimitExceeded            Code = "peer_limit_exceeded"
	ListenQueueFull              Code = "listen_queue_full"
	SysctlKeepaliveDefault       Code = "sysctl_keepalive_default"
	SysctlKeepaliveAfterConntrak Code = "sysctl_keepalive_after_conntrack"
)

// Codes lists every code, in the order of DESIGN.md's table.
var Codes = []Code{
	HalfOpenKeepalive, HalfOpenRetrans, ZeroWindowStall, IdleNoKeepalive, IdleOverlong,
	KeepaliveAfterPathTimeout, CloseWaitStale, PeerLimitExceeded, ListenQueueFull,
	SysctlKeepaliveDefault, SysctlKeepaliveAfterConntrak,
}

// Defaults of the thresholds (DESIGN.md's findings table).
const (
	DefaultMaxIdle          = 10 * time.Minute
	DefaultCloseWaitAfter   = 60 * time.Second
	DefaultRetransThreshold = 3
	// ZeroWindowProbes is how many unanswered zero-window probes make a stall.
	ZeroWindowProbes = 3
)

// Owner is the process holding a socket.
type Owner struct {
	PID  int
	Comm string
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
	// Tunables are the namespace's, from sysctl.Read.
	Tunables sysctl.Tunables
	// Owner finds the process holding a socket (by inode), for the messages of
	// flagged sockets; nil leaves owners out.
	Owner func(s *diag.Socket) (Owner, bool)
	// Sockopts reads a socket's real options from its owner; nil means they are
	// inferred from what sock_diag shows and the tunables.
	Sockopts func(s *diag.Socket) (proc.SockOpts, bool)
	// Only, when not empty, limits the socket rules to these codes (tcpkeep
	// kill --finding): the others are not checked, so they cost no owner lookup.
	Only []Code
}

// DefaultConfig is Config with DESIGN.md's defaults and the given tunables.
func DefaultConfig(t sysctl.Tunables) Config {
	return Config{MaxIdle: DefaultMaxIdle, CloseWaitAfter: DefaultCloseWaitAfter, RetransThreshold: DefaultRetransThreshold, Tunables: t}
}

// Finding is one thing wrong, and what to do about it.
type Finding struct {
	Code     Code
	Severity Severity
	// Message is one sentence a person can act on, with the numbers.
	Message string
	// Socket is a copy of the flagged socket; nil for findings about the tunables.
	Socket *diag.Socket
	// Owner is the process holding Socket, when it was resolved.
	Owner *Owner
	// Sockopts are Socket's real options, when they were read.
	Sockopts *proc.SockOpts
	// DropIn is when the kernel will drop Socket, counted from when the dump
	// showed it, as sysctl's model of its clocks predicts; 0 when it will not
	// or cannot be told.
	DropIn time.Duration
	// DropBy is the limit that drops it; sysctl.DropNone with DropIn 0.
	DropBy sysctl.DropCause
}

// Summary counts what an audit found. The sockets themselves are counted by
// the caller, which sees every one of them.
type Summary struct {
	// Findings counts findings per code and severity.
	Findings map[Code]*[Critical + 1]int
	// Worst is the highest severity found; 0 when nothing was.
	Worst Severity
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
func (c *Config) PathTimeout() (time.Duration, string) {
	if c.PathIdleTimeout > 0 {
		return c.PathIdleTimeout, "--path-idle-timeout"
	}
	if c.Tunables.ConntrackEstablished != nil && *c.Tunables.ConntrackEstablished > 0 {
		return *c.Tunables.ConntrackEstablished, "nf_conntrack_tcp_timeout_established"
	}
	return 0, ""
}

// peerKey is one remote address connected to one local port.
type peerKey struct {
	remote netip.Addr
	port   uint16
}

// peerCount is how many connections a peer holds; first is the connection that
// went over the limit, kept only for peers that did.
type peerCount struct {
	n     int
	first *diag.Socket
}

// Auditor checks sockets one at a time. It is not safe for concurrent use.
type Auditor struct {
	cfg     Config
	sum     Summary
	peers   map[peerKey]*peerCount
	pathTO  time.Duration
	pathSrc string
	sock    sockCtx
	only    map[Code]bool
}

// New makes an Auditor for cfg.
func New(cfg Config) *Auditor {
	a := &Auditor{cfg: cfg, sum: Summary{Findings: map[Code]*[Critical + 1]int{}}}
	a.pathTO, a.pathSrc = cfg.PathTimeout()
	if cfg.MaxPerPeer > 0 {
		a.peers = map[peerKey]*peerCount{}
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

func (a *Auditor) count(f Finding) {
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

// Tunables checks the namespace's tunables: call it once per audit.
func (a *Auditor) Tunables(emit func(Finding)) {
	for _, r := range tunableRules {
		if sev, msg, ok := r.check(a.cfg.Tunables); ok {
			f := Finding{Code: r.code, Severity: sev, Message: msg}
			a.count(f)
			emit(f)
		}
	}
}

// Check checks one socket and emits a finding for every rule it breaks. s may be
// reused by the caller once Check returns: findings carry their own copy.
func (a *Auditor) Check(s *diag.Socket, emit func(Finding)) {
	a.countPeer(s)
	c := &a.sock
	c.reset(a, s)
	for _, r := range socketRules {
		if a.only != nil && !a.only[r.code] {
			continue
		}
		c.drop = sysctl.Drop{}
		sev, msg, ok := r.check(c, s)
		if !ok {
			continue
		}
		f := Finding{Code: r.code, Severity: sev, Message: msg, Socket: c.copy()}
		if c.drop.Cause != sysctl.DropNone {
			f.DropIn, f.DropBy = c.drop.In, c.drop.Cause
		}
		// A flagged socket's record carries its owner and, with --sockopts,
		// its real options.
		c.owner()
		c.sockopts()
		if c.ownerOK {
			o := c.ownerV
			f.Owner = &o
		}
		if c.optsOK {
			o := c.optsV
			f.Sockopts = &o
		}
		a.count(f)
		emit(f)
	}
}

// Finish emits what needs the whole dump (peer_limit_exceeded): call it once,
// after the last socket.
func (a *Auditor) Finish(emit func(Finding)) {
	if a.peers == nil {
		return
	}
	var over []peerKey
	for k, p := range a.peers {
		if p.first != nil {
			over = append(over, k)
		}
	}
	sort.Slice(over, func(i, j int) bool {
		pi, pj := a.peers[over[i]], a.peers[over[j]]
		if pi.n != pj.n {
			return pi.n > pj.n
		}
		return over[i].remote.Less(over[j].remote) || over[i].remote == over[j].remote && over[i].port < over[j].port
	})
	for _, k := range over {
		p := a.peers[k]
		f := peerLimitFinding(a.cfg.MaxPerPeer, k, p)
		if a.cfg.Owner != nil {
			if o, ok := a.cfg.Owner(p.first); ok {
				f.Owner = &o
			}
		}
		a.count(f)
		emit(f)
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
	ownerV              Owner
	optsV               proc.SockOpts
	// drop is what the rule being checked predicts: when the kernel drops
	// the socket.
	drop sysctl.Drop
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

func (c *sockCtx) owner() (Owner, bool) {
	if !c.ownerDone {
		c.ownerDone = true
		if c.a.cfg.Owner != nil && c.s.Inode != 0 {
			c.ownerV, c.ownerOK = c.a.cfg.Owner(c.s)
		}
	}
	return c.ownerV, c.ownerOK
}

func (c *sockCtx) sockopts() (proc.SockOpts, bool) {
	if !c.optsDone {
		c.optsDone = true
		if c.a.cfg.Sockopts != nil && c.s.Inode != 0 {
			c.optsV, c.optsOK = c.a.cfg.Sockopts(c.s)
		}
	}
	return c.optsV, c.optsOK
}

// ownerText names the owner for a message: " (held by nginx, pid 812)".
func (c *sockCtx) ownerText() string {
	if c.a.cfg.Owner == nil {
		return ""
	}
	if o, ok := c.owner(); ok {
		return fmt.Sprintf(" (held by %s, pid %d)", o.Comm, o.PID)
	}
	// Only a socket with a file has an inode: one the application has closed
	// has none any more, one still in a listener's accept queue none yet.
	if orphan(c.s) {
		return " (orphaned: the application closed it, the kernel finishes it alone)"
	}
	if c.s.Inode == 0 && (c.s.State == diag.StateEstablished || c.s.State == diag.StateCloseWait) {
		return " (not accepted yet: it waits in its listener's accept queue)"
	}
	return " (owner not found: the process may be gone or in another pid namespace)"
}
