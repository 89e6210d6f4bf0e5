package sysctl

import "time"

// This file is tcpkeep's one model of the kernel's TCP clocks: when a socket
// probes, and when the kernel gives up on a silent peer and drops the
// connection. Every figure tcpkeep states about that comes from here, and each
// formula names the kernel function it follows (net/ipv4/tcp_timer.c unless
// said otherwise, Linux 6.18). The kernel-timing tests in internal/audit let
// each case happen in network namespaces and compare.
//
// Times are nominal: what the kernel computes. Its timers fire late, never
// early: the timer wheel (kernel/time/timer.c, calc_wheel_index) rounds an
// expiry up to its level's granularity, at most 8/63 of the delay; measured,
// 1 to 3%. Margin keeps recommendations clear of that.

// Kernel constants the clocks use (include/net/tcp.h).
const (
	// RTOMin is TCP_RTO_MIN: the smallest retransmission timeout, and the base
	// of tcp_model_timeout.
	RTOMin = 200 * time.Millisecond
	// RTOMax is TCP_RTO_MAX (net.ipv4.tcp_rto_max_ms by default): backoff stops
	// doubling there.
	RTOMax = 120 * time.Second
	// TimeWaitLen is TCP_TIMEWAIT_LEN, which the FIN_WAIT2 timeout is split around.
	TimeWaitLen = 60 * time.Second
)

// DropCause is the limit that makes the kernel drop a connection.
type DropCause uint8

// The causes of a drop, as finding records name them.
const (
	// DropNone: the kernel does not drop it (or when cannot be told).
	DropNone DropCause = iota
	// DropKeepaliveProbes: keepalive_probes unanswered keepalive probes.
	DropKeepaliveProbes
	// DropUserTimeout: TCP_USER_TIMEOUT without an answer.
	DropUserTimeout
	// DropRetries2: tcp_retries2's retransmission (or zero-window probe) limit.
	DropRetries2
	// DropOrphanRetries: tcp_orphan_retries, for a socket the application closed.
	DropOrphanRetries
	// DropFinWait2: the FIN_WAIT2 timeout (tcp_fin_timeout) of an orphan.
	DropFinWait2
)

// String is the name records use: keepalive_probes, user_timeout,
// tcp_retries2, orphan_retries, fin_wait2; "" for DropNone.
func (c DropCause) String() string {
	switch c {
	case DropKeepaliveProbes:
		return "keepalive_probes"
	case DropUserTimeout:
		return "user_timeout"
	case DropRetries2:
		return "tcp_retries2"
	case DropOrphanRetries:
		return "orphan_retries"
	case DropFinWait2:
		return "fin_wait2"
	}
	return ""
}

// Drop is when the kernel will drop a connection to a silent peer, and why.
type Drop struct {
	// In is how long from the observation until the kernel drops the
	// connection; 0 with DropNone.
	In time.Duration
	// Cause is the limit that drops it; DropNone if the kernel will not (a
	// peer that answers zero-window probes, no TCP_USER_TIMEOUT) or the model
	// cannot tell.
	Cause DropCause
	// Limit is what the kernel holds the connection against: the user
	// timeout, or the give-up time of tcp_retries2 or tcp_orphan_retries
	// (tcp_model_timeout); 0 for keepalive's probe count and FIN_WAIT2.
	Limit time.Duration
	// Since is how long the condition had lasted at the observation: the
	// silence keepalive counts, the time since the first retransmission, or
	// since zero-window probing began.
	Since time.Duration
}

// Margin is how far under a path's idle timeout keepalive's cadence must stay
// so that its probes arrive in time although the kernel's timers fire late:
// an eighth of the timeout. The timer wheel rounds a delay up by at most 8/63
// of it (calc_wheel_index), so a cadence of 7/8 of the timeout fires by 0.986
// of it at worst, leaving the rest for a jiffy and scheduling; measured, the
// timers fire 1 to 3% late. A round trip does not count: the path last saw the
// answer to the previous probe, sent a round trip after it.
func Margin(path time.Duration) time.Duration { return path / 8 }

// CadenceLimit is the longest keepalive cadence (max(time, intvl)) that keeps
// a path with this idle timeout open: the timeout less Margin, in whole
// seconds (the keepalive tunables are whole seconds). It is 0 when no whole
// second fits.
func CadenceLimit(path time.Duration) time.Duration {
	return max(0, (path - Margin(path)).Truncate(time.Second))
}

// reached reports whether a time the kernel measures across timer firings
// reaches limit. The firings come late by 1 to 3% each, so a nominal sum short
// of the limit by less than 2% reaches it in practice (measured: tcp_retries2
// 4 gives up at the fifth RTO firing, whose nominal 6.12 s falls 80 ms short of
// its 6.2 s limit).
func reached(elapsed, limit time.Duration) bool {
	return elapsed+elapsed/50 >= limit
}

// Cadence is how often keepalive probes an idle connection whose peer answers:
// max(Time, Intvl). tcp_keepalive_timer re-arms for keepalive_intvl after each
// probe, and the answer (tcp_ack) clears icsk_probes_out without re-arming it;
// when the timer fires it probes only once the silence has reached
// keepalive_time, else re-arms for the rest. So the path sees a packet every
// max(time, intvl), and both must stay under its idle timeout.
func (k Keepalive) Cadence() time.Duration { return max(k.Time, k.Intvl) }

// DeadPeerDetect is how long after the last answer the kernel drops an idle
// connection to a dead peer: Cadence + Probes x Intvl. The first unanswered
// probe goes out max(time, intvl) after the last answer (see Cadence), then
// one every intvl; tcp_keepalive_timer drops the connection at the firing
// where icsk_probes_out has reached keepalive_probes. With intvl <= time this
// is the familiar time + probes x intvl.
func (k Keepalive) DeadPeerDetect() time.Duration {
	return k.Cadence() + time.Duration(k.Probes)*k.Intvl
}

// Socket is what the kernel's clocks run on for one socket: its effective
// keepalive values (the owner's TCP_KEEPIDLE/INTVL/CNT where they were read,
// else the namespace's tunables), its TCP_USER_TIMEOUT, and the namespace's
// retransmission and FIN_WAIT2 tunables.
type Socket struct {
	Keepalive
	// UserTimeout is TCP_USER_TIMEOUT; 0 for none.
	UserTimeout time.Duration
	// Retries2 is tcp_retries2.
	Retries2 int
	// OrphanRetries is the tcp_orphan_retries sysctl, 0 meaning 8 (see
	// OrphanRetries).
	OrphanRetries int
	// FinTimeout is tcp_fin_timeout.
	FinTimeout time.Duration
	// Orphan: the application has closed the socket (SOCK_DEAD); the kernel
	// finishes the connection alone.
	Orphan bool
}

// Observed is what sock_diag and tcp_info show of a socket at one moment.
type Observed struct {
	// Expires is how long until the pending timer fires (idiag_expires).
	Expires time.Duration
	// Retransmits is icsk_retransmits: RTO firings in a row without an ACK
	// (idiag_retrans of the retransmit timer, tcpi_retransmits).
	Retransmits int
	// ProbesOut is icsk_probes_out: unanswered keepalive or zero-window probes
	// (idiag_retrans of those timers, tcpi_probes).
	ProbesOut int
	// Backoff is icsk_backoff (tcpi_backoff).
	Backoff int
	// RTO is icsk_rto, backed off (tcpi_rto).
	RTO time.Duration
	// RTT is the smoothed round-trip time (tcpi_rtt).
	RTT time.Duration
	// SinceRecv is how long nothing was received: the lesser of
	// tcpi_last_data_recv and tcpi_last_ack_recv, as keepalive_time_elapsed
	// counts it.
	SinceRecv time.Duration
	// SinceDataSent is tcpi_last_data_sent.
	SinceDataSent time.Duration
}

// KeepaliveAfter is when keepalive drops an idle connection whose peer died
// right after its last answer, counted from that answer: DeadPeerDetect, or
// with TCP_USER_TIMEOUT the first probe firing where the silence has reached
// it (see KeepaliveDrop).
func (s Socket) KeepaliveAfter() Drop {
	d := s.KeepaliveDrop(Observed{Expires: s.Cadence()})
	d.Since = 0
	return d
}

// KeepaliveDrop is when tcp_keepalive_timer drops a connection whose keepalive
// timer is pending, if nothing is received any more.
//
// With no probe out, the timer probes at its next firing if the silence has
// reached keepalive_time by then, else it re-arms for the rest; after the
// first probe it fires every keepalive_intvl. Without TCP_USER_TIMEOUT it
// drops the connection at the firing where icsk_probes_out has reached
// keepalive_probes. With it, keepalive_probes no longer counts: it drops the
// connection at the first firing where the silence has reached the user
// timeout and a probe is out, and sends probes until then.
func (s Socket) KeepaliveDrop(o Observed) Drop {
	silence, intvl := o.SinceRecv, max(s.Intvl, time.Second)
	next, out := o.Expires, o.ProbesOut
	if out == 0 {
		// This firing sends the first probe, or re-arms until it is due.
		if silence+next < s.Time {
			next = s.Time - silence
		}
		// The firing at next sends probe 1; the following ones see it out.
		next += intvl
		out = 1
	}
	if s.UserTimeout > 0 {
		// Skip whole intervals arithmetically (a user timeout may be days
		// of 1 s intervals), stopping short of the limit, then step to the
		// first firing that reaches it.
		if gap := s.UserTimeout/51*50 - (silence + next); gap > 2*intvl {
			next += (gap/intvl - 1) * intvl
		}
		for !reached(silence+next, s.UserTimeout) {
			next += intvl
		}
		return Drop{In: next, Cause: DropUserTimeout, Limit: s.UserTimeout, Since: silence}
	}
	if out < s.Probes {
		next += time.Duration(s.Probes-out) * intvl
	}
	return Drop{In: next, Cause: DropKeepaliveProbes, Since: silence}
}

// RetransGiveUp is the limit tcp_retries2 sets on retransmissions: the sum of
// retries2 exponential backoffs from an RTO of TCP_RTO_MIN, each capped at
// TCP_RTO_MAX (tcp_model_timeout), which retransmits_timed_out holds the time
// since the first retransmission against. At the default 15 that is 924.6 s.
// When the kernel actually gives up is RetransAfterFirst.
func RetransGiveUp(retries2 int) time.Duration {
	if retries2 < 0 {
		return 0
	}
	// Doubling stops at ilog2(TCP_RTO_MAX / TCP_RTO_MIN) = 9.
	const thresh = 9
	if retries2 <= thresh {
		return time.Duration((2<<retries2)-1) * RTOMin
	}
	return time.Duration((2<<thresh)-1)*RTOMin + time.Duration(retries2-thresh)*RTOMax
}

// OrphanRetries is how many retransmission backoffs the kernel allows a socket
// the application has closed (an orphan) before it drops it: tcp_orphan_retries,
// where the default 0 means 8 (tcp_orphan_retries() in the kernel, for a socket
// whose RTO is still under TCP_RTO_MAX).
func OrphanRetries(sysctlValue int) int {
	if sysctlValue <= 0 {
		return 8
	}
	return sysctlValue
}

// orphanRetries is tcp_orphan_retries(sk, alive): the sysctl, where 0 means 8
// while the socket is alive (its RTO under TCP_RTO_MAX) and 0 once it is not.
func orphanRetries(sysctlValue int, alive bool) int {
	if sysctlValue == 0 && alive {
		return 8
	}
	return max(sysctlValue, 0)
}

// retransLimit is the limit tcp_write_timeout holds the time since the first
// retransmission against, for a socket whose RTO is rto: TCP_USER_TIMEOUT if
// set, else tcp_orphan_retries' model time for an orphan, else tcp_retries2's.
func (s Socket) retransLimit(rto time.Duration) (time.Duration, DropCause) {
	switch {
	case s.UserTimeout > 0:
		return s.UserTimeout, DropUserTimeout
	case s.Orphan:
		return RetransGiveUp(orphanRetries(s.OrphanRetries, rto < RTOMax)), DropOrphanRetries
	}
	return RetransGiveUp(s.Retries2), DropRetries2
}

// baseRTO is the RTO before backoff: tcpi_rto halved backoff times, where it
// has not reached TCP_RTO_MAX; else what tcp_set_rto gives for the RTT.
func baseRTO(o Observed) time.Duration {
	if o.RTO > 0 && o.RTO < RTOMax {
		return max(o.RTO>>min(o.Backoff, 30), time.Millisecond)
	}
	return o.RTT + RTOMin
}

// sinceFirstRetrans is how long ago the first RTO retransmission
// (tp->retrans_stamp) went out, given firings RTO firings so far: the backoffs
// between them (each RTO doubled, capped at TCP_RTO_MAX, tcp_retransmit_timer),
// plus the time since the last firing, which armed the timer for the current
// RTO.
func sinceFirstRetrans(o Observed, firings int) time.Duration {
	if firings <= 0 {
		return 0
	}
	base := baseRTO(o)
	var d time.Duration
	for i := 1; i < firings; i++ {
		d += backedOff(base, i)
	}
	return d + max(0, o.RTO-o.Expires)
}

// backedOff is base doubled n times, capped at TCP_RTO_MAX.
func backedOff(base time.Duration, n int) time.Duration {
	if n >= 30 || base<<n >= RTOMax {
		return RTOMax
	}
	return base << n
}

// RetransAfterFirst is when the kernel drops a connection whose unacknowledged
// data goes unanswered, counted from its first retransmission, for a path whose
// RTO before backoff is base (RTOMin on a fast path): see RetransDrop.
func (s Socket) RetransAfterFirst(base time.Duration) Drop {
	return s.RetransDrop(Observed{RTO: max(base, time.Millisecond)})
}

// RetransDrop is when the kernel drops a connection whose retransmission timer
// is pending and whose peer acknowledges nothing.
//
// tcp_retransmit_timer calls tcp_write_timeout at each firing, before it
// retransmits and doubles the RTO (capped at TCP_RTO_MAX); from the second
// firing on (retransmits_timed_out needs icsk_retransmits), the connection is
// dropped once the time since the first retransmission (tp->retrans_stamp)
// reaches the limit: TCP_USER_TIMEOUT if set, else the tcp_model_timeout of
// tcp_retries2, or of tcp_orphan_retries for an orphan. Measured on 6.18, the
// stamp is the first RTO firing's retransmission, not the tail loss probe
// before it. With TCP_USER_TIMEOUT, tcp_clamp_rto_to_user_timeout shortens the
// last backoff so that a firing comes at the stamp plus the user timeout.
// Idle time before the data was sent counts for nothing.
func (s Socket) RetransDrop(o Observed) Drop {
	n := max(o.Retransmits, 0)
	since := sinceFirstRetrans(o, n)
	if s.UserTimeout > 0 {
		if n == 0 {
			// The next firing is the first retransmission: the clock starts there.
			return Drop{In: o.Expires + s.UserTimeout, Cause: DropUserTimeout, Limit: s.UserTimeout}
		}
		return Drop{In: max(o.Expires, s.UserTimeout-since), Cause: DropUserTimeout, Limit: s.UserTimeout, Since: since}
	}
	t, rto := o.Expires, max(o.RTO, time.Millisecond)
	elapsed := since
	if n > 0 {
		elapsed += max(0, o.Expires)
	}
	for k := n + 1; k < n+200; k++ {
		if k >= 2 {
			if limit, cause := s.retransLimit(rto); reached(elapsed, limit) {
				return Drop{In: t, Cause: cause, Limit: limit, Since: since}
			}
		}
		rto = min(2*rto, RTOMax)
		t += rto
		elapsed += rto
	}
	return Drop{}
}

// ZeroWindowRetransDrop is when the kernel drops a connection whose peer
// advertises a zero window while data is in flight (snd_wnd 0, packets out):
// tcp_retransmit_timer's zero-window path retransmits as a zero-window probe,
// backs off (icsk_backoff climbs, icsk_retransmits stays) and asks
// tcp_rtx_probe0_timed_out. With TCP_USER_TIMEOUT that drops the connection
// once the time since the first retransmission exceeds it, however the peer
// answers. Without it the connection lives while the peer answers (a reader
// that stopped reading); a silent peer is dropped only after twice
// TCP_RTO_MAX without an answer, which the model does not predict (DropNone).
//
// Since is set either way: how long ago the first of these retransmissions went out.
func (s Socket) ZeroWindowRetransDrop(o Observed) Drop {
	o.Retransmits = o.Backoff // the firings of this path show in the backoff only
	if s.UserTimeout <= 0 {
		return Drop{Since: sinceFirstRetrans(o, o.Retransmits)}
	}
	return Socket{UserTimeout: s.UserTimeout}.RetransDrop(o)
}

// PersistDrop is when the kernel drops a connection whose zero-window probe
// (persist) timer is pending: the peer advertised a zero window with nothing
// in flight.
//
// tcp_probe_timer stamps the start of probing at its first firing. With
// TCP_USER_TIMEOUT it drops the connection at the first firing where the
// probing has lasted that long, answered or not, and tcp_send_probe0 clamps
// the backoff so that a firing comes then. Without it, a peer that answers
// keeps the connection forever (RFC 1122); one that does not is dropped when
// icsk_probes_out reaches tcp_retries2 (for an orphan, tcp_orphan_retries, or
// once the backoff reaches it at TCP_RTO_MAX). Each probe doubles the interval
// from max(RTO, TCP_RTO_MIN) (tcp_probe0_when), the backoff capped at
// tcp_retries2, the interval at TCP_RTO_MAX. A model drop needs probes out:
// with none, the peer answers. Since is set either way: how long the probing
// has lasted.
func (s Socket) PersistDrop(o Observed) Drop {
	base := max(o.RTO, RTOMin) // tcp_probe0_base
	if s.UserTimeout > 0 {
		if o.Backoff == 0 && o.ProbesOut == 0 {
			// Not fired yet: probing starts at the next firing.
			return Drop{In: o.Expires + s.UserTimeout, Cause: DropUserTimeout, Limit: s.UserTimeout}
		}
		// The window closed with the ACK of the last data sent, and the first
		// probe timer fired one base later (tcp_check_probe_timer).
		since := max(0, o.SinceDataSent-o.RTT-base)
		return Drop{In: max(o.Expires, s.UserTimeout-since), Cause: DropUserTimeout, Limit: s.UserTimeout, Since: since}
	}
	since := max(0, o.SinceDataSent-o.RTT-base)
	if o.ProbesOut == 0 {
		return Drop{Since: since}
	}
	t, out, b := o.Expires, o.ProbesOut, o.Backoff
	for range 200 {
		limit, cause := s.Retries2, DropRetries2
		if s.Orphan {
			alive := backedOff(base, b) < RTOMax
			limit, cause = orphanRetries(s.OrphanRetries, alive), DropOrphanRetries
			if !alive && b >= limit {
				return Drop{In: t, Cause: cause, Since: since}
			}
		}
		if out >= limit {
			return Drop{In: t, Cause: cause, Since: since}
		}
		out++
		if b < s.Retries2 {
			b++
		}
		t += backedOff(base, b)
	}
	return Drop{}
}

// FinWait2Lifetime is how long an orphaned FIN_WAIT2 socket lives, whose
// peer never closes its end: tcp_fin_time, max(tcp_fin_timeout, 3.5 RTO). Up
// to TCP_TIMEWAIT_LEN the socket becomes a timewait socket for that long
// (tcp_close, tcp_time_wait); beyond it the keepalive timer runs first for
// the time past TCP_TIMEWAIT_LEN, then tcp_keepalive_timer makes it a timewait
// socket for as long again, so it lives twice the excess.
func (s Socket) FinWait2Lifetime(rto time.Duration) time.Duration {
	t := finTime(s.FinTimeout, rto)
	if t <= TimeWaitLen {
		return t
	}
	return 2 * (t - TimeWaitLen)
}

func finTime(finTimeout, rto time.Duration) time.Duration {
	return max(finTimeout, rto*7/2)
}

// FinWait2Drop is when an orphaned FIN_WAIT2 socket goes. Already a timewait
// socket (sock_diag's timewait timer), it goes when that timer fires. On the
// keepalive timer (reported as fin_wait2), tcp_keepalive_timer then makes it a
// timewait socket for tcp_fin_time less TCP_TIMEWAIT_LEN, or resets it if
// nothing is left.
func (s Socket) FinWait2Drop(o Observed, timewait bool) Drop {
	in := o.Expires
	if !timewait {
		in += max(0, finTime(s.FinTimeout, o.RTO)-TimeWaitLen)
	}
	return Drop{In: in, Cause: DropFinWait2, Limit: finTime(s.FinTimeout, o.RTO)}
}
