package audit

import (
	"fmt"
	"time"

	"github.com/tcpkeep/tcpkeep/diag"
	"github.com/tcpkeep/tcpkeep/sysctl"
)

// A socketRule looks at one socket and says whether, how badly and why it is
// flagged. Rules must not keep s.
type socketRule struct {
	code  Code
	check func(c *sockCtx, s *diag.Socket) (Severity, string, bool)
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
	check func(t sysctl.Tunables) (Severity, string, bool)
}

var tunableRules = []tunableRule{
	{SysctlKeepaliveDefault, sysctlKeepaliveDefault},
	{SysctlKeepaliveAfterConntrak, sysctlKeepaliveAfterConntrack},
}

// halfOpenKeepalive: the keepalive timer is armed and at least one probe went
// unanswered. A live peer answers the first probe, which resets the count.
func halfOpenKeepalive(c *sockCtx, s *diag.Socket) (Severity, string, bool) {
	if s.Timer != diag.TimerKeepalive || s.TimerRetrans < 1 || !probedState(s.State) {
		return 0, "", false
	}
	sk, real, _ := c.clocks()
	n := int(s.TimerRetrans)
	// tcp_keepalive_timer, as sysctl's model follows it.
	c.drop = sk.KeepaliveDrop(observed(s))
	var when string
	switch {
	case sk.UserTimeout > 0:
		when = fmt.Sprintf("TCP_USER_TIMEOUT %s drops it in about %s (at the first probe once nothing was received for that long; TCP_KEEPCNT no longer counts)", dur(sk.UserTimeout), dur(c.drop.In))
	case real:
		when = fmt.Sprintf("the kernel drops it in about %s (after %d probes %s apart, the socket's TCP_KEEPINTVL and TCP_KEEPCNT)", dur(c.drop.In), sk.Probes, dur(sk.Intvl))
	case n > sk.Probes:
		// More probes out than the namespace allows: the socket sets its own
		// TCP_KEEPCNT (or TCP_USER_TIMEOUT), so the namespace's values cannot
		// say when it ends.
		c.drop = sysctl.Drop{}
		when = "when the kernel drops it depends on the socket's own TCP_KEEPCNT (--sockopts reads it)"
	default:
		when = fmt.Sprintf("the kernel drops it in about %s (after %d probes %s apart, the namespace's tunables, unless the socket sets its own: --sockopts reads them)", dur(c.drop.In), sk.Probes, dur(sk.Intvl))
	}
	return Critical, fmt.Sprintf(
		"%s to %s: %d keepalive %s unanswered and nothing received for %s, the peer is gone (crashed, cut off, or a middlebox forgot the flow); %s%s; close it now with tcpkeep kill --finding half_open_keepalive",
		s.Local, s.Remote, n, plural(n, "probe", "probes"), dur(recvSilence(s)), when, c.ownerText()), true
}

// halfOpenRetrans: data is in flight and the retransmission timer has fired at
// least --retrans-threshold times in a row: the peer acknowledges nothing.
func halfOpenRetrans(c *sockCtx, s *diag.Socket) (Severity, string, bool) {
	th := c.a.cfg.RetransThreshold
	if th < 1 {
		th = DefaultRetransThreshold
	}
	if s.Timer != diag.TimerRetransmit || int(s.TimerRetrans) < th || !dataState(s.State) {
		return 0, "", false
	}
	silent := s.Info.LastAckRecv
	sk, _, retries2 := c.clocks()
	// tcp_write_timeout, counting from the first retransmission: the idle
	// time before the data was sent does not count.
	d := sk.RetransDrop(observed(s))
	var until string
	switch {
	case sk.UserTimeout > 0:
		c.drop = d
		until = fmt.Sprintf("TCP_USER_TIMEOUT gives up in about %s (%s after the first retransmission, %s ago)", dur(d.In), dur(sk.UserTimeout), dur(d.Since))
	case sk.Orphan:
		// The application closed it: tcp_orphan_retries governs, not tcp_retries2.
		c.drop = d
		r := sysctl.OrphanRetries(sk.OrphanRetries)
		until = fmt.Sprintf("the application has closed it, so tcp_orphan_retries (%d retransmissions) gives up in about %s (%s after the first retransmission)", r, dur(d.In), dur(d.Since+d.In))
	case retries2:
		c.drop = d
		until = fmt.Sprintf("tcp_retries2 %d gives up in about %s (%s after the first retransmission, longer on a slow path)", sk.Retries2, dur(d.In), dur(d.Since+d.In))
	default:
		until = "tcp_retries2 is unknown, so when the kernel gives up is too"
	}
	return Critical, fmt.Sprintf(
		"%s to %s: %d retransmissions and no ACK for %s with %d bytes unsent or unacknowledged, the peer is gone or the path drops its packets; %s%s; set TCP_USER_TIMEOUT in the application to give up sooner",
		s.Local, s.Remote, s.TimerRetrans, dur(silent), s.SendQ, until, c.ownerText()), true
}

// zeroWindowStall: the peer advertises a zero window and the zero-window
// probes pile up: the persist timer with at least ZeroWindowProbes probes sent,
// or the retransmit timer's zero-window path (data in flight, snd_wnd 0), where
// the probes are retransmissions that show only in the climbing backoff. The
// kernel resets the unanswered count (timer_retrans) on every answer, so a
// live peer that stopped reading shows its probes in the backoff, which only
// an opening window resets.
func zeroWindowStall(c *sockCtx, s *diag.Socket) (Severity, string, bool) {
	if !dataState(s.State) {
		return 0, "", false
	}
	var since time.Duration
	var probes int
	sk, _, _ := c.clocks()
	o := observed(s)
	switch {
	case s.Timer == diag.TimerPersist:
		probes = max(int(s.TimerRetrans), int(s.Info.Backoff))
		since = s.Info.LastDataSent
		c.drop = sk.PersistDrop(o)
	case zeroWindowRetrans(s):
		probes = int(s.Info.Backoff)
		if sk.Orphan {
			// tcp_retransmit_timer's zero-window path is not for orphans:
			// they retransmit and time out as any other.
			c.drop = sk.RetransDrop(o)
			since = c.drop.Since
		} else {
			c.drop = sk.ZeroWindowRetransDrop(o)
			since = c.drop.Since
		}
	default:
		return 0, "", false
	}
	if probes < ZeroWindowProbes {
		c.drop = sysctl.Drop{}
		return 0, "", false
	}
	what := "the peer stopped reading"
	if s.Timer == diag.TimerPersist && s.TimerRetrans >= ZeroWindowProbes {
		what = fmt.Sprintf("and the last %d went unanswered: the peer may be gone too", s.TimerRetrans)
	}
	drop := ""
	switch c.drop.Cause {
	case sysctl.DropUserTimeout:
		drop = fmt.Sprintf("; TCP_USER_TIMEOUT %s drops it in about %s", dur(sk.UserTimeout), dur(c.drop.In))
	case sysctl.DropRetries2, sysctl.DropOrphanRetries:
		drop = fmt.Sprintf("; if nothing answers, %s drops it in about %s", c.drop.Cause, dur(c.drop.In))
	}
	return Warning, fmt.Sprintf(
		"%s to %s: the peer has advertised a zero window for about %s and %d zero-window probes went out, %s; %d bytes wait in the send queue%s%s; fix the reader at %s or bound the wait with TCP_USER_TIMEOUT",
		s.Local, s.Remote, dur(since), probes, what, s.SendQ, drop, c.ownerText(), s.Remote), true
}

// idleNoKeepalive: an ESTABLISHED connection without keepalive has been idle for
// --max-idle: if its peer died, nothing would ever notice.
func idleNoKeepalive(c *sockCtx, s *diag.Socket) (Severity, string, bool) {
	max := c.a.cfg.MaxIdle
	if s.State != diag.StateEstablished || max <= 0 || s.Info.Len == 0 {
		return 0, "", false
	}
	idle := s.Idle()
	if idle < max {
		return 0, "", false
	}
	armed, known := s.KeepaliveArmed()
	if !known {
		// A pending retransmit or zero-window timer hides keepalive; only the
		// owner's socket option can tell.
		o, ok := c.sockopts()
		if !ok {
			return 0, "", false
		}
		armed = o.KeepAlive
	}
	if armed {
		return 0, "", false
	}
	return Warning, fmt.Sprintf(
		"%s to %s: idle for %s (over --max-idle %s) without SO_KEEPALIVE%s, so a dead peer would never be noticed; set SO_KEEPALIVE in the application (with TCP_KEEPIDLE below the path's idle timeout)",
		s.Local, s.Remote, dur(idle), dur(max), c.ownerText()), true
}

// idleOverlong: the operator's policy, no reads or writes for --idle-limit.
func idleOverlong(c *sockCtx, s *diag.Socket) (Severity, string, bool) {
	lim := c.a.cfg.IdleLimit
	if lim <= 0 || s.State != diag.StateEstablished || s.Info.Len == 0 {
		return 0, "", false
	}
	idle := s.Idle()
	if idle < lim {
		return 0, "", false
	}
	return Warning, fmt.Sprintf(
		"%s to %s: no data sent or received for %s (over --idle-limit %s)%s; close it in the application, or with tcpkeep kill --finding idle_overlong",
		s.Local, s.Remote, dur(idle), dur(lim), c.ownerText()), true
}

// keepaliveAfterPathTimeout: keepalive is armed, but its cadence, max(idle
// time, interval) of its effective values, does not stay under the path's idle
// timeout (--path-idle-timeout, or local conntrack) less the margin for
// timers that fire late: the path forgets the idle flow between probes.
func keepaliveAfterPathTimeout(c *sockCtx, s *diag.Socket) (Severity, string, bool) {
	path, src := c.a.pathTO, c.a.pathSrc
	if path <= 0 || s.State != diag.StateEstablished {
		return 0, "", false
	}
	cadence, how, ok := c.effectiveCadence()
	if !ok || cadence <= path-sysctl.Margin(path) {
		return 0, "", false
	}
	fix := fmt.Sprintf("set TCP_KEEPIDLE and TCP_KEEPINTVL (or tcp_keepalive_time and _intvl) to %s at most", dur(sysctl.CadenceLimit(path)))
	if sysctl.CadenceLimit(path) < time.Second {
		fix = "no keepalive setting fits a path this short: use an application heartbeat"
	}
	return Warning, fmt.Sprintf(
		"%s to %s: keepalive probes the idle connection every %s (%s), but %s forgets an idle flow after %s, and timers fire up to an eighth late, so the flow can be gone before a probe%s; %s",
		s.Local, s.Remote, dur(cadence), how, src, dur(path), c.ownerText(), fix), true
}

// closeWaitStale: the peer closed its end long ago and the application never
// closed its own: a descriptor leak in the making.
func closeWaitStale(c *sockCtx, s *diag.Socket) (Severity, string, bool) {
	after := c.a.cfg.CloseWaitAfter
	if s.State != diag.StateCloseWait || s.Info.Len == 0 {
		return 0, "", false
	}
	idle := s.Idle()
	if idle < after {
		return 0, "", false
	}
	return Warning, fmt.Sprintf(
		"%s to %s: in CLOSE_WAIT for about %s (over --close-wait-after %s): the peer closed, the application never did%s; fix the application's close path (close the socket on EOF or error)",
		s.Local, s.Remote, dur(idle), dur(after), c.ownerText()), true
}

// listenQueueFull: the accept queue of a listener is at its backlog (critical)
// or at 80% of it (warning): new connections are dropped while the application
// does not accept.
func listenQueueFull(c *sockCtx, s *diag.Socket) (Severity, string, bool) {
	if s.State != diag.StateListen || s.RecvQ == 0 {
		return 0, "", false
	}
	q, backlog := uint64(s.RecvQ), uint64(s.SendQ)
	var sev Severity
	switch {
	case q >= backlog:
		sev = Critical
	case q*5 >= backlog*4:
		sev = Warning
	default:
		return 0, "", false
	}
	return sev, fmt.Sprintf(
		"listener %s: accept queue %d of backlog %d, new connections are dropped once it is full%s; accept faster in the application, or raise the backlog (listen() and net.core.somaxconn)",
		s.Local, q, backlog, c.ownerText()), true
}

// countPeer counts connections per remote address and local port, for
// peer_limit_exceeded. It keeps one copy of a socket only for peers over the limit.
func (a *Auditor) countPeer(s *diag.Socket) {
	if a.peers == nil || !connState(s.State) {
		return
	}
	k := peerKey{remote: s.Remote.Addr().Unmap(), port: s.Local.Port()}
	p := a.peers[k]
	if p == nil {
		p = &peerCount{}
		a.peers[k] = p
	}
	p.n++
	if p.n == a.cfg.MaxPerPeer+1 {
		cp := *s
		p.first = &cp
	}
}

// peerLimitFinding is peer_limit_exceeded for one peer.
func peerLimitFinding(limit int, k peerKey, p *peerCount) Finding {
	return Finding{Code: PeerLimitExceeded, Severity: Warning, Socket: p.first, Message: fmt.Sprintf(
		"%s holds %d connections to local port %d (over --max-per-peer %d): a client that leaks connections or a flood; list them with tcpkeep conns --dst %s --sport %d, close them with tcpkeep kill --max-per-peer %d",
		k.remote, p.n, k.port, limit, k.remote, k.port, limit)}
}

// sysctlKeepaliveDefault: tcp_keepalive_time is still the kernel's 2 hours.
func sysctlKeepaliveDefault(t sysctl.Tunables) (Severity, string, bool) {
	if t.Time != sysctl.Defaults.Time {
		return 0, "", false
	}
	return Warning, fmt.Sprintf(
		"tcp_keepalive_time is the kernel default of %s: a dead idle peer is found after %s, long after most NAT gateways, firewalls and load balancers (4 to 20 minutes) forgot the flow; lower it with tcpkeep sysctl recommend --apply",
		dur(t.Time), dur(t.DeadPeerDetect())), true
}

// sysctlKeepaliveAfterConntrack: keepalive's cadence, max(tcp_keepalive_time,
// tcp_keepalive_intvl), does not stay under the local conntrack timeout less
// the margin for timers that fire late: conntrack forgets idle flows between
// probes.
func sysctlKeepaliveAfterConntrack(t sysctl.Tunables) (Severity, string, bool) {
	ct := t.ConntrackEstablished
	if ct == nil || t.Cadence() <= *ct-sysctl.Margin(*ct) {
		return 0, "", false
	}
	return Warning, fmt.Sprintf(
		"keepalive probes every %s (the larger of tcp_keepalive_time %s and tcp_keepalive_intvl %s), not under nf_conntrack_tcp_timeout_established %s less an eighth for timers that fire late: local conntrack can forget an idle flow before its next keepalive probe; lower it with tcpkeep sysctl recommend --behind conntrack --apply",
		dur(t.Cadence()), dur(t.Time), dur(t.Intvl), dur(*ct)), true
}

// orphan: a socket the application has closed while the kernel still finishes
// the connection. It has no file, so no inode.
func orphan(s *diag.Socket) bool {
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

// probedState: states in which the keepalive timer sends probes (not FIN_WAIT2,
// where sk_timer is the FIN_WAIT2 timeout, nor states without a connection).
func probedState(st diag.State) bool {
	switch st {
	case diag.StateEstablished, diag.StateCloseWait, diag.StateFinWait1, diag.StateClosing, diag.StateLastAck:
		return true
	}
	return false
}

// dataState: states in which unacknowledged data can be retransmitted (not the
// handshake, which tcp_syn_retries governs).
func dataState(st diag.State) bool { return probedState(st) }

// connState: states that hold a connection from a peer, for per-peer counting.
func connState(st diag.State) bool {
	switch st {
	case diag.StateListen, diag.StateTimeWait, diag.StateClose, diag.StateSynSent:
		return false
	}
	return true
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// dur writes a duration for people: "2h11m15s", "75s", "1.5s", "300ms".
func dur(d time.Duration) string {
	switch {
	case d <= 0:
		return "0s"
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < 10*time.Second:
		return d.Round(100 * time.Millisecond).String()
	}
	s := d.Round(time.Second).String()
	if len(s) > 3 && s[len(s)-3:] == "m0s" {
		s = s[:len(s)-2]
	}
	if len(s) > 3 && s[len(s)-3:] == "h0m" {
		s = s[:len(s)-2]
	}
	return s
}
