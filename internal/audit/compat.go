package audit

import (
	"time"

	"github.com/tcpkeep/tcpkeep/diag"
)

// idleOf is how long a connection has moved no data either way: the shorter of
// the times since data was last sent and last received (DESIGN.md's idle_ms).
func idleOf(s *diag.Socket) time.Duration {
	return min(s.Info.LastDataSent, s.Info.LastDataRecv)
}

// keepaliveArmed says whether SO_KEEPALIVE's timer is armed, as far as
// sock_diag can tell: an ESTABLISHED socket shows the keepalive timer when it is;
// a pending retransmit or zero-window timer hides it (known is false).
func keepaliveArmed(s *diag.Socket) (armed, known bool) {
	switch s.Timer {
	case diag.TimerKeepalive:
		return s.State != diag.StateFinWait2, true
	case diag.TimerRetransmit, diag.TimerPersist:
		return false, false
	case diag.TimerFinWait2:
		return false, true
	}
	return false, true
}
