package report

import (
	"net/netip"
	"time"

	"github.com/tcpkeep/tcpkeep/diag"
	"github.com/tcpkeep/tcpkeep/internal/proc"
)

// SocketExtra is what a socket record carries besides what sock_diag reports:
// the owning process (with -p) and its real socket options (with --sockopts).
type SocketExtra struct {
	// HasOwner says PID and Comm are known.
	HasOwner bool
	PID      int
	Comm     string
	// HasOpts says Opts were read from the owner's descriptor.
	HasOpts bool
	Opts    proc.SockOpts
}

// AppendSocket appends the socket record as a JSON object without the ndjson
// header: the form a finding embeds under "socket" and -o json lists. x may be
// nil. It allocates nothing once dst has room.
func AppendSocket(dst []byte, s *diag.Socket, x *SocketExtra) []byte {
	dst = append(dst, '{')
	dst = AppendSocketFields(dst, s, x, true)
	return append(dst, '}')
}

// AppendSocketRecord appends one ndjson line: `{"type":"socket","ts":...,...}\n`.
func AppendSocketRecord(dst []byte, m Meta, s *diag.Socket, x *SocketExtra) []byte {
	dst = append(dst, '{')
	dst = AppendHeader(dst, "socket", m)
	dst = AppendSocketFields(dst, s, x, false)
	return append(dst, '}', '\n')
}

// AppendSocketFields appends the socket record's keys in README's order, without
// braces; first says whether they open the object (no leading comma).
//
// Keys from tcp_info are absent when the kernel sent none (TIME_WAIT and request
// sockets), and the idle and last_* times before the handshake and on
// listeners (timesKnown); keepalive is absent where the timer cannot tell; pid and comm are
// present with x.HasOwner, the option keys with x.HasOpts.
func AppendSocketFields(dst []byte, s *diag.Socket, x *SocketExtra, first bool) []byte {
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
		dst = appendInt(dst, "rtt_us", in.RTT.Microseconds())
		dst = appendMS(dst, "rto_ms", in.RTO)
		dst = appendUint(dst, "retransmits", uint64(in.Retransmits))
		dst = appendUint(dst, "probes", uint64(in.Probes))
		dst = appendUint(dst, "backoff", uint64(in.Backoff))
		dst = appendUint(dst, "unacked", uint64(in.Unacked))
	}
	if armed, known := s.KeepaliveArmed(); known {
		dst = appendBool(dst, "keepalive", armed)
	}
	if x == nil {
		return dst
	}
	if x.HasOwner {
		dst = appendInt(dst, "pid", int64(x.PID))
		dst = appendStr(dst, "comm", x.Comm)
	}
	if x.HasOpts {
		o := &x.Opts
		dst = appendBool(dst, "so_keepalive", o.KeepAlive)
		dst = appendInt(dst, "keepidle_s", int64(o.KeepIdle/time.Second))
		dst = appendInt(dst, "keepintvl_s", int64(o.KeepIntvl/time.Second))
		dst = appendInt(dst, "keepcnt", int64(o.KeepCnt))
		dst = appendMS(dst, "user_timeout_ms", o.UserTimeout)
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
