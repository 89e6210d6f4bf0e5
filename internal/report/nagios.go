package report

import (
	"strconv"
	"strings"
	"time"

	"github.com/tcpkeep/tcpkeep/internal/audit"
)

// The monitoring plugin format (Nagios, Icinga, Naemon, Sensu): one line,
// "SERVICE STATUS - text | perfdata", where each performance datum is
// 'label'=value[UOM];[warn];[crit];[min];[max]. The status word matches the
// exit code audit returns: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.

// nagiosStatus is the status word of audit's exit code.
func nagiosStatus(code int) string {
	switch code {
	case 0:
		return "OK"
	case 1:
		return "WARNING"
	case 2:
		return "CRITICAL"
	}
	return "UNKNOWN"
}

// AppendNagios appends the status line of the audits t adds up, of namespace
// ns or, with all, of every namespace: the status of audit's exit code, what
// was audited, the findings by severity and code, and why when not all went
// well; then as performance data the findings of each severity and of each
// code and the sockets of each state, every one present (0 included) so a
// graph's series never vanish, and took.
func AppendNagios(b []byte, code int, ns string, all bool, t *Total, took time.Duration, why string) []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	b = append(b, "TCPKEEP "...)
	b = append(b, nagiosStatus(code)...)
	b = append(b, " - "...)
	total := 0
	for _, n := range t.bySev {
		total += n
	}
	switch {
	case total == 0 && t.counts.Sockets == 0 && why != "":
		// Nothing was audited: why (which names the namespace) is all there is.
		b = append(b, nagiosText(why)...)
		why = ""
	case total == 0:
		b = appendWhat(b, ns, all, t)
		b = append(b, "no findings in "...)
		b = appendCount(b, t.counts.Sockets, "socket")
		b = append(b, " and the keepalive tunables"...)
	default:
		b = appendWhat(b, ns, all, t)
		b = appendCount(b, total, "finding")
		b = append(b, " ("...)
		n := 0
		for _, s := range []audit.Severity{audit.Critical, audit.Warning, audit.Info} {
			if t.bySev[s] > 0 {
				if n > 0 {
					b = append(b, ", "...)
				}
				b = strconv.AppendInt(b, int64(t.bySev[s]), 10)
				b = append(append(b, ' '), s.String()...)
				n++
			}
		}
		b = append(b, ") in "...)
		b = appendCount(b, t.counts.Sockets, "socket")
		b = append(b, ": "...)
		n = 0
		for _, c := range audit.Codes {
			if k := t.findings[c]; k > 0 {
				if n > 0 {
					b = append(b, ", "...)
				}
				b = strconv.AppendInt(append(append(b, c...), ' '), int64(k), 10)
				n++
			}
		}
	}
	if why != "" {
		b = append(append(b, "; "...), nagiosText(why)...)
	}
	b = append(b, " |"...)
	for _, s := range []audit.Severity{audit.Critical, audit.Warning, audit.Info} {
		b = appendPerf(b, "findings_"+s.String(), int64(t.bySev[s]))
	}
	for _, c := range audit.Codes {
		b = appendPerf(b, string(c), int64(t.findings[c]))
	}
	b = appendPerf(b, "sockets", int64(t.counts.Sockets))
	for _, st := range promStates {
		b = appendPerf(b, "sockets_"+strings.ToLower(st.String()), int64(t.counts.ByState[st]))
	}
	b = append(b, " 'duration'="...)
	b = strconv.AppendFloat(b, took.Seconds(), 'f', 3, 64)
	return append(b, "s;;;0\n"...)
}

// appendWhat appends what was audited: "netns NAME: " or "N namespaces: ".
func appendWhat(b []byte, ns string, all bool, t *Total) []byte {
	if all {
		return append(appendCount(b, t.Namespaces, "namespace"), ": "...)
	}
	return append(append(append(b, "netns "...), nagiosText(ns)...), ": "...)
}

// appendPerf appends one performance datum, a count: 'label'=N;;;0.
func appendPerf(b []byte, label string, n int64) []byte {
	b = append(b, " '"...)
	b = append(b, label...)
	b = append(b, "'="...)
	b = strconv.AppendInt(b, n, 10)
	return append(b, ";;;0"...)
}

// nagiosText keeps a free text off the plugin format's separators: a "|"
// would start the performance data, a newline the long output.
func nagiosText(s string) string {
	return Printable(strings.NewReplacer("|", "/", "\n", " ", "\r", " ").Replace(s))
}
