package report

import (
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/tcpkeep/tcpkeep/diag"
	"github.com/tcpkeep/tcpkeep/internal/proc"
)

// ConnsSummary is the conns_summary record: what a listing saw.
type ConnsSummary struct {
	diag.Counts
	Duration time.Duration
	// Interrupted: the run was stopped (a signal) before the dump ended.
	Interrupted bool
}

// TableOptions chooses the socket table's optional columns.
type TableOptions struct {
	Processes bool // PROCESS: pid/comm
	SockOpts  bool // the owner's keepalive options
}

// SocketWriter writes a listing of sockets as they come, never holding more
// than one buffer of output (or, for the table, its bounded window): ndjson (a
// "socket" line per socket, then a "conns_summary" line), json (one "conns"
// document, {..."sockets":[...],"summary":{...}}) or a table. A socket costs no
// allocation.
type SocketWriter struct {
	st    *stream
	table *table
	opts  TableOptions
}

// NewSocketWriter starts a listing in format f (Table, JSON or NDJSON).
func NewSocketWriter(w io.Writer, f Format, m Meta, o TableOptions) (*SocketWriter, error) {
	sw := &SocketWriter{st: newStream(w, f, m), opts: o}
	switch f {
	case NDJSON, JSON:
		sw.st.doc("conns", "sockets", nil)
	case Table:
		heads := []string{"STATE", "LOCAL", "REMOTE", "IDLE", "TIMER", "KEEPALIVE", "NEXT-PROBE", "RETRANS/PROBES", "RECV-Q/SEND-Q"}
		if o.Processes {
			heads = append(heads, "PROCESS")
		}
		if o.SockOpts {
			heads = append(heads, "KEEPIDLE/INTVL/CNT", "USER-TIMEOUT")
		}
		sw.table = newTable(heads...)
	default:
		return nil, fmt.Errorf("report: conns cannot write %q", f)
	}
	return sw, nil
}

// Socket writes one socket; o (with -p) and opts (with --sockopts) may be nil.
func (sw *SocketWriter) Socket(s *diag.Socket, o *proc.Owner, opts *proc.SockOpts) error {
	st := sw.st
	if st.err != nil {
		return st.err
	}
	if sw.table == nil {
		first := st.begin("socket")
		st.buf = appendSocketFields(st.buf, s, o, opts, first)
		return st.end()
	}
	sw.appendRow(s, o, opts)
	st.buf = sw.table.row(st.buf)
	if len(st.buf) >= flushAt {
		return st.flush()
	}
	return nil
}

// appendRow builds the table row of s: it reads like `ss -tino`, plus what ss
// leaves the reader to work out: idle time, whether keepalive is armed, and
// when the next probe comes.
func (sw *SocketWriter) appendRow(s *diag.Socket, o *proc.Owner, opts *proc.SockOpts) {
	t := sw.table
	t.c = append(t.c, s.State.String()...)
	t.end()
	t.c = appendLocal(t.c, s)
	t.end()
	t.c = appendRemote(t.c, s)
	t.end()
	t.c = appendIdle(t.c, s)
	t.end()
	t.c = appendTimer(t.c, s)
	t.end()
	t.c = appendKeepalive(t.c, s, opts)
	t.end()
	t.c = appendNextProbe(t.c, s, opts)
	t.end()
	if s.Info.Len > 0 {
		t.c = strconv.AppendUint(t.c, uint64(s.Info.Retransmits), 10)
		t.c = append(t.c, '/')
		t.c = strconv.AppendUint(t.c, uint64(s.Info.Probes), 10)
	} else {
		t.c = append(t.c, '-')
	}
	t.end()
	t.c = strconv.AppendUint(t.c, uint64(s.RecvQ), 10)
	t.c = append(t.c, '/')
	t.c = strconv.AppendUint(t.c, uint64(s.SendQ), 10)
	t.end()
	if sw.opts.Processes {
		t.c = appendProcess(t.c, o)
		t.end()
	}
	if sw.opts.SockOpts {
		t.c = appendOpts(t.c, opts)
		t.end()
		t.c = appendUserTimeout(t.c, opts)
		t.end()
	}
}

// Finish writes the summary, closes the json document and flushes.
func (sw *SocketWriter) Finish(sum *ConnsSummary) error {
	st := sw.st
	if sw.table != nil {
		st.buf = sw.table.flush(st.buf)
		st.buf = append(st.buf, '\n')
		st.buf = appendCounts(st.buf, &sum.Counts)
		st.buf = append(st.buf, " ("...)
		st.buf = AppendDuration(st.buf, sum.Duration)
		st.buf = append(st.buf, ')')
		if sum.Interrupted {
			st.buf = append(st.buf, "; interrupted before the dump ended"...)
		}
		st.buf = append(st.buf, '\n')
		return st.flush()
	}
	first := st.summary("conns_summary")
	st.buf = appendCountsFields(st.buf, &sum.Counts, first)
	st.buf = appendMS(st.buf, "duration_ms", sum.Duration)
	st.buf = appendBool(st.buf, "interrupted", sum.Interrupted)
	return st.close(nil)
}

// Abort ends a listing whose dump failed midway: the sockets so far, and no
// summary (the json document is closed without one).
func (sw *SocketWriter) Abort() error {
	if sw.table != nil {
		if sw.table.rows > 0 {
			sw.st.buf = sw.table.flush(sw.st.buf)
		}
		return sw.st.flush()
	}
	return sw.st.abort()
}

// appendCountsFields appends sockets and by_state.
func appendCountsFields(dst []byte, c *diag.Counts, first bool) []byte {
	dst = appendKey(dst, "sockets", first)
	dst = strconv.AppendInt(dst, int64(c.Sockets), 10)
	dst = appendKey(dst, "by_state", false)
	dst = append(dst, '{')
	n := 0
	for st, k := range c.ByState {
		if k == 0 {
			continue
		}
		dst = appendKey(dst, diag.State(st).String(), n == 0)
		dst = strconv.AppendInt(dst, int64(k), 10)
		n++
	}
	return append(dst, '}')
}

// appendCounts writes "4 sockets: 3 ESTABLISHED, 1 LISTEN".
func appendCounts(dst []byte, c *diag.Counts) []byte {
	dst = appendCount(dst, c.Sockets, "socket")
	if c.Sockets > 0 {
		dst = append(dst, ": "...)
		dst = appendStates(dst, c)
	}
	return dst
}

// appendStates writes "3 ESTABLISHED, 1 LISTEN".
func appendStates(dst []byte, c *diag.Counts) []byte {
	n := 0
	for st, k := range c.ByState {
		if k == 0 {
			continue
		}
		if n > 0 {
			dst = append(dst, ", "...)
		}
		dst = strconv.AppendInt(dst, int64(k), 10)
		dst = append(dst, ' ')
		dst = append(dst, diag.State(st).String()...)
		n++
	}
	return dst
}
