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

// AppendAuditProm appends the audits' metrics in the node_exporter textfile
// format: one audit per namespace (--all-netns audits many), every series
// labelled with its namespace, each metric's series together under one HELP
// and TYPE. For an audit that did not succeed only tcpkeep_audit_success (0),
// the timestamp and what is known are written.
func AppendAuditProm(b []byte, ps ...PromAudit) []byte {
	// family writes a metric: its header before its first series, then what
	// f adds for each audit.
	family := func(name, help, typ string, f func(p *PromAudit, add func(labels string, v float64))) {
		first := true
		for i := range ps {
			ns := promLabel(ps[i].NetNS)
			f(&ps[i], func(labels string, v float64) {
				if first {
					b = fmt.Appendf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
					first = false
				}
				b = append(append(append(append(b, name...), `{netns="`...), ns...), '"')
				b = append(append(b, labels...), "} "...)
				b = append(strconv.AppendFloat(b, v, 'f', -1, 64), '\n')
			})
		}
	}
	gauge := func(name, help string, f func(p *PromAudit, add func(labels string, v float64))) {
		family(name, help, "gauge", f)
	}
	tunable := func(name, help string, v func(t *sysctl.Tunables) (float64, bool)) {
		gauge(name, help, func(p *PromAudit, add func(string, float64)) {
			if p.Tunables != nil {
				if x, ok := v(p.Tunables); ok {
					add("", x)
				}
			}
		})
	}
	gauge("tcpkeep_audit_success", "Whether the last audit ran to the end (1) or failed (0).", func(p *PromAudit, add func(string, float64)) {
		add("", boolFloat(p.Summary != nil))
	})
	gauge("tcpkeep_audit_timestamp_seconds", "When the last audit started, in seconds since the epoch.", func(p *PromAudit, add func(string, float64)) {
		add("", float64(p.Start.UnixMilli())/1000)
	})
	tunable("tcpkeep_keepalive_time_seconds", "net.ipv4.tcp_keepalive_time: idle time before the first keepalive probe.",
		func(t *sysctl.Tunables) (float64, bool) { return t.Time.Seconds(), true })
	tunable("tcpkeep_keepalive_intvl_seconds", "net.ipv4.tcp_keepalive_intvl: time between unanswered keepalive probes.",
		func(t *sysctl.Tunables) (float64, bool) { return t.Intvl.Seconds(), true })
	tunable("tcpkeep_keepalive_probes", "net.ipv4.tcp_keepalive_probes: unanswered probes before the connection is dropped.",
		func(t *sysctl.Tunables) (float64, bool) { return float64(t.Probes), true })
	tunable("tcpkeep_dead_peer_detect_seconds", "How long a dead peer on an idle keepalive connection goes unnoticed: max(time, intvl) + intvl x probes after the last answer.",
		func(t *sysctl.Tunables) (float64, bool) { return t.DeadPeerDetect().Seconds(), true })
	tunable("tcpkeep_tcp_retries2", "net.ipv4.tcp_retries2: retransmission backoffs before the kernel drops a connection.",
		func(t *sysctl.Tunables) (float64, bool) {
			if t.Retries2 == nil {
				return 0, false
			}
			return float64(*t.Retries2), true
		})
	tunable("tcpkeep_conntrack_established_timeout_seconds", "net.netfilter.nf_conntrack_tcp_timeout_established: how long conntrack keeps an idle flow.",
		func(t *sysctl.Tunables) (float64, bool) {
			if t.ConntrackEstablished == nil {
				return 0, false
			}
			return t.ConntrackEstablished.Seconds(), true
		})
	gauge("tcpkeep_sockets", "TCP sockets the audit checked, by state.", func(p *PromAudit, add func(string, float64)) {
		if p.Summary != nil {
			for _, st := range promStates {
				add(`,state="`+st.String()+`"`, float64(p.Summary.Counts.ByState[st]))
			}
		}
	})
	gauge("tcpkeep_findings", "Findings of the audit, by code and severity (docs/findings.md explains each).", func(p *PromAudit, add func(string, float64)) {
		if p.Summary == nil {
			return
		}
		for _, c := range audit.Codes {
			var v [audit.Critical + 1]int
			if f := p.Summary.Findings[c]; f != nil {
				v = *f
			}
			for _, s := range c.Severities() {
				add(`,code="`+string(c)+`",severity="`+s.String()+`"`, float64(v[s]))
			}
		}
	})
	gauge("tcpkeep_worst_severity", "The worst finding's severity: 0 none, 1 info, 2 warning, 3 critical.", func(p *PromAudit, add func(string, float64)) {
		if p.Summary != nil {
			add("", float64(p.Summary.Worst))
		}
	})
	gauge("tcpkeep_audit_duration_seconds", "How long the audit took: tunables, dump, rules and output.", func(p *PromAudit, add func(string, float64)) {
		if p.Summary != nil {
			add("", p.Summary.Duration.Seconds())
		}
	})
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

// WritePromFile writes the audits' metrics (AppendAuditProm) to a temporary file in path's directory and
// renames it over path, so node_exporter never reads half a file. The temporary
// name does not end in .prom: the textfile collector ignores it.
func WritePromFile(path string, ps ...PromAudit) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(AppendAuditProm(nil, ps...))
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
