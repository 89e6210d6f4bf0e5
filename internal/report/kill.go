package report

import (
	"fmt"
	"io"
	"strings"

	"github.com/tcpkeep/tcpkeep/diag"
	"github.com/tcpkeep/tcpkeep/internal/kill"
)

// KillWriter writes a kill run: an "action" per selected socket as it is
// handled (ndjson lines, or the "actions" of one "kill" document), then a
// "kill_summary"; or a table with a row per action and a summary line.
type KillWriter struct {
	st     *stream
	table  *table
	words  Words
	dryRun bool
	procs  bool
}

// NewKillWriter starts writing a kill run in format f. With procs the table
// has a PROCESS column (the records carry pid and comm whenever an owner is
// known).
func NewKillWriter(w io.Writer, f Format, m Meta, words Words, dryRun, procs bool) *KillWriter {
	kw := &KillWriter{st: newStream(w, f, m), words: words, dryRun: dryRun, procs: procs}
	if f == Table {
		kw.table = newActionTable(procs)
	}
	kw.st.doc("kill", "actions", func(b []byte) []byte { return appendBool(b, "dry_run", dryRun) })
	return kw
}

// Action writes one action.
func (kw *KillWriter) Action(a *kill.Action) error {
	st := kw.st
	msg := ""
	if a.Finding != nil {
		msg = kw.words.Message(a.Finding)
	}
	if t := kw.table; t != nil {
		actionCells(t, a.Result.String(), a.Reason, a.Socket)
		if kw.procs {
			t.c = appendProcess(t.c, a.Owner)
			t.end()
		}
		if a.Err != nil {
			t.note = fmt.Appendf(t.note, "  error: %s\n", oneLine(a.Err.Error()))
		}
		if kw.dryRun && msg != "" {
			t.note = fmt.Appendf(t.note, "  why: %s\n", msg)
		}
		st.buf = t.row(st.buf)
		if len(st.buf) >= flushAt {
			return st.flush()
		}
		return st.err
	}
	first := st.begin("action")
	st.buf = appendActionFields(st.buf, a, msg, first)
	return st.end()
}

// appendActionFields appends a kill's action: action (kill), socket, reason,
// message, result and error.
func appendActionFields(dst []byte, a *kill.Action, msg string, first bool) []byte {
	dst = appendKey(dst, "action", first)
	dst = appendString(dst, "kill")
	dst = appendSocket(appendKey(dst, "socket", false), a.Socket, a.Owner, nil)
	dst = appendStr(dst, "reason", a.Reason)
	if msg != "" {
		dst = appendStr(dst, "message", msg)
	}
	dst = appendStr(dst, "result", a.Result.String())
	if a.Err != nil {
		dst = appendStr(dst, "error", oneLine(a.Err.Error()))
	}
	return dst
}

// Finish writes the summary and flushes.
func (kw *KillWriter) Finish(s *kill.Summary) error {
	st := kw.st
	if t := kw.table; t != nil {
		st.buf = t.flush(st.buf)
		ns := st.m.NetNS
		took := Duration(s.Duration)
		checked := Count(s.Sockets, "socket")
		var line string
		switch {
		case s.Interrupted:
			line = fmt.Sprintf("\nnetns %s: interrupted after %s: %d selected, %d closed, %d gone, %d failed (took %s).", ns, checked, s.Selected, s.Closed, s.Gone, s.Failed, took)
		case s.Stopped:
			line = fmt.Sprintf("\nnetns %s: stopped at the first socket the kernel refused to close: %d selected, %d closed, %d failed (took %s).", ns, s.Selected, s.Closed, s.Failed, took)
		case s.Selected == 0:
			line = fmt.Sprintf("Nothing to close: none of the %s in netns %s was selected (took %s).", checked, ns, took)
		case kw.dryRun:
			line = fmt.Sprintf("\nDry run: %d of %s in netns %s would be closed; nothing was (took %s).", s.Selected, checked, ns, took)
		default:
			line = fmt.Sprintf("\nnetns %s: %d of %s selected: %d closed, %d gone, %d failed (took %s).", ns, s.Selected, checked, s.Closed, s.Gone, s.Failed, took)
		}
		st.buf = append(append(st.buf, line...), '\n')
		return st.flush()
	}
	first := st.summary("kill_summary")
	st.buf = appendKey(st.buf, "sockets", first)
	st.buf = appendIntValue(st.buf, int64(s.Sockets))
	st.buf = appendInt(st.buf, "selected", int64(s.Selected))
	st.buf = appendInt(st.buf, "closed", int64(s.Closed))
	st.buf = appendInt(st.buf, "gone", int64(s.Gone))
	st.buf = appendInt(st.buf, "failed", int64(s.Failed))
	st.buf = appendBool(st.buf, "dry_run", kw.dryRun)
	st.buf = appendBool(st.buf, "stopped", s.Stopped)
	st.buf = appendMS(st.buf, "duration_ms", s.Duration)
	st.buf = appendBool(st.buf, "interrupted", s.Interrupted)
	return st.close(nil)
}

// oneLine makes an error one line.
func oneLine(s string) string { return strings.ReplaceAll(strings.TrimSpace(s), "\n", "; ") }

// newActionTable is the table every action table is (kill's and arm's): the
// cells actionCells writes, PROCESS with procs, then extra columns. It has no
// header until a row comes: with nothing selected, one line says so.
func newActionTable(procs bool, extra ...string) *table {
	heads := []string{"RESULT", "REASON", "STATE", "LOCAL", "REMOTE", "IDLE"}
	if procs {
		heads = append(heads, "PROCESS")
	}
	t := newTable(append(heads, extra...)...)
	t.headless = true
	return t
}

// actionCells writes the cells every action table starts with (kill's and
// arm's): result, reason, state, local, remote, idle.
func actionCells(t *table, result, reason string, s *diag.Socket) {
	t.cell(result)
	t.cell(reason)
	t.cell(s.State.String())
	t.c = appendLocal(t.c, s)
	t.end()
	t.c = appendRemote(t.c, s)
	t.end()
	t.c = appendIdle(t.c, s)
	t.end()
}
