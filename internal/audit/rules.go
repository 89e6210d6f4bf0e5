package audit

import (
	"time"

	"github.com/tcpkeep/tcpkeep/diag"
	"github.com/tcpkeep/tcpkeep/sysctl"
)

// A socketRule looks at one socket and says whether it is flagged, filling in
// the finding's severity and facts. Rules must not keep s.
type socketRule struct {
	code  Code
	check func(c *sockCtx, s *diag.Socket, f *Finding) bool
}

// socketRules are the per-socket rules, in DESIGN.md's order.
var socketRules = []socketRule{
	{HalfOpenKeepalive, halfOpenKeepalive},
	{HalfOpenRetrans, halfOpenRetrans},
	{ZeroWindowStall, zeroWindowStall},
	{IdleNoKeepalive, idleNoKeepalive},
	{IdleOverlong, idleOverlong},
	{KeepaliveAfterPathTimeout, keepaliveAfterPathTimeout},
	{CloseWaitStale, closeWaitStale},
	{ListenQueueFull, listenQueueFull},
}

// A tunableRule looks at the namespace's tunables.
type tunableRule struct {
	code  Code
	check func(t sysctl.Tunables, f *Finding) bool
}

var tunableRules = []tunableRule{
	{SysctlKeepaliveDefault, sysctlKeepaliveDefault},
	{SysctlKeepaliveAfterConntrack, sysctlKeepaliveAfterConntrack},
}

// halfOpenKeepalive: the keepalive timer is armed and at least one probe went
// unanswered. A live peer answers the first probe, which resets the count.
func halfOpenKeepalive(c *sockCtx, s *diag.Socket, f *Finding) bool {
	if s.Timer != diag.TimerKeepalive || s.TimerRetrans < 1 || !liveState(s.State) {
		return false
	}
	p := c.keepaliveParams()
	n := int(s.TimerRetrans)
	// When the timer fires with probes_out >= cnt the kernel resets the
	// connection; otherwise it sends one more probe and waits intvl.
	drop := s.TimerExpires
	if n < p.Probes {
		drop += time.Duration(p.Probes-n) * p.Intvl
	}
	f.Severity, f.Remedy = Critical, RemedyClose
	f.Count, f.Value = n, recvSilence(s)
	f.Keepalive, f.ValueFrom = p, c.paramsFrom()
	f.DropIn, f.DropBy = drop, DropKeepaliveProbes
	if _, real := c.sockopts(); !real && n > p.Probes {
		// More probes out than the namespace allows: the socket sets its own
		// TCP_KEEPCNT, so the namespace's values cannot say when it ends.
		f.DropIn, f.DropBy = 0, DropUnknown
	}
	return true
}

// halfOpenRetrans: data is in flight and the retransmission timer has fired at
// least RetransThreshold times in a row: the peer acknowledges nothing.
func halfOpenRetrans(c *sockCtx, s *diag.Socket, f *Finding) bool {
	th := c.a.cfg.RetransThreshold
	if th < 1 {
		th = DefaultRetransThreshold
	}
	if s.Timer != diag.TimerRetransmit || int(s.TimerRetrans) < th || !liveState(s.State) {
		return false
	}
	silent := s.Info.LastAckRecv
	f.Severity, f.Remedy = Critical, RemedyUserTimeout
	f.Count, f.Limit, f.Value = int(s.TimerRetrans), th, silent
	if o, ok := c.sockopts(); ok && o.UserTimeout > 0 {
		f.DropBy, f.DropAfter, f.DropIn = DropUserTimeout, o.UserTimeout, left(o.UserTimeout, silent)
	} else if Orphan(s) {
		// The application closed it: tcp_orphan_retries governs, not tcp_retries2,
		// and there is no application left to set anything in.
		n := 0
		if v := c.a.cfg.Tunables.OrphanRetries; v != nil {
			n = *v
		}
		r := sysctl.OrphanRetries(n)
		g := sysctl.RetransGiveUp(r)
		f.DropBy, f.Retries, f.DropAfter, f.DropIn = DropOrphanRetries, r, g, left(g, silent)
		f.Remedy = RemedyClose
	} else if r2 := c.a.cfg.Tunables.Retries2; r2 != nil {
		g := sysctl.RetransGiveUp(*r2)
		f.DropBy, f.Retries, f.DropAfter, f.DropIn = DropRetries2, *r2, g, left(g, silent)
	}
	return true
}

// zeroWindowStall: the persist timer is pending (the peer advertises a zero
// window) and at least ZeroWindowProbes probes were sent. The kernel resets the
// unanswered count (timer_retrans) on every answer, so a live peer that stopped
// reading shows its probes in the backoff, which only an opening window resets.
func zeroWindowStall(c *sockCtx, s *diag.Socket, f *Finding) bool {
	if s.Timer != diag.TimerPersist {
		return false
	}
	probes := max(int(s.TimerRetrans), int(s.Info.Backoff))
	if probes < ZeroWindowProbes {
		return false
	}
	f.Severity, f.Remedy = Warning, RemedyFixReader
	f.Count, f.Limit, f.Value = probes, ZeroWindowProbes, s.Info.LastDataSent
	return true
}

// idleNoKeepalive: an ESTABLISHED connection without keepalive has been idle for
// MaxIdle: if its peer died, nothing would ever notice.
func idleNoKeepalive(c *sockCtx, s *diag.Socket, f *Finding) bool {
	max := c.a.cfg.MaxIdle
	if s.State != diag.StateEstablished || max <= 0 || s.Info.Len == 0 {
		return false
	}
	idle := s.Idle()
	if idle < max {
		return false
	}
	armed, known := s.KeepaliveArmed()
	if !known {
		// A pending retransmit or zero-window timer hides keepalive; only the
		// owner's socket option can tell.
		o, ok := c.sockopts()
		if !ok {
			return false
		}
		armed = o.KeepaliveOn
	}
	if armed {
		return false
	}
	f.Severity, f.Remedy = Warning, RemedyKeepalive
	f.Value, f.Threshold = idle, max
	return true
}

// idleOverlong: the operator's policy, no reads or writes for IdleLimit.
func idleOverlong(c *sockCtx, s *diag.Socket, f *Finding) bool {
	lim := c.a.cfg.IdleLimit
	if lim <= 0 || s.State != diag.StateEstablished || s.Info.Len == 0 {
		return false
	}
	idle := s.Idle()
	if idle < lim {
		return false
	}
	f.Severity, f.Remedy = Warning, RemedyClose
	f.Value, f.Threshold = idle, lim
	return true
}

// keepaliveAfterPathTimeout: keepalive is armed, but its first probe comes after
// the path (PathIdleTimeout, or local conntrack) has forgotten the flow.
func keepaliveAfterPathTimeout(c *sockCtx, s *diag.Socket, f *Finding) bool {
	path, src := c.a.pathTO, c.a.pathSrc
	if path <= 0 || s.State != diag.StateEstablished {
		return false
	}
	idle, from, ok := c.effectiveKeepIdle()
	if !ok || idle <= path {
		return false
	}
	f.Severity, f.Remedy = Warning, RemedyTune
	if from == SourceSocket {
		f.Remedy = RemedySocketKeepidle
	}
	f.Value, f.ValueFrom, f.Threshold, f.ThresholdFrom = idle, from, path, src
	return true
}

// closeWaitStale: the peer closed its end long ago and the application never
// closed its own: a descriptor leak in the making.
func closeWaitStale(c *sockCtx, s *diag.Socket, f *Finding) bool {
	after := c.a.cfg.CloseWaitAfter
	if s.State != diag.StateCloseWait || s.Info.Len == 0 {
		return false
	}
	idle := s.Idle()
	if idle < after {
		return false
	}
	f.Severity, f.Remedy = Warning, RemedyFixClose
	f.Value, f.Threshold = idle, after
	return true
}

// listenQueueFull: the accept queue of a listener is at its backlog (critical)
// or at 80% of it (warning): new connections are dropped while the application
// does not accept.
func listenQueueFull(c *sockCtx, s *diag.Socket, f *Finding) bool {
	if s.State != diag.StateListen || s.RecvQ == 0 {
		return false
	}
	q, backlog := uint64(s.RecvQ), uint64(s.SendQ)
	switch {
	case q >= backlog:
		f.Severity = Critical
	case q*5 >= backlog*4:
		f.Severity = Warning
	default:
		return false
	}
	f.Remedy = RemedyAcceptFaster
	f.Count, f.Limit = int(q), int(backlog)
	return true
}

// sysctlKeepaliveDefault: tcp_keepalive_time is still the kernel's 2 hours.
func sysctlKeepaliveDefault(t sysctl.Tunables, f *Finding) bool {
	if t.Time != sysctl.Defaults.Time {
		return false
	}
	f.Severity, f.Remedy = Warning, RemedyTune
	f.Value, f.Keepalive, f.ValueFrom = t.Time, t.Keepalive, SourceNamespace
	return true
}

// sysctlKeepaliveAfterConntrack: local conntrack forgets idle flows before the
// first keepalive probe.
func sysctlKeepaliveAfterConntrack(t sysctl.Tunables, f *Finding) bool {
	ct := t.ConntrackEstablished
	if ct == nil || t.Time <= *ct {
		return false
	}
	f.Severity, f.Remedy = Warning, RemedyTune
	f.Value, f.ValueFrom, f.Threshold, f.ThresholdFrom = t.Time, SourceNamespace, *ct, SourceConntrack
	f.Keepalive = t.Keepalive
	return true
}

// keepaliveParams are the keepalive values a socket uses: its own where they
// were read, else the namespace's (which it may override unseen).
func (c *sockCtx) keepaliveParams() sysctl.Keepalive {
	if o, ok := c.sockopts(); ok && o.Keepalive.Intvl > 0 && o.Keepalive.Probes > 0 {
		return o.Keepalive
	}
	return c.a.cfg.Tunables.Keepalive
}

// paramsFrom says where keepaliveParams came from.
func (c *sockCtx) paramsFrom() Source {
	if o, ok := c.sockopts(); ok && o.Keepalive.Intvl > 0 && o.Keepalive.Probes > 0 {
		return SourceSocket
	}
	return SourceNamespace
}

// effectiveKeepIdle is how long the socket's connection stays silent before
// keepalive's first probe: the owner's TCP_KEEPIDLE where it was read;
// otherwise inferred from the armed timer (it fires keepidle after the last
// packet received, so expiry + time since that packet; a lower bound if data
// arrived since the timer was last armed); otherwise the sysctl. ok is false
// when keepalive is off or cannot be told.
func (c *sockCtx) effectiveKeepIdle() (d time.Duration, from Source, ok bool) {
	s := c.s
	if o, ok := c.sockopts(); ok {
		if !o.KeepaliveOn {
			return 0, SourceNone, false
		}
		if o.Keepalive.Time > 0 {
			return o.Keepalive.Time, SourceSocket, true
		}
	}
	armed, known := s.KeepaliveArmed()
	if !known || !armed {
		return 0, SourceNone, false
	}
	if s.Timer == diag.TimerKeepalive && s.TimerRetrans > 0 {
		// Probes are out: the timer now counts the interval, not the idle
		// time, and the sysctl would be a guess (the socket may set its own).
		// half_open_keepalive speaks for this socket.
		return 0, SourceNone, false
	}
	if s.Timer == diag.TimerKeepalive && s.Info.Len > 0 {
		d := (s.TimerExpires + recvSilence(s)).Round(time.Second)
		return d, SourceTimer, true
	}
	return c.a.cfg.Tunables.Time, SourceNamespace, true
}

// Orphan reports a socket the application has closed while the kernel still
// finishes the connection. It has no file, so no inode.
func Orphan(s *diag.Socket) bool {
	if s.Inode != 0 {
		return false
	}
	switch s.State {
	case diag.StateFinWait1, diag.StateFinWait2, diag.StateClosing, diag.StateLastAck:
		return true
	}
	return false
}

// recvSilence is how long nothing was received, as keepalive counts it: the
// later of the last data and the last ACK.
func recvSilence(s *diag.Socket) time.Duration {
	return min(s.Info.LastDataRecv, s.Info.LastAckRecv)
}

// liveState: states whose connection the kernel still times, by keepalive probes
// or by retransmissions: not FIN_WAIT2 (where sk_timer is the FIN_WAIT2
// timeout), not the handshake (tcp_syn_retries), not states without a connection.
func liveState(st diag.State) bool {
	switch st {
	case diag.StateEstablished, diag.StateCloseWait, diag.StateFinWait1, diag.StateClosing, diag.StateLastAck:
		return true
	}
	return false
}

// connState: states that hold a connection from a peer, for per-peer counting.
func connState(st diag.State) bool {
	switch st {
	case diag.StateListen, diag.StateTimeWait, diag.StateClose, diag.StateSynSent:
		return false
	}
	return true
}

func left(total, spent time.Duration) time.Duration {
	if spent >= total {
		return 0
	}
	return total - spent
}
