package report

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tcpkeep/tcpkeep/diag"
	"github.com/tcpkeep/tcpkeep/internal/audit"
	"github.com/tcpkeep/tcpkeep/internal/kill"
)

// AllNetNS is what the records of a run over every namespace that are about no
// one namespace (the json document, netns_total) carry as netns.
const AllNetNS = "*"

// Frame is the output of one command run in many namespaces (--all-netns):
// each namespace's output as the command writes it for that namespace alone,
// its records headed with that namespace, one namespace after the other; a
// netns_error record for each namespace that could not be visited and for
// each thing enumeration could not look at; then the total.
//
//   - ndjson: the lines one after the other, then a netns_total line.
//   - json: one "all_netns" document, {header, "command", "namespaces": [each
//     namespace's document, or its netns_error record], "summary": {the
//     netns_total's keys}}.
//   - table: each namespace's table under a heading line that names it, a
//     blank line between two, then a line with the total.
//   - prom, nagios: nothing: the caller writes the metrics of every namespace
//     (a metric's series must be together) or the one status line at the end.
//
// A Frame is the writer a netns.Walker writes to: it puts the separator
// between two namespaces' output (Next marks where one ends), so that a
// namespace that wrote nothing leaves no trace.
type Frame struct {
	w     io.Writer
	f     Format
	m     Meta
	cmd   string
	start time.Time

	mu      sync.Mutex
	since   bool // bytes went out since the last Next
	pending bool // a separator goes before the next byte
	err     error
}

// NewFrame starts the output of command over many namespaces, in format f;
// m is the run's meta (its NetNS is ignored).
func NewFrame(w io.Writer, f Format, m Meta, command string) *Frame {
	m.NetNS, m.NetNSInode, m.ContainerID, m.PodUID, m.NetNSComm = AllNetNS, 0, "", "", ""
	fr := &Frame{w: w, f: f, m: m, cmd: command, start: time.Now()}
	if f == JSON {
		b := append(make([]byte, 0, 256), '{')
		b = AppendHeader(b, "all_netns", m)
		b = appendStr(b, "command", command)
		b = append(appendKey(b, "namespaces", false), '[', '\n')
		fr.raw(b)
	}
	return fr
}

// raw writes b as it is.
func (fr *Frame) raw(b []byte) {
	fr.mu.Lock()
	defer fr.mu.Unlock()
	if fr.err == nil {
		if _, err := fr.w.Write(b); err != nil {
			fr.err = fmt.Errorf("write output: %w", err)
		}
	}
}

// Write writes a namespace's output, after the separator if another
// namespace's output came before.
func (fr *Frame) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	fr.mu.Lock()
	defer fr.mu.Unlock()
	if fr.err != nil {
		return 0, fr.err
	}
	if fr.pending {
		fr.pending = false
		var sep string
		switch fr.f {
		case JSON:
			sep = ","
		case Table:
			sep = "\n"
		}
		if _, err := io.WriteString(fr.w, sep); err != nil {
			fr.err = fmt.Errorf("write output: %w", err)
			return 0, fr.err
		}
	}
	fr.since = true
	n, err := fr.w.Write(p)
	if err != nil {
		fr.err = fmt.Errorf("write output: %w", err)
	}
	return n, fr.err
}

// Next says a namespace's output ended: what comes next is another's.
func (fr *Frame) Next() {
	fr.mu.Lock()
	if fr.since {
		fr.pending, fr.since = true, false
	}
	fr.mu.Unlock()
}

// Heading writes the table's heading line of the namespace m names to w (the
// namespace's own output): in other formats the records' header names it.
func (fr *Frame) Heading(w io.Writer, m Meta) error {
	if fr.f != Table {
		return nil
	}
	return write(w, appendHeading(nil, m))
}

// appendHeading writes "== netns NAME (inode N, container ID, pod UID, comm C)".
func appendHeading(b []byte, m Meta) []byte {
	b = append(append(b, "== netns "...), Printable(m.NetNS)...)
	var what []string
	if m.NetNSInode != 0 {
		what = append(what, "inode "+strconv.FormatUint(m.NetNSInode, 10))
	}
	if m.ContainerID != "" {
		what = append(what, "container "+m.ContainerID[:min(12, len(m.ContainerID))])
	}
	if m.PodUID != "" {
		what = append(what, "pod "+m.PodUID)
	}
	if m.NetNSComm != "" {
		what = append(what, "comm "+Printable(m.NetNSComm))
	}
	if len(what) > 0 {
		b = append(append(append(b, " ("...), strings.Join(what, ", ")...), ')')
	}
	return append(b, '\n')
}

// NetNSError is the netns_error record: a namespace that could not be visited
// (it went away, it could not be opened or entered, its run failed), or a name
// or process enumeration could not look at.
type NetNSError struct {
	// Meta names the namespace: netns, and netns_inode and its owner where
	// known. For what enumeration could not look at, netns is pid:PID or the
	// name, and the inode is not known.
	Meta
	// Reason is gone (it went away before it was visited), denied (the kernel
	// refused) or error.
	Reason string
	// Err is what went wrong, in words.
	Err string
	// Missing is the capability whose absence explains a refusal; "" when none
	// does.
	Missing string
	// Headed says the namespace's heading is written already (its run failed
	// midway).
	Headed bool
}

// Error writes a netns_error record where the namespace's output goes.
func (fr *Frame) Error(e *NetNSError) error {
	var b []byte
	switch fr.f {
	case Prom, Nagios:
		return nil
	case Table:
		if e.Headed {
			// Under the heading the namespace wrote: no blank line between.
			fr.mu.Lock()
			fr.pending = false
			fr.mu.Unlock()
		} else {
			b = appendHeading(b, e.Meta)
		}
		b = fmt.Appendf(b, "  not read: %s\n", oneLine(e.Err))
	default:
		m := e.Meta
		m.TS, m.Host = fr.m.TS, fr.m.Host
		b = append(b, '{')
		b = AppendHeader(b, "netns_error", m)
		b = appendStr(b, "reason", e.Reason)
		b = appendStr(b, "error", oneLine(e.Err))
		if e.Missing != "" {
			b = appendStr(b, "missing_capability", e.Missing)
		}
		b = append(b, '}', '\n')
	}
	_, err := fr.Write(b)
	fr.Next()
	return err
}

// Total is the netns_total record: what a run over many namespaces saw, the
// namespaces' summaries added up. Its Add methods are safe for concurrent use.
type Total struct {
	// Command is the command that ran: its summary's keys are the total's.
	Command string
	// Namespaces is how many were found; Visited how many the command ran in to
	// the end; Gone how many went away before they could be visited; Failed how
	// many could not be visited or failed midway; Skipped how many names and
	// processes enumeration could not look at. Each gone, failed and skipped
	// one has a netns_error record.
	Namespaces, Visited, Gone, Failed, Skipped int
	// Interrupted says a signal ended the run: namespaces after it were not
	// visited.
	Interrupted bool
	// DryRun is kill's or arm's --dry-run.
	DryRun bool

	mu       sync.Mutex
	counts   diag.Counts
	findings map[audit.Code]int
	bySev    [audit.Critical + 1]int
	worst    audit.Severity
	kill     kill.Summary
	arm      kill.ArmSummary
}

// AddConns adds one namespace's listing.
func (t *Total) AddConns(s *ConnsSummary) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.addCounts(&s.Counts)
}

// AddAudit adds one namespace's audit.
func (t *Total) AddAudit(s *audit.Summary) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.addCounts(&s.Counts)
	if t.findings == nil {
		t.findings = map[audit.Code]int{}
	}
	for c, v := range s.Findings {
		for sev, n := range v {
			t.findings[c] += n
			t.bySev[sev] += n
		}
	}
	t.worst = max(t.worst, s.Worst)
}

// AddKill adds one namespace's kill run.
func (t *Total) AddKill(s *kill.Summary) {
	t.mu.Lock()
	defer t.mu.Unlock()
	k := &t.kill
	k.Sockets += s.Sockets
	k.Selected += s.Selected
	k.Closed += s.Closed
	k.Gone += s.Gone
	k.Failed += s.Failed
	k.Stopped = k.Stopped || s.Stopped
}

// AddArm adds one namespace's arm run.
func (t *Total) AddArm(s *kill.ArmSummary) {
	t.mu.Lock()
	defer t.mu.Unlock()
	a := &t.arm
	a.Sockets += s.Sockets
	a.Selected += s.Selected
	a.Armed += s.Armed
	a.Unchanged += s.Unchanged
	a.WouldArm += s.WouldArm
	a.Gone += s.Gone
	a.Failed += s.Failed
	a.Stopped = a.Stopped || s.Stopped
}

func (t *Total) addCounts(c *diag.Counts) {
	t.counts.Sockets += c.Sockets
	for i, n := range c.ByState {
		t.counts.ByState[i] += n
	}
}

// Worst is the worst severity an audit found in any namespace.
func (t *Total) Worst() audit.Severity {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.worst
}

// KillFailed is how many selected sockets kill (or arm) could not close (or
// arm), in all.
func (t *Total) KillFailed() (failed, selected int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.kill.Failed + t.arm.Failed, t.kill.Selected + t.arm.Selected
}

// Close writes the total (and ends the json document).
func (fr *Frame) Close(t *Total) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	took := time.Since(fr.start)
	var b []byte
	switch fr.f {
	case Prom, Nagios:
		return fr.err
	case Table:
		fr.Next()
		_, err := fr.Write(fr.totalLine(t, took))
		return err
	case JSON:
		b = append(b, "\n]"...)
		b = appendKey(b, "summary", false)
		b = append(fr.appendTotal(append(b, '{'), t, took, true), "}}\n"...)
	default:
		b = append(b, '{')
		b = AppendHeader(b, "netns_total", fr.m)
		b = append(fr.appendTotal(b, t, took, false), '}', '\n')
	}
	fr.raw(b)
	return fr.err
}

// appendTotal appends netns_total's keys.
func (fr *Frame) appendTotal(b []byte, t *Total, took time.Duration, first bool) []byte {
	b = appendKey(b, "command", first)
	b = appendString(b, t.Command)
	b = appendInt(b, "namespaces", int64(t.Namespaces))
	b = appendInt(b, "namespaces_visited", int64(t.Visited))
	b = appendInt(b, "namespaces_gone", int64(t.Gone))
	b = appendInt(b, "namespaces_failed", int64(t.Failed))
	b = appendInt(b, "skipped", int64(t.Skipped))
	switch t.Command {
	case "conns", "audit":
		b = appendCountsFields(b, &t.counts, false)
	case "kill":
		k := &t.kill
		b = appendInt(b, "sockets", int64(k.Sockets))
		b = appendInt(b, "selected", int64(k.Selected))
		b = appendInt(b, "closed", int64(k.Closed))
		b = appendInt(b, "gone", int64(k.Gone))
		b = appendInt(b, "failed", int64(k.Failed))
		b = appendBool(b, "dry_run", t.DryRun)
		b = appendBool(b, "stopped", k.Stopped)
	case "arm":
		a := &t.arm
		b = appendInt(b, "sockets", int64(a.Sockets))
		b = appendInt(b, "selected", int64(a.Selected))
		b = appendInt(b, "armed", int64(a.Armed))
		b = appendInt(b, "unchanged", int64(a.Unchanged))
		b = appendInt(b, "would_arm", int64(a.WouldArm))
		b = appendInt(b, "gone", int64(a.Gone))
		b = appendInt(b, "failed", int64(a.Failed))
		b = appendBool(b, "dry_run", t.DryRun)
		b = appendBool(b, "stopped", a.Stopped)
	}
	if t.Command == "audit" {
		b = append(appendKey(b, "findings", false), '{')
		n := 0
		for _, c := range audit.Codes {
			if k := t.findings[c]; k > 0 {
				b = strconv.AppendInt(appendKey(b, string(c), n == 0), int64(k), 10)
				n++
			}
		}
		b = append(b, '}')
		b = appendStr(b, "worst", t.worst.String())
	}
	b = appendMS(b, "duration_ms", took)
	return appendBool(b, "interrupted", t.Interrupted)
}

// totalLine is the table's last line: the namespaces, then what the command
// saw in all of them.
func (fr *Frame) totalLine(t *Total, took time.Duration) []byte {
	b := fmt.Appendf(nil, "Total over %s (%d visited", Count(t.Namespaces, "namespace"), t.Visited)
	for _, v := range []struct {
		n    int
		what string
	}{{t.Gone, "gone"}, {t.Failed, "not read"}, {t.Skipped, "more not looked at"}} {
		if v.n > 0 {
			b = fmt.Appendf(b, ", %d %s", v.n, v.what)
		}
	}
	b = append(b, ')')
	switch t.Command {
	case "conns", "audit":
		b = append(append(b, ": "...), appendCounts(nil, &t.counts)...)
	case "kill":
		k := &t.kill
		if t.DryRun {
			b = fmt.Appendf(b, ": %d of %s would be closed; nothing was", k.Selected, Count(k.Sockets, "socket"))
		} else {
			b = fmt.Appendf(b, ": %d of %s selected, %d closed, %d gone, %d failed", k.Selected, Count(k.Sockets, "socket"), k.Closed, k.Gone, k.Failed)
		}
	case "arm":
		a := &t.arm
		b = fmt.Appendf(b, ": %d of %s selected, %d armed, %d would be, %d already were, %d gone, %d failed",
			a.Selected, Count(a.Sockets, "socket"), a.Armed, a.WouldArm, a.Unchanged, a.Gone, a.Failed)
	}
	if t.Command == "audit" {
		var sev []string
		n := 0
		for _, s := range []audit.Severity{audit.Critical, audit.Warning, audit.Info} {
			if k := t.bySev[s]; k > 0 {
				sev = append(sev, fmt.Sprintf("%d %s", k, s))
				n += k
			}
		}
		if n == 0 {
			b = append(b, "; nothing found"...)
		} else {
			b = fmt.Appendf(b, "; %s (%s), worst %s", Count(n, "finding"), strings.Join(sev, ", "), t.worst)
		}
	}
	b = fmt.Appendf(b, " (took %s)", Duration(took))
	if t.Interrupted {
		b = append(b, "; interrupted: the namespaces after the signal were not visited"...)
	}
	return append(b, ".\n"...)
}
