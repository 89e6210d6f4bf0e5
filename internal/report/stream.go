package report

import (
	"fmt"
	"io"
)

// flushAt is how much output a stream gathers before it writes: large writes,
// few system calls, bounded memory. It writes only at the end of a record.
const flushAt = 64 << 10

// stream writes the records of one run as they come, as ndjson lines (each with
// the header) or as one JSON document (the header once, the records in an array
// under one key, then the summary). It holds at most one buffer of output and
// writes whole records only, so output that stops early (a failed write, an
// interrupted run) ends at a record's end. The first failed write stops it.
type stream struct {
	w    io.Writer
	f    Format
	m    Meta
	buf  []byte
	n    int // records in the array so far
	err  error
	open bool // a json document has been opened
}

func newStream(w io.Writer, f Format, m Meta) *stream {
	return &stream{w: w, f: f, m: m, buf: make([]byte, 0, flushAt+4096)}
}

// doc opens the json document of type typ: its header, then what head appends
// (document keys, each with its leading comma; may be nil), then the array
// key. For ndjson it does nothing.
func (s *stream) doc(typ, array string, head func([]byte) []byte) {
	if s.f != JSON {
		return
	}
	s.buf = append(s.buf, '{')
	s.buf = AppendHeader(s.buf, typ, s.m)
	if head != nil {
		s.buf = head(s.buf)
	}
	s.buf = appendKey(s.buf, array, false)
	s.buf = append(s.buf, '[')
	s.open = true
}

// begin opens one record of type typ, and reports whether its first key opens
// the object (an array element has no header, an ndjson line does).
func (s *stream) begin(typ string) (first bool) {
	if s.f == NDJSON {
		s.buf = append(s.buf, '{')
		s.buf = AppendHeader(s.buf, typ, s.m)
		return false
	}
	if s.n > 0 {
		s.buf = append(s.buf, ',')
	}
	s.buf = append(s.buf, '\n', '{')
	return true
}

// end closes the record begin opened, and writes if the buffer is full.
func (s *stream) end() error {
	s.buf = append(s.buf, '}')
	if s.f == NDJSON {
		s.buf = append(s.buf, '\n')
	}
	s.n++
	if len(s.buf) >= flushAt {
		return s.flush()
	}
	return nil
}

// summary opens the summary of type typ: an ndjson line, or the document's
// "summary" object after its array. It reports whether its first key opens
// the object.
func (s *stream) summary(typ string) (first bool) {
	if s.f == NDJSON {
		s.buf = append(s.buf, '{')
		s.buf = AppendHeader(s.buf, typ, s.m)
		return false
	}
	if s.n > 0 {
		s.buf = append(s.buf, '\n')
	}
	s.buf = append(s.buf, ']')
	s.buf = appendKey(s.buf, "summary", false)
	s.buf = append(s.buf, '{')
	return true
}

// close ends the summary and, with tail (document keys after the summary,
// each with its leading comma; may be nil), the document; then it writes.
func (s *stream) close(tail func([]byte) []byte) error {
	s.buf = append(s.buf, '}')
	if s.open {
		if tail != nil {
			s.buf = tail(s.buf)
		}
		s.buf = append(s.buf, '}')
	}
	s.buf = append(s.buf, '\n')
	return s.flush()
}

// abort ends a run that failed midway: the whole records it holds are written
// and a json document is closed, without a summary. A stream that holds no
// record writes nothing at all.
func (s *stream) abort() error {
	if s.n == 0 {
		s.buf = s.buf[:0]
		return s.err
	}
	if s.open {
		s.buf = append(s.buf, "\n]}\n"...)
	}
	return s.flush()
}

func (s *stream) flush() error {
	if s.err != nil {
		s.buf = s.buf[:0]
		return s.err
	}
	if len(s.buf) == 0 {
		return nil
	}
	_, err := s.w.Write(s.buf)
	s.buf = s.buf[:0]
	if err != nil {
		s.err = fmt.Errorf("write output: %w", err)
	}
	return s.err
}

// writeRecord writes one whole record of type typ, a document or a line alike:
// what fields appends, each key with its leading comma.
func writeRecord(w io.Writer, typ string, m Meta, fields func([]byte) []byte) error {
	b := append(make([]byte, 0, 512), '{')
	b = AppendHeader(b, typ, m)
	b = fields(b)
	b = append(b, '}', '\n')
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}
