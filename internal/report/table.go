package report

import (
	"strconv"
	"time"

	"github.com/tcpkeep/tcpkeep/diag"
)

// socketTable writes sockets as aligned columns that read like `ss -tino`, plus
// what ss leaves the reader to work out: idle time, whether keepalive is armed,
// and when the next probe comes. It streams: a column widens when a wider value
// comes along, and later rows use the new width.
type socketTable struct {
	opts   TableOptions
	heads  []string
	widths []int
	cells  []byte // this row's cells, back to back
	ends   []int  // where each cell ends in cells
}

func newSocketTable(o TableOptions) *socketTable {
	t := &socketTable{opts: o}
	t.heads = []string{"STATE", "LOCAL", "REMOTE", "IDLE", "TIMER", "KEEPALIVE", "NEXT-PROBE", "RETRANS/PROBES", "RECV-Q/SEND-Q"}
	if o.Processes {
		t.heads = append(t.heads, "PROCESS")
	}
	if o.SockOpts {
		t.heads = append(t.heads, "KEEPIDLE/INTVL/CNT", "USER-TIMEOUT")
	}
	t.widths = make([]int, len(t.heads))
	// Typical widths, so that the first rows already line up.
	copy(t.widths, []int{11, 21, 21, 6, 15, 9, 10, 14, 13})
	if o.Processes {
		t.widths[9] = 16
	}
	return t
}

func (t *socketTable) appendHeader(dst []byte) []byte {
	t.cells, t.ends = t.cells[:0], t.ends[:0]
	for _, h := range t.heads {
		t.cells = append(t.cells, h...)
		t.ends = append(t.ends, len(t.cells))
	}
	return t.appendLine(dst)
}

// end closes the current cell.
func (t *socketTable) end() { t.ends = append(t.ends, len(t.cells)) }

func (t *socketTable) appendRow(dst []byte, s *diag.Socket, x *SocketExtra) []byte {
	t.cells, t.ends = t.cells[:0], t.ends[:0]
	c := t.cells
	hasInfo := s.Info.Len > 0

	c = append(c, s.State.String()...)
	t.cells = c
	t.end()
	c = s.Local.AppendTo(c)
	t.cells = c
	t.end()
	c = appendRemote(c, s)
	t.cells = c
	t.end()
	if timesKnown(s) {
		c = appendHuman(c, s.Idle())
	} else {
		c = append(c, '-')
	}
	t.cells = c
	t.end()
	c = append(c, s.Timer.String()...)
	if s.Timer != diag.TimerOff {
		c = append(c, ' ')
		c = appendHuman(c, s.TimerExpires)
	}
	t.cells = c
	t.end()
	c = appendKeepalive(c, s, x)
	t.cells = c
	t.end()
	c = appendNextProbe(c, s, x)
	t.cells = c
	t.end()
	if hasInfo {
		c = strconv.AppendUint(c, uint64(s.Info.Retransmits), 10)
		c = append(c, '/')
		c = strconv.AppendUint(c, uint64(s.Info.Probes), 10)
	} else {
		c = append(c, '-')
	}
	t.cells = c
	t.end()
	c = strconv.AppendUint(c, uint64(s.RecvQ), 10)
	c = append(c, '/')
	c = strconv.AppendUint(c, uint64(s.SendQ), 10)
	t.cells = c
	t.end()
	if t.opts.Processes {
		if x != nil && x.HasOwner {
			c = strconv.AppendInt(c, int64(x.PID), 10)
			c = append(c, '/')
			c = appendPrintable(c, x.Comm)
		} else {
			c = append(c, '-')
		}
		t.cells = c
		t.end()
	}
	if t.opts.SockOpts {
		if x != nil && x.HasOpts {
			c = appendHuman(c, x.Opts.KeepIdle)
			c = append(c, '/')
			c = appendHuman(c, x.Opts.KeepIntvl)
			c = append(c, '/')
			c = strconv.AppendInt(c, int64(x.Opts.KeepCnt), 10)
		} else {
			c = append(c, '-')
		}
		t.cells = c
		t.end()
		switch {
		case x == nil || !x.HasOpts:
			c = append(c, '-')
		case x.Opts.UserTimeout == 0:
			c = append(c, "default"...)
		default:
			c = appendHuman(c, x.Opts.UserTimeout)
		}
		t.cells = c
		t.end()
	}
	return t.appendLine(dst)
}

// appendRemote writes the peer as ss does for listeners: "*" for the port.
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

// appendKeepalive writes yes, no or ?: exact from SO_KEEPALIVE when the owner's
// options were read, else what the timer tells.
func appendKeepalive(c []byte, s *diag.Socket, x *SocketExtra) []byte {
	if x != nil && x.HasOpts {
		if x.Opts.KeepAlive {
			return append(c, "yes"...)
		}
		return append(c, "no"...)
	}
	armed, known := s.KeepaliveArmed()
	switch {
	case !known:
		return append(c, '?')
	case armed:
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
func appendNextProbe(c []byte, s *diag.Socket, x *SocketExtra) []byte {
	switch s.Timer {
	case diag.TimerKeepalive:
		next := s.TimerExpires
		probes := s.TimerRetrans
		hasOpts := x != nil && x.HasOpts
		if hasOpts && probes == 0 && s.Info.Len > 0 {
			rcv := min(s.Info.LastDataRecv, s.Info.LastAckRecv)
			if due := x.Opts.KeepIdle - rcv; due > next {
				next = due
			}
		}
		c = append(c, "in "...)
		c = appendHuman(c, next)
		if probes > 0 {
			c = append(c, " (probe "...)
			c = strconv.AppendUint(c, uint64(probes)+1, 10)
			// With TCP_USER_TIMEOUT the kernel probes until the silence
			// reaches it, past TCP_KEEPCNT (tcp_keepalive_timer).
			if hasOpts && x.Opts.UserTimeout == 0 {
				c = append(c, " of "...)
				c = strconv.AppendInt(c, int64(x.Opts.KeepCnt), 10)
			}
			c = append(c, ')')
		}
		return c
	case diag.TimerPersist:
		c = append(c, "in "...)
		c = appendHuman(c, s.TimerExpires)
		return append(c, " (zero window)"...)
	}
	return append(c, '-')
}

// appendLine pads the row's cells to the column widths, widening as needed.
func (t *socketTable) appendLine(dst []byte) []byte {
	start := 0
	for i, end := range t.ends {
		cell := t.cells[start:end]
		start = end
		dst = append(dst, cell...)
		if i == len(t.ends)-1 {
			break
		}
		if len(cell) > t.widths[i] {
			t.widths[i] = len(cell)
		}
		for pad := t.widths[i] - len(cell) + 2; pad > 0; pad-- {
			dst = append(dst, ' ')
		}
	}
	return append(dst, '\n')
}

func (t *socketTable) appendSummary(dst []byte, sum *Summary) []byte {
	dst = append(dst, '\n')
	dst = strconv.AppendInt(dst, int64(sum.Sockets), 10)
	if sum.Sockets == 1 {
		dst = append(dst, " socket"...)
	} else {
		dst = append(dst, " sockets"...)
	}
	n := 0
	for st, k := range sum.ByState {
		if k == 0 {
			continue
		}
		if n == 0 {
			dst = append(dst, ": "...)
		} else {
			dst = append(dst, ", "...)
		}
		dst = strconv.AppendInt(dst, int64(k), 10)
		dst = append(dst, ' ')
		dst = append(dst, diag.State(st).String()...)
		n++
	}
	dst = append(dst, " ("...)
	dst = appendHuman(dst, sum.Duration)
	return append(dst, ")\n"...)
}

// appendPrintable writes s for a terminal: control bytes become '?'.
func appendPrintable(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			dst = append(dst, '?')
		} else {
			dst = append(dst, c)
		}
	}
	return dst
}

// appendHuman writes a duration for people, short: 450ms, 1.5s, 42s, 4m12s,
// 2h11m, 3d4h.
func appendHuman(dst []byte, d time.Duration) []byte {
	if d < 0 {
		d = 0
	}
	switch {
	case d < time.Second:
		dst = strconv.AppendInt(dst, d.Milliseconds(), 10)
		return append(dst, "ms"...)
	case d < 10*time.Second:
		ds := d / (100 * time.Millisecond)
		dst = strconv.AppendInt(dst, int64(ds/10), 10)
		if ds%10 != 0 {
			dst = append(dst, '.', byte('0'+ds%10))
		}
		return append(dst, 's')
	case d < time.Minute:
		dst = strconv.AppendInt(dst, int64(d/time.Second), 10)
		return append(dst, 's')
	case d < time.Hour:
		return appendTwo(dst, int64(d/time.Minute), 'm', int64(d%time.Minute/time.Second), 's')
	case d < 48*time.Hour:
		return appendTwo(dst, int64(d/time.Hour), 'h', int64(d%time.Hour/time.Minute), 'm')
	}
	return appendTwo(dst, int64(d/(24*time.Hour)), 'd', int64(d%(24*time.Hour)/time.Hour), 'h')
}

func appendTwo(dst []byte, a int64, ua byte, b int64, ub byte) []byte {
	dst = strconv.AppendInt(dst, a, 10)
	dst = append(dst, ua)
	if b != 0 {
		dst = strconv.AppendInt(dst, b, 10)
		dst = append(dst, ub)
	}
	return dst
}
