package report

import (
	"fmt"
	"io"
	"strconv"

	"github.com/tcpkeep/tcpkeep/internal/kill"
	"github.com/tcpkeep/tcpkeep/internal/proc"
)

// ArmWriter writes an arm run: an "action" per selected socket as it is
// handled (ndjson lines, or the "actions" of one "arm" document), then an
// "arm_summary"; or a table with a row per action and a summary line.
type ArmWriter struct {
	st     *stream
	table  *table
	words  Words
	dryRun bool
	procs  bool
}

// NewArmWriter starts writing an arm run in format f. With procs the table
// has a PROCESS column (the records carry pid and comm whenever an owner was
// found, which arming needs anyway).
func NewArmWriter(w io.Writer, f Format, m Meta, words Words, dryRun, procs bool) *ArmWriter {
	aw := &ArmWriter{st: newStream(w, f, m), words: words, dryRun: dryRun, procs: procs}
	if f == Table {
		aw.table = newActionTable(procs, "BEFORE", "AFTER")
	}
	aw.st.doc("arm", "actions", func(b []byte) []byte { return appendBool(b, "dry_run", dryRun) })
	return aw
}

// Action writes one action.
func (aw *ArmWriter) Action(a *kill.ArmAction) error {
	st := aw.st
	msg := ""
	if a.Finding != nil {
		msg = aw.words.Message(a.Finding)
	}
	if t := aw.table; t != nil {
		actionCells(t, a.Result.String(), a.Reason, a.Socket)
		if aw.procs {
			t.c = appendProcess(t.c, a.Owner)
			if a.Owner != nil {
				t.c = append(t.c, " fd "...)
				t.c = strconv.AppendInt(t.c, int64(a.FD), 10)
			}
			t.end()
		}
		t.c = appendArmed(t.c, a.Before)
		t.end()
		t.c = appendArmed(t.c, a.After)
		t.end()
		if a.Err != nil {
			t.note = fmt.Appendf(t.note, "  error: %s\n", oneLine(a.Err.Error()))
		}
		if aw.dryRun && msg != "" {
			t.note = fmt.Appendf(t.note, "  why: %s\n", msg)
		}
		st.buf = t.row(st.buf)
		if len(st.buf) >= flushAt {
			return st.flush()
		}
		return st.err
	}
	first := st.begin("action")
	st.buf = appendKey(st.buf, "action", first)
	st.buf = appendString(st.buf, "arm")
	st.buf = appendSocket(appendKey(st.buf, "socket", false), a.Socket, a.Owner, nil)
	st.buf = appendStr(st.buf, "reason", a.Reason)
	if msg != "" {
		st.buf = appendStr(st.buf, "message", msg)
	}
	st.buf = appendSockOpts(st.buf, "before", a.Before)
	st.buf = appendSockOpts(st.buf, "after", a.After)
	st.buf = appendStr(st.buf, "result", a.Result.String())
	if a.Err != nil {
		st.buf = appendStr(st.buf, "error", oneLine(a.Err.Error()))
	}
	return st.end()
}

// Finish writes the summary, with the values set, and flushes.
func (aw *ArmWriter) Finish(s *kill.ArmSummary) error {
	st, k := aw.st, s.Values
	if t := aw.table; t != nil {
		st.buf = t.flush(st.buf)
		ns := st.m.NetNS
		took := Duration(s.Duration)
		checked := Count(s.Sockets, "socket")
		v := string(appendKeepalive3(nil, k))
		var line string
		switch {
		case s.Interrupted:
			line = fmt.Sprintf("\nnetns %s: interrupted after %s: %d selected, %d armed, %d unchanged, %d gone, %d failed (took %s).", ns, checked, s.Selected, s.Armed, s.Unchanged, s.Gone, s.Failed, took)
		case s.Stopped:
			line = fmt.Sprintf("\nnetns %s: stopped at the first socket tcpkeep could not take from its owner: %d selected, %d armed, %d failed (took %s).", ns, s.Selected, s.Armed, s.Failed, took)
		case s.Selected == 0:
			line = fmt.Sprintf("Nothing to arm: none of the %s in netns %s was selected (took %s).", checked, ns, took)
		case aw.dryRun:
			line = fmt.Sprintf("\nDry run: %d of %s in netns %s would be armed with %s, %d already are, %d gone, %d failed; nothing was set (took %s).", s.WouldArm, checked, ns, v, s.Unchanged, s.Gone, s.Failed, took)
		default:
			line = fmt.Sprintf("\nnetns %s: %d of %s selected: %d armed with %s, %d already were, %d gone, %d failed (took %s).", ns, s.Selected, checked, s.Armed, v, s.Unchanged, s.Gone, s.Failed, took)
		}
		st.buf = append(append(st.buf, line...), '\n')
		return st.flush()
	}
	first := st.summary("arm_summary")
	st.buf = appendKey(st.buf, "sockets", first)
	st.buf = appendIntValue(st.buf, int64(s.Sockets))
	st.buf = appendInt(st.buf, "selected", int64(s.Selected))
	st.buf = appendInt(st.buf, "armed", int64(s.Armed))
	st.buf = appendInt(st.buf, "unchanged", int64(s.Unchanged))
	st.buf = appendInt(st.buf, "would_arm", int64(s.WouldArm))
	st.buf = appendInt(st.buf, "gone", int64(s.Gone))
	st.buf = appendInt(st.buf, "failed", int64(s.Failed))
	st.buf = appendBool(st.buf, "dry_run", aw.dryRun)
	st.buf = appendBool(st.buf, "stopped", s.Stopped)
	st.buf = appendKey(st.buf, "values", false)
	st.buf = append(st.buf, '{')
	st.buf = appendKey(st.buf, "keepidle_s", true)
	st.buf = appendIntValue(st.buf, int64(k.Time.Seconds()))
	st.buf = appendSec(st.buf, "keepintvl_s", k.Intvl)
	st.buf = appendInt(st.buf, "keepcnt", int64(k.Probes))
	if k.SetUserTimeout {
		st.buf = appendMS(st.buf, "user_timeout_ms", k.UserTimeout)
	}
	st.buf = append(st.buf, '}')
	st.buf = appendMS(st.buf, "duration_ms", s.Duration)
	st.buf = appendBool(st.buf, "interrupted", s.Interrupted)
	return st.close(nil)
}

// appendSockOpts appends a socket's options as a nested object under key, as
// the socket record names them; nothing when they were not read.
func appendSockOpts(dst []byte, key string, o *proc.SockOpts) []byte {
	if o == nil {
		return dst
	}
	dst = append(appendKey(dst, key, false), '{')
	dst = appendKey(dst, "so_keepalive", true)
	dst = strconv.AppendBool(dst, o.KeepaliveOn)
	dst = appendSec(dst, "keepidle_s", o.Keepalive.Time)
	dst = appendSec(dst, "keepintvl_s", o.Keepalive.Intvl)
	dst = appendInt(dst, "keepcnt", int64(o.Keepalive.Probes))
	dst = appendMS(dst, "user_timeout_ms", o.UserTimeout)
	return append(dst, '}')
}

// appendArmed writes a socket's keepalive in a cell: "off", or
// TCP_KEEPIDLE/INTVL/CNT as "2s/1s/3", then the user timeout where one is
// set ("2s/1s/3 uto 4.5s"); "-" when the options were not read.
func appendArmed(c []byte, o *proc.SockOpts) []byte {
	switch {
	case o == nil:
		return append(c, '-')
	case !o.KeepaliveOn:
		c = append(c, "off"...)
	default:
		c = appendKeepalive3(c, proc.Keepalive{Keepalive: o.Keepalive})
	}
	if o.UserTimeout > 0 {
		c = append(c, " uto "...)
		c = AppendDuration(c, o.UserTimeout)
	}
	return c
}

// appendKeepalive3 writes the values arming sets: "2s/1s/3", and
// " uto 4.5s" when it sets TCP_USER_TIMEOUT.
func appendKeepalive3(c []byte, k proc.Keepalive) []byte {
	c = AppendDuration(c, k.Time)
	c = append(c, '/')
	c = AppendDuration(c, k.Intvl)
	c = append(c, '/')
	c = strconv.AppendInt(c, int64(k.Probes), 10)
	if k.SetUserTimeout {
		c = append(c, " uto "...)
		c = AppendDuration(c, k.UserTimeout)
	}
	return c
}
