package report

import (
	"net/netip"
	"strconv"

	"github.com/tcpkeep/tcpkeep/diag"
	"github.com/tcpkeep/tcpkeep/internal/proc"
)

// appendSocket appends the socket record as a nested JSON object (no header):
// the form a finding or an action embeds under "socket".
func appendSocket(dst []byte, s *diag.Socket, o *proc.Owner, opts *proc.SockOpts) []byte {
	dst = append(dst, '{')
	dst = appendSocketFields(dst, s, o, opts, true)
	return append(dst, '}')
}

// AppendSocketRecord appends one ndjson line: `{"type":"socket","ts":...,...}\n`.
// It allocates nothing once dst has room.
func AppendSocketRecord(dst []byte, m Meta, s *diag.Socket, o *proc.Owner, opts *proc.SockOpts) []byte {
	dst = append(dst, '{')
	dst = AppendHeader(dst, "socket", m)
	dst = appendSocketFields(dst, s, o, opts, false)
	return append(dst, '}', '\n')
}

// appendSocketFields appends the socket record's keys in docs/output.md's
// order, without braces; first says whether they open the object.
//
// Keys from tcp_info are absent when the kernel sent none (TIME_WAIT and request
// sockets), and the idle and last_* times before the handshake and on
// listeners (timesKnown); keepalive is absent where the timer cannot tell; pid
// and comm are present with an owner, the option keys with options.
func appendSocketFields(dst []byte, s *diag.Socket, o *proc.Owner, opts *proc.SockOpts, first bool) []byte {
	dst = appendKey(dst, "family", first)
	dst = appendString(dst, s.Family.String())
	dst = appendStr(dst, "state", s.State.String())
	dst = appendAddrPort(appendKey(dst, "local", false), s.Local)
	dst = appendAddrPort(appendKey(dst, "remote", false), s.Remote)
	dst = appendStr(dst, "timer", s.Timer.String())
	dst = appendMS(dst, "timer_expires_ms", s.TimerExpires)
	dst = appendUint(dst, "timer_retrans", uint64(s.TimerRetrans))
	dst = appendUint(dst, "recv_q", uint64(s.RecvQ))
	dst = appendUint(dst, "send_q", uint64(s.SendQ))
	dst = appendUint(dst, "uid", uint64(s.UID))
	dst = appendUint(dst, "inode", uint64(s.Inode))
	dst = appendHex16(appendKey(dst, "cookie", false), s.Cookie)
	if in := &s.Info; in.Len > 0 {
		if timesKnown(s) {
			dst = appendMS(dst, "idle_ms", s.Idle())
			dst = appendMS(dst, "last_data_recv_ms", in.LastDataRecv)
			dst = appendMS(dst, "last_data_sent_ms", in.LastDataSent)
			dst = appendMS(dst, "last_ack_recv_ms", in.LastAckRecv)
		}
		dst = appendUS(dst, "rtt_us", in.RTT)
		dst = appendMS(dst, "rto_ms", in.RTO)
		dst = appendUint(dst, "retransmits", uint64(in.Retransmits))
		dst = appendUint(dst, "probes", uint64(in.Probes))
		dst = appendUint(dst, "backoff", uint64(in.Backoff))
		dst = appendUint(dst, "unacked", uint64(in.Unacked))
	}
	if armed, known := s.KeepaliveArmed(); known {
		dst = appendBool(dst, "keepalive", armed)
	}
	if o != nil {
		dst = appendInt(dst, "pid", int64(o.PID))
		dst = appendStr(dst, "comm", o.Comm)
	}
	if opts != nil {
		dst = appendBool(dst, "so_keepalive", opts.KeepaliveOn)
		dst = appendSec(dst, "keepidle_s", opts.Keepalive.Time)
		dst = appendSec(dst, "keepintvl_s", opts.Keepalive.Intvl)
		dst = appendInt(dst, "keepcnt", int64(opts.Keepalive.Probes))
		dst = appendMS(dst, "user_timeout_ms", opts.UserTimeout)
	}
	return dst
}

// appendAddrPort appends ip:port ([ip]:port for IPv6) as a JSON string. Only a
// zone (an interface name) could need escaping.
func appendAddrPort(dst []byte, ap netip.AddrPort) []byte {
	if ap.Addr().Zone() != "" {
		return appendString(dst, ap.String())
	}
	dst = append(dst, '"')
	dst = ap.AppendTo(dst)
	return append(dst, '"')
}

// The cells every table shows a socket with, so that a socket prints the same
// way in every table (and in sentences about it).

// appendLocal writes the local address and port.
func appendLocal(c []byte, s *diag.Socket) []byte { return s.Local.AppendTo(c) }

// appendRemote writes the peer, as ss does for a listener: "*" for the port.
func appendRemote(c []byte, s *diag.Socket) []byte {
	if s.State == diag.StateListen && s.Remote.Port() == 0 {
		a := s.Remote.Addr()
		if a.Is6() {
			c = append(c, '[')
			c = a.AppendTo(c)
			c = append(c, ']')
		} else {
			c = a.AppendTo(c)
		}
		return append(c, ':', '*')
	}
	return s.Remote.AppendTo(c)
}

// appendIdle writes how long the connection has been idle; "-" where the
// kernel does not say (no tcp_info) or it means nothing (timesKnown).
func appendIdle(c []byte, s *diag.Socket) []byte {
	if !timesKnown(s) {
		return append(c, '-')
	}
	return AppendDuration(c, s.Idle())
}

// timesKnown: tcp_info's times since the last data and ACK count from the
// handshake; before it is done (SYN_SENT, SYN_RECV) and on a listener they
// count from nothing, and a 2 s old SYN_SENT would show an hour of idle.
func timesKnown(s *diag.Socket) bool {
	switch s.State {
	case diag.StateSynSent, diag.StateSynRecv, diag.StateNewSynRecv, diag.StateListen:
		return false
	}
	return s.Info.Len > 0
}

// appendProcess writes pid/comm, or "-".
func appendProcess(c []byte, o *proc.Owner) []byte {
	if o == nil {
		return append(c, '-')
	}
	c = strconv.AppendInt(c, int64(o.PID), 10)
	c = append(c, '/')
	return AppendPrintable(c, o.Comm)
}

// appendKeepalive writes yes, no or ?: exact from SO_KEEPALIVE when the owner's
// options were read, else what the timer tells.
func appendKeepalive(c []byte, s *diag.Socket, opts *proc.SockOpts) []byte {
	if opts != nil {
		return appendYesNo(c, opts.KeepaliveOn)
	}
	armed, known := s.KeepaliveArmed()
	if !known {
		return append(c, '?')
	}
	return appendYesNo(c, armed)
}

func appendYesNo(c []byte, v bool) []byte {
	if v {
		return append(c, "yes"...)
	}
	return append(c, "no"...)
}

// appendNextProbe writes when the next keepalive or zero-window probe goes out.
//
// The keepalive timer can fire before a probe is due: the kernel re-arms it for
// the rest of TCP_KEEPIDLE when the connection received something meanwhile. With
// the owner's options known, the first probe comes at the later of the expiry and
// KEEPIDLE minus the time since the last thing received.
func appendNextProbe(c []byte, s *diag.Socket, opts *proc.SockOpts) []byte {
	switch s.Timer {
	case diag.TimerKeepalive:
		next := s.TimerExpires
		probes := s.TimerRetrans
		if opts != nil && probes == 0 && s.Info.Len > 0 {
			rcv := min(s.Info.LastDataRecv, s.Info.LastAckRecv)
			if due := opts.Keepalive.Time - rcv; due > next {
				next = due
			}
		}
		c = append(c, "in "...)
		c = AppendDuration(c, next)
		if probes > 0 {
			c = append(c, " (probe "...)
			c = strconv.AppendUint(c, uint64(probes)+1, 10)
			// With TCP_USER_TIMEOUT the kernel probes until the silence
			// reaches it, past TCP_KEEPCNT (tcp_keepalive_timer).
			if opts != nil && opts.UserTimeout == 0 {
				c = append(c, " of "...)
				c = strconv.AppendInt(c, int64(opts.Keepalive.Probes), 10)
			}
			c = append(c, ')')
		}
		return c
	case diag.TimerPersist:
		c = append(c, "in "...)
		c = AppendDuration(c, s.TimerExpires)
		return append(c, " (zero window)"...)
	}
	return append(c, '-')
}

// appendTimer writes the pending timer and when it fires.
func appendTimer(c []byte, s *diag.Socket) []byte {
	c = append(c, s.Timer.String()...)
	if s.Timer != diag.TimerOff {
		c = append(c, ' ')
		c = AppendDuration(c, s.TimerExpires)
	}
	return c
}

// appendOpts writes KEEPIDLE/INTVL/CNT, or "-".
func appendOpts(c []byte, opts *proc.SockOpts) []byte {
	if opts == nil {
		return append(c, '-')
	}
	c = AppendDuration(c, opts.Keepalive.Time)
	c = append(c, '/')
	c = AppendDuration(c, opts.Keepalive.Intvl)
	c = append(c, '/')
	return strconv.AppendInt(c, int64(opts.Keepalive.Probes), 10)
}

// appendUserTimeout writes TCP_USER_TIMEOUT, "default" when unset, or "-".
func appendUserTimeout(c []byte, opts *proc.SockOpts) []byte {
	switch {
	case opts == nil:
		return append(c, '-')
	case opts.UserTimeout == 0:
		return append(c, "default"...)
	}
	return AppendDuration(c, opts.UserTimeout)
}
