package diag

// TEMPORARY stub of the diag API (branch diag writes the real one); the conns
// branch deletes this file when it merges diag.

import (
	"context"
	"errors"
	"iter"
	"net/netip"
	"time"
)

type Config struct{ NetNS int }
type Conn struct{}

func Dial(cfg *Config) (*Conn, error) { return nil, errors.New("diag: stub") }
func (c *Conn) Close() error          { return nil }
func (c *Conn) Sockets(ctx context.Context, f *Filter) iter.Seq2[*Socket, error] {
	return func(yield func(*Socket, error) bool) { yield(nil, errors.New("diag: stub")) }
}
func (c *Conn) Destroy(s *Socket) error { return errors.New("diag: stub") }

type StateSet uint32

func ParseStates(s string) (StateSet, error) {
	switch s {
	case "all":
		return 0xfff, nil
	case "connected":
		return 0xfff &^ (1<<StateListen | 1<<StateClose | 1<<StateTimeWait | 1<<StateSynRecv), nil
	case "established":
		return 1 << StateEstablished, nil
	case "listening":
		return 1 << StateListen, nil
	}
	return 0, errors.New("unknown state " + s)
}

type PortRange struct{ Lo, Hi uint16 }
type Filter struct {
	States   StateSet
	Family   Family
	SPort    PortRange
	DPort    PortRange
	Src, Dst netip.Prefix
}

func (s State) String() string {
	n := [...]string{"UNKNOWN", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT", "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING", "SYN_RECV"}
	if int(s) < len(n) {
		return n[s]
	}
	return "UNKNOWN"
}
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
	return "unknown"
}
func (s *Socket) Idle() time.Duration {
	if s.Info.LastDataRecv < s.Info.LastDataSent {
		return s.Info.LastDataRecv
	}
	return s.Info.LastDataSent
}
func (s *Socket) KeepaliveArmed() (armed, known bool) {
	if s.Timer == TimerKeepalive && s.State == StateEstablished {
		return true, true
	}
	return false, false
}
func (s *Socket) ID() string { return s.Local.String() + "->" + s.Remote.String() }
