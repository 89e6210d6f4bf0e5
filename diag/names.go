package diag

import (
	"net/netip"
	"strconv"
	"time"
)

var stateStrings = [...]string{
	StateEstablished: "ESTABLISHED",
	StateSynSent:     "SYN_SENT",
	StateSynRecv:     "SYN_RECV",
	StateFinWait1:    "FIN_WAIT1",
	StateFinWait2:    "FIN_WAIT2",
	StateTimeWait:    "TIME_WAIT",
	StateClose:       "CLOSE",
	StateCloseWait:   "CLOSE_WAIT",
	StateLastAck:     "LAST_ACK",
	StateListen:      "LISTEN",
	StateClosing:     "CLOSING",
	StateNewSynRecv:  "SYN_RECV", // a request socket is a connection in SYN_RECV
}

// String is the kernel's name of the state (ESTABLISHED, SYN_SENT, ...). A
// request socket (NEW_SYN_RECV) prints SYN_RECV, as ss shows it.
func (s State) String() string {
	if int(s) < len(stateStrings) && stateStrings[s] != "" {
		return stateStrings[s]
	}
	return "UNKNOWN_" + strconv.Itoa(int(s))
}

// String names the timer as records do: off, retransmit, keepalive, timewait,
// persist, delack, fin_wait2.
func (t Timer) String() string {
	switch t {
	case TimerOff:
		return "off"
	case TimerRetransmit:
		return "retransmit"
	case TimerKeepalive:
		return "keepalive"
	case TimerTimeWait:
		return "timewait"
	case TimerPersist:
		return "persist"
	case TimerDelack:
		return "delack"
	case TimerFinWait2:
		return "fin_wait2"
	}
	return "unknown_" + strconv.Itoa(int(t))
}

// Idle is how long the connection has carried no data in either direction: the
// lesser of the times since data was last sent and last received. It is 0 where
// the kernel sent no tcp_info.
func (s *Socket) Idle() time.Duration {
	if s.Info.Len == 0 {
		return 0
	}
	return min(s.Info.LastDataSent, s.Info.LastDataRecv)
}

// KeepaliveArmed tells whether an ESTABLISHED socket has keepalive armed, as
// far as sock_diag can tell: sock_diag does not export SO_KEEPALIVE, but on an
// idle ESTABLISHED socket the pending timer is the keepalive timer if and only
// if keepalive is on. While a retransmit, persist or delayed-ACK timer is pending
// it cannot tell (known false), nor for any other state.
func (s *Socket) KeepaliveArmed() (armed, known bool) {
	if s.State != StateEstablished {
		return false, false
	}
	switch s.Timer {
	case TimerKeepalive:
		return true, true
	case TimerOff:
		return false, true
	}
	return false, false
}

// ID names the socket for people and error messages:
// "10.0.0.1:5000 -> 10.0.0.2:80 cookie 0x2a".
func (s *Socket) ID() string {
	b := make([]byte, 0, 96)
	b = appendAddrPort(b, s.Local)
	b = append(b, " -> "...)
	b = appendAddrPort(b, s.Remote)
	b = append(b, " cookie 0x"...)
	b = strconv.AppendUint(b, s.Cookie, 16)
	return string(b)
}

func appendAddrPort(b []byte, ap netip.AddrPort) []byte {
	if !ap.IsValid() {
		return append(b, '?')
	}
	return ap.AppendTo(b)
}
