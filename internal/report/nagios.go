package report

import (
	"io"
	"strconv"
	"strings"

	"github.com/tcpkeep/tcpkeep/internal/audit"
)

// The monitoring plugin format (Nagios, Icinga, Naemon, Sensu): one line,
// "SERVICE STATUS - text | perfdata", where each performance datum is
// 'label'=value[UOM];[warn];[crit];[min];[max]. The status word matches the
// exit code audit returns: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.

// nagiosStatus is the status word for the worst severity found, as audit's
// exit code has it: OK below failOn.
func nagiosStatus(worst, failOn audit.Severity) string {
	switch {
	case worst == 0 || worst < failOn:
		return "OK"
	case worst == audit.Critical:
		return "CRITICAL"
	}
	return "WARNING"
}

// AppendNagios appends the status line of an audit of namespace ns: the
// status, the findings by severity and code, and as performance data the
// findings of each severity and of each code and the sockets of each state,
// every one present (0 included) so a graph's series never vanish.
func AppendNagios(b []byte, ns string, sum *audit.Summary, failOn audit.Severity) []byte {
	status := nagiosStatus(sum.Worst, failOn)
	if sum.Interrupted {
		status = "UNKNOWN"
	}
	b = append(b, "TCPKEEP "...)
	b = append(b, status...)
	b = append(b, " - netns "...)
	b = append(b, nagiosText(ns)...)
	b = append(b, ": "...)
	var bySev [audit.Critical + 1]int
	total := 0
	for _, v := range sum.Findings {
		for s, n := range v {
			bySev[s] += n
			total += n
		}
	}
	switch {
	case sum.Interrupted:
		b = append(b, "interrupted after "...)
		b = appendCount(b, sum.Counts.Sockets, "socket")
	case total == 0:
		b = append(b, "no findings in "...)
		b = appendCount(b, sum.Counts.Sockets, "socket")
		b = append(b, " and the keepalive tunables"...)
	default:
		b = appendCount(b, total, "finding")
		b = append(b, " ("...)
		n := 0
		for _, s := range []audit.Severity{audit.Critical, audit.Warning, audit.Info} {
			if bySev[s] > 0 {
				if n > 0 {
					b = append(b, ", "...)
				}
				b = strconv.AppendInt(b, int64(bySev[s]), 10)
				b = append(b, ' ')
				b = append(b, s.String()...)
				n++
			}
		}
		b = append(b, ") in "...)
		b = appendCount(b, sum.Counts.Sockets, "socket")
		b = append(b, ": "...)
		n = 0
		for _, c := range audit.Codes {
			if k := sum.Total(c); k > 0 {
				if n > 0 {
					b = append(b, ", "...)
				}
				b = append(b, c...)
				b = append(b, ' ')
				b = strconv.AppendInt(b, int64(k), 10)
				n++
			}
		}
	}
	b = append(b, " |"...)
	for _, s := range []audit.Severity{audit.Critical, audit.Warning, audit.Info} {
		b = appendPerf(b, "findings_"+s.String(), int64(bySev[s]))
	}
	for _, c := range audit.Codes {
		b = appendPerf(b, string(c), int64(sum.Total(c)))
	}
	b = appendPerf(b, "sockets", int64(sum.Counts.Sockets))
	for _, st := range promStates {
		b = appendPerf(b, "sockets_"+strings.ToLower(st.String()), int64(sum.Counts.ByState[st]))
	}
	b = append(b, " 'duration'="...)
	b = strconv.AppendFloat(b, sum.Duration.Seconds(), 'f', 3, 64)
	b = append(b, "s;;;0"...)
	return append(b, '\n')
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

// WriteNagiosUnknown writes the status line of an audit that could not run:
// UNKNOWN, and why.
func WriteNagiosUnknown(w io.Writer, why string) error {
	_, err := io.WriteString(w, "TCPKEEP UNKNOWN - "+nagiosText(why)+"\n")
	return err
}
