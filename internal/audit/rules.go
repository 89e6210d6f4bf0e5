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
	sk, real, _ := c.clocks()
	n := int(s.TimerRetrans)
	f.Severity, f.Remedy = Critical, RemedyClose
	f.Count, f.Value = n, recvSilence(s)
	f.Keepalive, f.ValueFrom = sk.Keepalive, SourceNamespace
	if real {
		f.ValueFrom = SourceSocket
	}
	if !real && n > sk.Probes {
		// More probes out than the namespace allows: the socket sets its own
		// TCP_KEEPCNT (or TCP_USER_TIMEOUT), so the namespace's values cannot
		// say when it ends.
		return true
	}
	// tcp_keepalive_timer, as sysctl's model follows it.
	f.setDrop(sk.KeepaliveDrop(observed(s)))
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
	f.Severity, f.Remedy = Critical, RemedyUserTimeout
	f.Count, f.Limit, f.Value = int(s.TimerRetrans), th, s.Info.LastAckRecv
	sk, _, retries2 := c.clocks()
	switch {
	case sk.UserTimeout > 0:
	case sk.Orphan:
		// The application closed it: tcp_orphan_retries governs, not
		// tcp_retries2, and there is no application left to set anything in.
		f.Retries, f.Remedy = sysctl.OrphanRetries(sk.OrphanRetries), RemedyClose
	case retries2:
		f.Retries = sk.Retries2
	default:
		return true
	}
	// tcp_write_timeout, counting from the first retransmission: the idle
	// time before the data was sent does not count.
	f.setDrop(sk.RetransDrop(observed(s)))
	return true
}

// zeroWindowStall: the peer advertises a zero window and the zero-window
// probes pile up: the persist timer with at least ZeroWindowProbes probes sent,
// or the retransmit timer's zero-window path (data in flight, snd_wnd 0), where
// the probes are retransmissions that show only in the climbing backoff. The
// kernel resets the unanswered count (timer_retrans) on every answer, so a
// live peer that stopped reading shows its probes in the backoff, which only
// an opening window resets.
func zeroWindowStall(c *sockCtx, s *diag.Socket, f *Finding) bool {
	if !liveState(s.State) {
		return false
	}
	var probes int
	switch {
	case s.Timer == diag.TimerPersist:
		probes = max(int(s.TimerRetrans), int(s.Info.Backoff))
	case zeroWindowRetrans(s):
		probes = int(s.Info.Backoff)
	default:
		return false
	}
	if probes < ZeroWindowProbes {
		return false
	}
	sk, _, retries2 := c.clocks()
	var drop sysctl.Drop
	switch {
	case s.Timer == diag.TimerPersist:
		drop = sk.PersistDrop(observed(s))
		// The window closed about when the last data went out.
		f.Value = s.Info.LastDataSent
	case sk.Orphan:
		// tcp_retransmit_timer's zero-window path is not for orphans: they
		// retransmit and time out as any other.
		drop = sk.RetransDrop(observed(s))
		f.Value = drop.Since
	default:
		drop = sk.ZeroWindowRetransDrop(observed(s))
		f.Value = drop.Since
	}
	f.Severity, f.Remedy = Warning, RemedyFixReader
	f.Count, f.Limit = probes, ZeroWindowProbes
	if drop.Cause == sysctl.DropRetries2 && !retries2 {
		return true // tcp_retries2 is unknown, so when the kernel gives up is too
	}
	f.setDrop(drop)
	switch drop.Cause {
	case sysctl.DropRetries2:
		f.Retries = sk.Retries2
	case sysctl.DropOrphanRetries:
		f.Retries = sysctl.OrphanRetries(sk.OrphanRetries)
	}
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

// keepaliveAfterPathTimeout: keepalive is armed, but its cadence, max(idle
// time, interval) of its effective values, does not stay under the path's idle
// timeout (PathIdleTimeout, or local conntrack) less sysctl.Margin for timers
// that fire late: the path forgets the idle flow between probes.
func keepaliveAfterPathTimeout(c *sockCtx, s *diag.Socket, f *Finding) bool {
	path, src := c.a.pathTO, c.a.pathSrc
	if path <= 0 || s.State != diag.StateEstablished {
		return false
	}
	cadence, k, from, ok := c.effectiveCadence()
	if !ok || cadence <= path-sysctl.Margin(path) {
		return false
	}
	f.Severity, f.Remedy = Warning, RemedyTune
	if from == SourceSocket {
		f.Remedy = RemedySocketKeepidle
	}
	f.Value, f.ValueFrom, f.Threshold, f.ThresholdFrom = cadence, from, path, src
	f.Keepalive = k
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

// sysctlKeepaliveAfterConntrack: keepalive's cadence, max(tcp_keepalive_time,
// tcp_keepalive_intvl), does not stay under the local conntrack timeout less
// sysctl.Margin for timers that fire late: conntrack forgets idle flows
// between probes.
func sysctlKeepaliveAfterConntrack(t sysctl.Tunables, f *Finding) bool {
	ct := t.ConntrackEstablished
	if ct == nil || t.Cadence() <= *ct-sysctl.Margin(*ct) {
		return false
	}
	f.Severity, f.Remedy = Warning, RemedyTune
	f.Value, f.ValueFrom, f.Threshold, f.ThresholdFrom = t.Cadence(), SourceNamespace, *ct, SourceConntrack
	f.Keepalive = t.Keepalive
	return true
}

// setDrop fills in the finding's drop facts from the model's prediction.
func (f *Finding) setDrop(d sysctl.Drop) {
	if d.Cause == sysctl.DropNone {
		return
	}
	f.DropIn, f.DropAfter, f.DropLimit, f.DropBy = d.In, d.Since+d.In, d.Limit, d.Cause
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
