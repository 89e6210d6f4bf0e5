package audit

import (
	"time"

	"github.com/tcpkeep/tcpkeep/diag"
	"github.com/tcpkeep/tcpkeep/sysctl"
)

// The rules' view of sysctl's model of the kernel's clocks: a socket's
// effective values and what sock_diag shows of its timers.

// clocks are the values the kernel's timers run on for the socket being
// checked: the owner's real options where they were read (real), else the
// namespace's tunables, which the socket may override. retries2 says
// tcp_retries2 is known; real says the keepalive values are the socket's own.
func (c *sockCtx) clocks() (sk sysctl.Socket, real, retries2 bool) {
	t := c.a.cfg.Tunables
	sk = sysctl.Socket{Keepalive: t.Keepalive, Orphan: Orphan(c.s)}
	if t.Retries2 != nil {
		sk.Retries2, retries2 = *t.Retries2, true
	}
	if t.OrphanRetries != nil {
		sk.OrphanRetries = *t.OrphanRetries
	}
	if t.FinTimeout != nil {
		sk.FinTimeout = *t.FinTimeout
	}
	if o, ok := c.sockopts(); ok {
		if k := o.Keepalive; k.Time > 0 && k.Intvl > 0 && k.Probes > 0 {
			sk.Keepalive, real = k, true
		}
		sk.UserTimeout = o.UserTimeout
	}
	return sk, real, retries2
}

// observed is what the model reads of a socket: its pending timer and the
// clocks tcp_info keeps. timer_retrans counts retransmissions on the
// retransmit timer and unanswered probes on the keepalive and persist timers.
func observed(s *diag.Socket) sysctl.Observed {
	o := sysctl.Observed{
		Expires:       s.TimerExpires,
		Backoff:       int(s.Info.Backoff),
		RTO:           s.Info.RTO,
		RTT:           s.Info.RTT,
		SinceRecv:     recvSilence(s),
		SinceDataSent: s.Info.LastDataSent,
	}
	if s.Timer == diag.TimerRetransmit {
		o.Retransmits = int(s.TimerRetrans)
	} else {
		o.ProbesOut = int(s.TimerRetrans)
	}
	return o
}

// sndWndEnd is where tcpi_snd_wnd ends in struct tcp_info (Linux 5.4 and
// later): a shorter tcp_info does not say the window.
const sndWndEnd = 232

// zeroWindowRetrans tells whether the retransmit timer runs the zero-window
// path of tcp_retransmit_timer: data in flight to a peer whose window is 0.
// There the retransmissions are zero-window probes: icsk_backoff climbs while
// icsk_retransmits stays 0.
func zeroWindowRetrans(s *diag.Socket) bool {
	return s.Timer == diag.TimerRetransmit && s.Info.Len >= sndWndEnd && s.Info.SndWnd == 0 && s.Info.Unacked > 0
}

// timesKnown: tcp_info's times since the last data and ACK mean something only
// once the handshake is done; before it (SYN_SENT, SYN_RECV) and on a listener
// they count from nothing.
func timesKnown(s *diag.Socket) bool {
	if s.Info.Len == 0 {
		return false
	}
	switch s.State {
	case diag.StateSynSent, diag.StateSynRecv, diag.StateNewSynRecv, diag.StateListen:
		return false
	}
	return true
}

// effectiveCadence is how often keepalive probes the idle connection once its
// probes are answered, max(TCP_KEEPIDLE, TCP_KEEPINTVL) (sysctl.Keepalive.Cadence),
// and the values it comes from: the owner's options where they were read;
// otherwise inferred from the armed timer, which fires that long after the
// last packet received (the idle time, or the interval once a probe was
// answered: a lower bound of the cadence until the first probe has been
// answered; the values are then unknown); otherwise the namespace's
// tunables. ok is false when keepalive is off or cannot be told.
func (c *sockCtx) effectiveCadence() (d time.Duration, k sysctl.Keepalive, from Source, ok bool) {
	s := c.s
	if o, ok := c.sockopts(); ok {
		if !o.KeepaliveOn {
			return 0, k, SourceNone, false
		}
		if o.Keepalive.Time > 0 {
			return o.Keepalive.Cadence(), o.Keepalive, SourceSocket, true
		}
	}
	armed, known := s.KeepaliveArmed()
	if !known || !armed {
		return 0, k, SourceNone, false
	}
	if s.Timer == diag.TimerKeepalive && s.TimerRetrans > 0 {
		// Probes are out: the timer counts the interval to an unanswered
		// probe. half_open_keepalive speaks for this socket.
		return 0, k, SourceNone, false
	}
	if s.Timer == diag.TimerKeepalive && timesKnown(s) {
		return (s.TimerExpires + recvSilence(s)).Round(time.Second), k, SourceTimer, true
	}
	t := c.a.cfg.Tunables
	return t.Cadence(), t.Keepalive, SourceNamespace, true
}
