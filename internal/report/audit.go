package report

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"github.com/tcpkeep/tcpkeep/internal/audit"
	"github.com/tcpkeep/tcpkeep/sysctl"
)

// AuditWriter writes an audit: in ndjson a "finding" line per finding as it
// comes and an "audit_summary" line; in json one "audit" document with the
// findings, the summary and the tunables; in the table the findings grouped by
// severity, then code, and a summary line. In prom and nagios it writes
// nothing: the caller writes the metrics (Metrics) or the status line
// (AppendNagios) of every namespace audited, at the end.
type AuditWriter struct {
	st    *stream
	words Words
	held  []heldFinding // the table's, grouped at the end
}

type heldFinding struct {
	sev  audit.Severity
	code audit.Code
	msg  string
}

// NewAuditWriter starts writing an audit in format f; words words its findings.
func NewAuditWriter(w io.Writer, f Format, m Meta, words Words) *AuditWriter {
	aw := &AuditWriter{st: newStream(w, f, m), words: words}
	aw.st.doc("audit", "findings", nil)
	return aw
}

// Finding writes one finding, or holds it for the table.
func (aw *AuditWriter) Finding(f *audit.Finding) error {
	st := aw.st
	switch st.f {
	case Table:
		aw.held = append(aw.held, heldFinding{f.Severity, f.Code, aw.words.Message(f)})
		return nil
	case JSON, NDJSON:
		first := st.begin("finding")
		st.buf = appendFindingFields(st.buf, f, aw.words, first)
		return st.end()
	}
	return nil
}

// appendFindingFields appends code, severity, message, remedy, the predicted
// drop (drop_in_ms and drop_by, where the model predicts one) and socket.
func appendFindingFields(dst []byte, f *audit.Finding, w Words, first bool) []byte {
	dst = appendKey(dst, "code", first)
	dst = appendString(dst, string(f.Code))
	dst = appendStr(dst, "severity", f.Severity.String())
	dst = appendStr(dst, "message", w.Message(f))
	dst = appendStr(dst, "remedy", f.Remedy.String())
	if f.DropBy != sysctl.DropNone {
		dst = appendMS(dst, "drop_in_ms", f.DropIn)
		dst = appendStr(dst, "drop_by", f.DropBy.String())
	}
	if f.Socket != nil {
		dst = appendSocket(appendKey(dst, "socket", false), f.Socket, f.Owner, f.Opts)
	}
	return dst
}

// Finish writes the summary (and, in json, the tunables).
func (aw *AuditWriter) Finish(sum *audit.Summary, ns string) error {
	st := aw.st
	switch st.f {
	case Prom, Nagios:
		return nil
	case Table:
		aw.table(sum, ns)
		return st.flush()
	}
	first := st.summary("audit_summary")
	st.buf = appendCountsFields(st.buf, &sum.Counts, first)
	st.buf = appendKey(st.buf, "findings", false)
	st.buf = append(st.buf, '{')
	n := 0
	for _, c := range audit.Codes {
		if k := sum.Total(c); k > 0 {
			st.buf = appendKey(st.buf, string(c), n == 0)
			st.buf = strconv.AppendInt(st.buf, int64(k), 10)
			n++
		}
	}
	st.buf = append(st.buf, '}')
	st.buf = appendStr(st.buf, "worst", sum.Worst.String())
	st.buf = appendMS(st.buf, "duration_ms", sum.Duration)
	st.buf = appendBool(st.buf, "interrupted", sum.Interrupted)
	return st.close(func(b []byte) []byte {
		b = appendKey(b, "tunables", false)
		b = append(b, '{')
		b = appendTunablesFields(b, &sum.Tunables, true)
		return append(b, '}')
	})
}

// Abort ends an audit that failed midway: in json and ndjson the findings so
// far, and no summary (the json document is closed without one); the table
// writes nothing.
func (aw *AuditWriter) Abort() error {
	if aw.st.f == Table || aw.st.f == Prom || aw.st.f == Nagios {
		return nil
	}
	return aw.st.abort()
}

// table writes the findings grouped by severity (worst first), then code, then
// a summary line; or one line saying all is well.
func (aw *AuditWriter) table(sum *audit.Summary, ns string) {
	h := aw.held
	order := func(c audit.Code) int {
		for i, k := range audit.Codes {
			if k == c {
				return i
			}
		}
		return len(audit.Codes)
	}
	sort.SliceStable(h, func(i, j int) bool {
		if h[i].sev != h[j].sev {
			return h[i].sev > h[j].sev
		}
		return order(h[i].code) < order(h[j].code)
	})
	b := aw.st.buf
	for i, f := range h {
		if i == 0 || f.sev != h[i-1].sev || f.code != h[i-1].code {
			if i > 0 {
				b = append(b, '\n')
			}
			b = fmt.Appendf(b, "%s %s (%d)\n", strings.ToUpper(f.sev.String()), f.code, sum.Findings[f.code][f.sev])
		}
		b = fmt.Appendf(b, "  %s\n", f.msg)
	}
	if len(h) > 0 {
		b = append(b, '\n')
	}
	states := ""
	if sum.Counts.Sockets > 0 {
		states = " (" + string(appendStates(nil, &sum.Counts)) + ")"
	}
	took := Duration(sum.Duration)
	switch {
	case sum.Interrupted:
		b = fmt.Appendf(b, "netns %s: interrupted after %s%s: %s so far, peer limits not judged (took %s).\n",
			ns, Count(sum.Counts.Sockets, "socket"), states, Count(len(h), "finding"), took)
	case len(h) == 0:
		b = fmt.Appendf(b, "All is well: %s in netns %s%s and the keepalive tunables checked, nothing found (took %s).\n",
			Count(sum.Counts.Sockets, "socket"), ns, states, took)
	default:
		var sev []string
		for _, s := range []audit.Severity{audit.Critical, audit.Warning, audit.Info} {
			n := 0
			for _, v := range sum.Findings {
				n += v[s]
			}
			if n > 0 {
				sev = append(sev, fmt.Sprintf("%d %s", n, s))
			}
		}
		b = fmt.Appendf(b, "netns %s: %s%s, %s (%s), worst %s (took %s).\n",
			ns, Count(sum.Counts.Sockets, "socket"), states, Count(len(h), "finding"), strings.Join(sev, ", "), sum.Worst, took)
	}
	aw.st.buf = b
}
