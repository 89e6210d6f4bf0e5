package audit

import (
	"github.com/tcpkeep/tcpkeep/diag"
	"github.com/tcpkeep/tcpkeep/internal/proc"
)

// End is how a TCP connection ended, as far as the kernel's last record of it
// (the destroy broadcast: diag.SubscribeDestroyed) and what the caller knows
// can tell.
//
// The record is taken when the socket is freed: always in state CLOSE, with no
// timer, and with the counters tcp_info kept. tcp_done leaves two of them as
// they were when the kernel gave up: tcpi_retransmits (the RTO retransmissions
// in a row that went unanswered) and tcpi_probes (unanswered keepalive or
// zero-window probes); the peer's ACKs reset them (tcp_ack: any ACK the probes,
// one acknowledging new data the retransmissions). The error
// the owner saw (sk_err: ETIMEDOUT, ECONNRESET, ECONNABORTED) is not in the
// record, so a reset from the peer, a close by the owner and a SOCK_DESTROY
// from another program look alike.
type End uint8

// The ends a record can tell apart.
const (
	// EndUnknown: the record has no tcp_info.
	EndUnknown End = iota
	// EndClosed: no timeout ended it. Closed by its owner, reset by the peer,
	// or destroyed by another program: the record cannot say which.
	EndClosed
	// EndKeepalive: dropped by the kernel after unanswered keepalive probes
	// (tcp_keepalive_timer). Without the socket's options, a reset from a
	// restarted peer answering a probe, a SOCK_DESTROY while probes were out,
	// and TCP_USER_TIMEOUT while probing look the same.
	EndKeepalive
	// EndRetransmit: dropped by the kernel after unanswered retransmissions or
	// zero-window probes, bounded by tcp_retries2 (tcp_write_timeout,
	// tcp_probe_timer), or by tcp_orphan_retries once the owner had closed it
	// (its FIN unanswered). Without the socket's options, TCP_USER_TIMEOUT
	// looks the same; so does a reset or a close while retransmitting.
	EndRetransmit
	// EndUserTimeout: dropped by the kernel at the socket's TCP_USER_TIMEOUT,
	// while retransmitting or probing. Told only with the socket's options.
	EndUserTimeout
	// EndConnectTimeout: the connection was never established: its SYN went
	// unanswered (tcp_syn_retries, or TCP_USER_TIMEOUT).
	EndConnectTimeout
	// EndDestroyed: closed with SOCK_DESTROY by the caller, which says so.
	EndDestroyed
)

var endNames = [...]string{
	EndUnknown:        "unknown",
	EndClosed:         "closed",
	EndKeepalive:      "keepalive",
	EndRetransmit:     "retransmit",
	EndUserTimeout:    "user_timeout",
	EndConnectTimeout: "connect_timeout",
	EndDestroyed:      "destroyed",
}

// String is the name records and metric labels use: unknown, closed,
// keepalive, retransmit, user_timeout, connect_timeout, destroyed.
func (e End) String() string {
	if int(e) < len(endNames) {
		return endNames[e]
	}
	return "unknown"
}

// KernelDrop tells whether the kernel ended the connection for a timeout:
// keepalive, retransmit, user_timeout or connect_timeout.
func (e End) KernelDrop() bool {
	switch e {
	case EndKeepalive, EndRetransmit, EndUserTimeout, EndConnectTimeout:
		return true
	}
	return false
}

// EndHints is what the caller knows about a socket beyond its last record.
type EndHints struct {
	// Destroyed: the caller closed this socket (this cookie) with SOCK_DESTROY.
	Destroyed bool
	// Sockopts are the socket's real options, read from its owner while it
	// lived (Finding.Sockopts); nil when unknown. The namespace's tunables are
	// no substitute: sockets set their own (Go sets TCP_KEEPCNT on every one).
	Sockopts *proc.SockOpts
}

// tcpi_snd_wnd ends at byte 232 of tcp_info (Linux 5.4 and later); an older
// kernel's record cannot show a zero window.
const infoLenSndWnd = 232

// HowEnded says how the connection whose last record is s ended. It follows
// what made the kernel give up, as net/ipv4/tcp_timer.c does:
//
//   - retransmissions unanswered (tcpi_retransmits > 0): a SYN never answered
//     (nothing acknowledged or received, no RTT sample, no window: it never
//     got a SYN-ACK) is EndConnectTimeout; else TCP_USER_TIMEOUT when the
//     socket had one (then tcp_retries2 does not apply), else EndRetransmit;
//   - probes unanswered (tcpi_probes > 0) with a zero send window: the
//     zero-window probes of tcp_probe_timer, EndRetransmit (or the user
//     timeout);
//   - probes unanswered otherwise: keepalive. With the socket's options, a
//     user timeout makes it EndUserTimeout if the silence reached it, and
//     without one it is EndKeepalive only if the probes reached TCP_KEEPCNT;
//     fewer means a reset or a destroy cut it short: EndClosed;
//   - neither: EndClosed.
//
// Hints.Destroyed wins over all of these.
func HowEnded(s *diag.Socket, h EndHints) End {
	ti := &s.Info
	switch {
	case ti.Len == 0:
		return EndUnknown
	case h.Destroyed:
		return EndDestroyed
	}
	userTimeout := h.Sockopts != nil && h.Sockopts.UserTimeout > 0
	switch {
	case ti.Retransmits > 0:
		if ti.BytesAcked == 0 && ti.BytesRecv == 0 && ti.RTT == 0 && ti.SndWnd == 0 {
			return EndConnectTimeout
		}
		if userTimeout {
			return EndUserTimeout
		}
		return EndRetransmit
	case ti.Probes > 0 && ti.Len >= infoLenSndWnd && ti.SndWnd == 0:
		if userTimeout {
			return EndUserTimeout
		}
		return EndRetransmit
	case ti.Probes > 0:
		if h.Sockopts == nil {
			return EndKeepalive
		}
		if userTimeout {
			// tcp_keepalive_timer drops at the first firing where the silence
			// reaches the user timeout with a probe out, whatever the count; the
			// record is taken later, so its silence is at least that.
			if min(ti.LastAckRecv, ti.LastDataRecv) >= h.Sockopts.UserTimeout {
				return EndUserTimeout
			}
			return EndClosed
		}
		if h.Sockopts.Keepalive.Probes > 0 && int(ti.Probes) < h.Sockopts.Keepalive.Probes {
			return EndClosed
		}
		return EndKeepalive
	}
	return EndClosed
}
