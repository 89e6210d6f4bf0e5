package report

import (
	"fmt"
	"io"
	"time"

	"github.com/tcpkeep/tcpkeep/diag"
)

// Summary counts what a run saw. It is the last record of a run.
type Summary struct {
	Sockets int
	// ByState counts sockets by state; request sockets count as SYN_RECV, the
	// name they are reported by.
	ByState [16]int
	// Duration is how long the run took.
	Duration time.Duration
}

// Add counts one socket.
func (s *Summary) Add(sock *diag.Socket) {
	s.Sockets++
	st := sock.State
	if st == diag.StateNewSynRecv {
		st = diag.StateSynRecv
	}
	s.ByState[int(st)%len(s.ByState)]++
}

// AppendSummaryFields appends sockets, by_state and duration_ms, without braces.
func AppendSummaryFields(dst []byte, s *Summary, first bool) []byte {
	dst = appendKey(dst, "sockets", first)
	dst = appendIntValue(dst, int64(s.Sockets))
	dst = appendKey(dst, "by_state", false)
	dst = append(dst, '{')
	n := 0
	for st, c := range s.ByState {
		if c == 0 {
			continue
		}
		dst = appendKey(dst, diag.State(st).String(), n == 0)
		dst = appendIntValue(dst, int64(c))
		n++
	}
	dst = append(dst, '}')
	return appendMS(dst, "duration_ms", s.Duration)
}

// Formats a SocketWriter writes.
const (
	FormatTable  = "table"
	FormatJSON   = "json"
	FormatNDJSON = "ndjson"
)

// flushAt is how much output a SocketWriter gathers before it writes: large
// writes, few syscalls, bounded memory.
const flushAt = 64 << 10

// SocketWriter writes socket records as they come, never holding more than one
// buffer of output: ndjson (a line per socket, then a summary line), json (one
// document, {"sockets":[...],"summary":{...}}, written as it goes) or a table.
type SocketWriter struct {
	w      io.Writer
	format string
	meta   Meta
	buf    []byte
	n      int
	table  *socketTable
	err    error
}

// TableOptions chooses the table's optional columns.
type TableOptions struct {
	Processes bool // PROCESS: pid/comm
	SockOpts  bool // the owner's keepalive options
}

// NewSocketWriter starts writing records to w in format (FormatTable, FormatJSON
// or FormatNDJSON).
func NewSocketWriter(w io.Writer, format string, m Meta, t TableOptions) (*SocketWriter, error) {
	sw := &SocketWriter{w: w, format: format, meta: m, buf: make([]byte, 0, flushAt+4096)}
	switch format {
	case FormatNDJSON:
		// The header is the same for every record: write it once, copy it after.
	case FormatJSON:
		sw.buf = append(sw.buf, '{')
		sw.buf = appendKey(sw.buf, "ts", true)
		sw.buf = appendString(sw.buf, m.TSString())
		sw.buf = appendStr(sw.buf, "host", m.Host)
		sw.buf = appendStr(sw.buf, "netns", m.NetNS)
		sw.buf = appendKey(sw.buf, "sockets", false)
		sw.buf = append(sw.buf, '[')
	case FormatTable:
		sw.table = newSocketTable(t)
		sw.buf = sw.table.appendHeader(sw.buf)
	default:
		return nil, fmt.Errorf("report: unknown format %q", format)
	}
	return sw, nil
}

// Socket writes one socket record. x may be nil.
func (sw *SocketWriter) Socket(s *diag.Socket, x *SocketExtra) error {
	if sw.err != nil {
		return sw.err
	}
	switch sw.format {
	case FormatNDJSON:
		sw.buf = AppendSocketRecord(sw.buf, sw.meta, s, x)
	case FormatJSON:
		if sw.n > 0 {
			sw.buf = append(sw.buf, ',')
		}
		sw.buf = append(sw.buf, '\n')
		sw.buf = AppendSocket(sw.buf, s, x)
	case FormatTable:
		sw.buf = sw.table.appendRow(sw.buf, s, x)
	}
	sw.n++
	if len(sw.buf) >= flushAt {
		return sw.flush()
	}
	return nil
}

// Finish writes the summary, closes the json document and flushes.
func (sw *SocketWriter) Finish(sum *Summary) error {
	if sw.err != nil {
		return sw.err
	}
	switch sw.format {
	case FormatNDJSON:
		sw.buf = append(sw.buf, '{')
		sw.buf = AppendHeader(sw.buf, "summary", sw.meta)
		sw.buf = AppendSummaryFields(sw.buf, sum, false)
		sw.buf = append(sw.buf, '}', '\n')
	case FormatJSON:
		if sw.n > 0 {
			sw.buf = append(sw.buf, '\n')
		}
		sw.buf = append(sw.buf, ']')
		sw.buf = appendKey(sw.buf, "summary", false)
		sw.buf = append(sw.buf, '{')
		sw.buf = AppendSummaryFields(sw.buf, sum, true)
		sw.buf = append(sw.buf, '}', '}', '\n')
	case FormatTable:
		sw.buf = sw.table.appendSummary(sw.buf, sum)
	}
	return sw.flush()
}

func (sw *SocketWriter) flush() error {
	if len(sw.buf) == 0 {
		return nil
	}
	_, err := sw.w.Write(sw.buf)
	sw.buf = sw.buf[:0]
	if err != nil {
		sw.err = fmt.Errorf("write output: %w", err)
	}
	return sw.err
}
