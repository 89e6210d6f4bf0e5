package report

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/tcpkeep/tcpkeep/diag"
	"github.com/tcpkeep/tcpkeep/internal/audit"
	"github.com/tcpkeep/tcpkeep/sysctl"
)

// PromAudit is what the audit's metrics say.
type PromAudit struct {
	// NetNS labels every series.
	NetNS string
	// Start is when the audit started.
	Start time.Time
	// Tunables are the namespace's, when they were read.
	Tunables *sysctl.Tunables
	// Summary is what it found, when it ran to its end; nil when it failed.
	Summary *audit.Summary
}

// promStates are the states tcpkeep_sockets always has a series for, so a
// state that empties reads 0 instead of vanishing.
var promStates = []diag.State{
	diag.StateEstablished, diag.StateSynSent, diag.StateSynRecv, diag.StateFinWait1,
	diag.StateFinWait2, diag.StateTimeWait, diag.StateClose, diag.StateCloseWait,
	diag.StateLastAck, diag.StateListen, diag.StateClosing,
}

// AppendAuditProm appends the audit's metrics in the node_exporter textfile
// format. Without success only tcpkeep_audit_success (0), the timestamp and what
// is known are written.
func AppendAuditProm(b []byte, p PromAudit) []byte {
	ns := promLabel(p.NetNS)
	metric := func(name, help, typ string) {
		b = fmt.Appendf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
	}
	val := func(name, labels string, v float64) {
		b = append(b, name...)
		b = append(b, `{netns="`...)
		b = append(b, ns...)
		b = append(b, '"')
		b = append(b, labels...)
		b = append(b, "} "...)
		b = strconv.AppendFloat(b, v, 'f', -1, 64)
		b = append(b, '\n')
	}
	sum := p.Summary
	metric("tcpkeep_audit_success", "Whether the last audit ran to the end (1) or failed (0).", "gauge")
	val("tcpkeep_audit_success", "", boolFloat(sum != nil))
	metric("tcpkeep_audit_timestamp_seconds", "When the last audit started, in seconds since the epoch.", "gauge")
	val("tcpkeep_audit_timestamp_seconds", "", float64(p.Start.UnixMilli())/1000)
	if t := p.Tunables; t != nil {
		metric("tcpkeep_keepalive_time_seconds", "net.ipv4.tcp_keepalive_time: idle time before the first keepalive probe.", "gauge")
		val("tcpkeep_keepalive_time_seconds", "", t.Time.Seconds())
		metric("tcpkeep_keepalive_intvl_seconds", "net.ipv4.tcp_keepalive_intvl: time between unanswered keepalive probes.", "gauge")
		val("tcpkeep_keepalive_intvl_seconds", "", t.Intvl.Seconds())
		metric("tcpkeep_keepalive_probes", "net.ipv4.tcp_keepalive_probes: unanswered probes before the connection is dropped.", "gauge")
		val("tcpkeep_keepalive_probes", "", float64(t.Probes))
		metric("tcpkeep_dead_peer_detect_seconds", "How long a dead peer on an idle keepalive connection goes unnoticed: max(time, intvl) + intvl x probes after the last answer.", "gauge")
		val("tcpkeep_dead_peer_detect_seconds", "", t.DeadPeerDetect().Seconds())
		if t.Retries2 != nil {
			metric("tcpkeep_tcp_retries2", "net.ipv4.tcp_retries2: retransmission backoffs before the kernel drops a connection.", "gauge")
			val("tcpkeep_tcp_retries2", "", float64(*t.Retries2))
		}
		if t.ConntrackEstablished != nil {
			metric("tcpkeep_conntrack_established_timeout_seconds", "net.netfilter.nf_conntrack_tcp_timeout_established: how long conntrack keeps an idle flow.", "gauge")
			val("tcpkeep_conntrack_established_timeout_seconds", "", t.ConntrackEstablished.Seconds())
		}
	}
	if sum == nil {
		return b
	}
	metric("tcpkeep_sockets", "TCP sockets the audit checked, by state.", "gauge")
	for _, st := range promStates {
		val("tcpkeep_sockets", `,state="`+st.String()+`"`, float64(sum.Counts.ByState[st]))
	}
	metric("tcpkeep_findings", "Findings of the audit, by code and severity (docs/findings.md explains each).", "gauge")
	for _, c := range audit.Codes {
		var v [audit.Critical + 1]int
		if p := sum.Findings[c]; p != nil {
			v = *p
		}
		for _, s := range c.Severities() {
			val("tcpkeep_findings", `,code="`+string(c)+`",severity="`+s.String()+`"`, float64(v[s]))
		}
	}
	metric("tcpkeep_worst_severity", "The worst finding's severity: 0 none, 1 info, 2 warning, 3 critical.", "gauge")
	val("tcpkeep_worst_severity", "", float64(sum.Worst))
	metric("tcpkeep_audit_duration_seconds", "How long the audit took: tunables, dump, rules and output.", "gauge")
	val("tcpkeep_audit_duration_seconds", "", sum.Duration.Seconds())
	return b
}

func boolFloat(v bool) float64 {
	if v {
		return 1
	}
	return 0
}

// promLabel escapes a label value: backslash, double quote and newline.
func promLabel(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}

// WritePromFile writes the metrics to a temporary file in path's directory and
// renames it over path, so node_exporter never reads half a file. The temporary
// name does not end in .prom: the textfile collector ignores it.
func WritePromFile(path string, p PromAudit) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(AppendAuditProm(nil, p))
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}
