package report

import (
	"io"
	"log/slog"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"

	"github.com/tcpkeep/tcpkeep/diag"
	"github.com/tcpkeep/tcpkeep/internal/audit"
	"github.com/tcpkeep/tcpkeep/internal/watch"
	"github.com/tcpkeep/tcpkeep/sysctl"
)

// PromAudit is what one namespace's last audit says, for its metrics.
type PromAudit struct {
	// NetNS labels every series.
	NetNS string
	// Start is when the audit started.
	Start time.Time
	// Tunables are the namespace's, when they were read.
	Tunables *sysctl.Tunables
	// Summary is what it found, when it ran to its end; nil when it failed or
	// was interrupted.
	Summary *audit.Summary
}

// BuildInfo is which tcpkeep runs: tcpkeep_build_info's labels.
type BuildInfo struct {
	Version, Commit, GoVersion string
}

// promStates are the states tcpkeep_sockets always has a series for, so a
// state that empties reads 0 instead of vanishing.
var promStates = []diag.State{
	diag.StateEstablished, diag.StateSynSent, diag.StateSynRecv, diag.StateFinWait1,
	diag.StateFinWait2, diag.StateTimeWait, diag.StateClose, diag.StateCloseWait,
	diag.StateLastAck, diag.StateListen, diag.StateClosing,
}

// Family is one metric family tcpkeep exposes: its name, type (gauge or
// counter), labels and help.
type Family struct {
	Name, Type, Help string
	Labels           []string
}

// families are the definitions, in the order Families lists them.
var families []*Family

// The metric definitions: one set of names, for tcpkeep watch's /metrics,
// audit -o prom and --prom-file alike (docs/deployment-agent.md lists them).
// Every gauge but the build info is about one namespace (netns).
var (
	descSockets     = gauge("tcpkeep_sockets", "TCP sockets the last audit checked, by state.", "state")
	descFindings    = gauge("tcpkeep_findings", "Findings of the last audit, by code and severity (docs/findings.md explains each).", "code", "severity")
	descWorst       = gauge("tcpkeep_worst_severity", "The last audit's worst finding: 0 none, 1 info, 2 warning, 3 critical.")
	descTime        = gauge("tcpkeep_keepalive_time_seconds", "net.ipv4.tcp_keepalive_time: idle time before the first keepalive probe.")
	descIntvl       = gauge("tcpkeep_keepalive_intvl_seconds", "net.ipv4.tcp_keepalive_intvl: time between unanswered keepalive probes.")
	descProbes      = gauge("tcpkeep_keepalive_probes", "net.ipv4.tcp_keepalive_probes: unanswered probes before the connection is dropped.")
	descDetect      = gauge("tcpkeep_dead_peer_detect_seconds", "How long a dead peer on an idle keepalive connection goes unnoticed: max(time, intvl) + intvl x probes after the last answer.")
	descRetries2    = gauge("tcpkeep_tcp_retries2", "net.ipv4.tcp_retries2: retransmission backoffs before the kernel drops a connection.")
	descConntrack   = gauge("tcpkeep_conntrack_established_timeout_seconds", "net.netfilter.nf_conntrack_tcp_timeout_established: how long conntrack keeps an idle flow.")
	descDuration    = gauge("tcpkeep_audit_duration_seconds", "How long the last audit took: tunables, dump and rules.")
	descSuccess     = gauge("tcpkeep_audit_success", "Whether the last audit ran to its end (1) or failed or was interrupted (0).")
	descTimestamp   = gauge("tcpkeep_audit_timestamp_seconds", "When the last audit started, in seconds since the epoch.")
	descBuildInfo   = define("tcpkeep_build_info", "gauge", "Which tcpkeep runs: always 1.", "version", "commit", "goversion")
	counterOpened   = counter("tcpkeep_findings_opened_total", "Findings that appeared (tcpkeep watch's opened events).", "code", "severity")
	counterResolved = counter("tcpkeep_findings_resolved_total", "Findings that went away (tcpkeep watch's resolved events), by how: closed, cleared or killed.", "code", "how")
	counterDrops    = counter("tcpkeep_kernel_drops_total", "Connections the kernel dropped for a timeout, by cause: keepalive, retransmit, user_timeout, connect_timeout.", "cause")
	counterLost     = counter("tcpkeep_destroy_broadcasts_lost_total", "Destroy broadcasts the kernel dropped because the subscription's buffer was full: endings learnt from the next audit instead.")
)

// Families lists every metric family tcpkeep defines, whether or not it has
// a sample yet (a counter appears with its first event).
func Families() []Family {
	out := make([]Family, len(families))
	for i, f := range families {
		out[i] = *f
		out[i].Labels = append([]string(nil), f.Labels...)
	}
	return out
}

func define(name, typ, help string, labels ...string) *prometheus.Desc {
	families = append(families, &Family{Name: name, Type: typ, Help: help, Labels: labels})
	return prometheus.NewDesc(name, help, labels, nil)
}

// gauge is a gauge of one namespace, labelled netns and labels.
func gauge(name, help string, labels ...string) *prometheus.Desc {
	return define(name, "gauge", help, append([]string{"netns"}, labels...)...)
}

// counter is a counter of one namespace, labelled netns and labels.
func counter(name, help string, labels ...string) prometheus.CounterOpts {
	define(name, "counter", help, append([]string{"netns"}, labels...)...)
	return prometheus.CounterOpts{Name: name, Help: help}
}

// dropCauses are the ends the kernel's timeouts make (audit.End.KernelDrop):
// every namespace has a series for each, 0 included, so rate() sees the first.
var dropCauses = []audit.End{audit.EndKeepalive, audit.EndRetransmit, audit.EndUserTimeout, audit.EndConnectTimeout}

// Metrics are tcpkeep's Prometheus metrics: gauges over the last audit of each
// namespace (a collector: nothing is kept per socket), and the counters of the
// agent's events. Safe for concurrent use.
type Metrics struct {
	reg                           *prometheus.Registry
	build                         BuildInfo
	mu                            sync.Mutex
	audits                        map[string]PromAudit
	opened, resolved, drops, lost *prometheus.CounterVec
}

// NewMetrics makes the metrics of a tcpkeep that is b.
func NewMetrics(b BuildInfo) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), build: b, audits: map[string]PromAudit{}}
	vec := func(o prometheus.CounterOpts) *prometheus.CounterVec {
		var labels []string
		for _, f := range families {
			if f.Name == o.Name {
				labels = f.Labels
			}
		}
		v := prometheus.NewCounterVec(o, labels)
		m.reg.MustRegister(v)
		return v
	}
	m.opened, m.resolved, m.drops, m.lost = vec(counterOpened), vec(counterResolved), vec(counterDrops), vec(counterLost)
	m.reg.MustRegister(collector{m})
	return m
}

// Registry is where the metrics are registered: /metrics serves it (with
// whatever else the caller adds beside it).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// SetAudit records p as the last audit of its namespace.
func (m *Metrics) SetAudit(p PromAudit) {
	if p.Tunables != nil {
		t := *p.Tunables
		p.Tunables = &t
	}
	if p.Summary != nil {
		s := *p.Summary
		s.Findings = map[audit.Code]*[audit.Critical + 1]int{}
		for c, v := range p.Summary.Findings {
			n := *v
			s.Findings[c] = &n
		}
		p.Summary = &s
	}
	m.mu.Lock()
	m.audits[p.NetNS] = p
	m.mu.Unlock()
}

// Audited records a namespace's last audit: sum is nil when it failed or was
// interrupted, t when the tunables could not be read.
func (m *Metrics) Audited(netns string, start time.Time, t *sysctl.Tunables, sum *audit.Summary) {
	if sum != nil && sum.Interrupted {
		sum = nil
	}
	m.SetAudit(PromAudit{NetNS: netns, Start: start, Tunables: t, Summary: sum})
}

// Watching starts the counters of a namespace the agent watches at 0, so that
// rate() and increase() see its first drop.
func (m *Metrics) Watching(netns string) {
	for _, c := range dropCauses {
		m.drops.WithLabelValues(netns, c.String())
	}
}

// Forget drops every series of a namespace that is gone.
func (m *Metrics) Forget(netns string) {
	m.mu.Lock()
	delete(m.audits, netns)
	m.mu.Unlock()
	for _, v := range []*prometheus.CounterVec{m.opened, m.resolved, m.drops, m.lost} {
		v.DeletePartialMatch(prometheus.Labels{"netns": netns})
	}
}

// Opened counts a finding that appeared.
func (m *Metrics) Opened(netns string, code audit.Code, sev audit.Severity) {
	m.opened.WithLabelValues(netns, string(code), sev.String()).Inc()
}

// Resolved counts a finding that went away, and how (closed, cleared, killed).
func (m *Metrics) Resolved(netns string, code audit.Code, how string) {
	m.resolved.WithLabelValues(netns, string(code), how).Inc()
}

// Ended counts a connection that ended, if the kernel dropped it for a
// timeout (end.KernelDrop).
func (m *Metrics) Ended(netns string, end audit.End) {
	if end.KernelDrop() {
		m.drops.WithLabelValues(netns, end.String()).Inc()
	}
}

// Lost counts n destroy broadcasts the kernel dropped.
func (m *Metrics) Lost(netns string, n int) { m.lost.WithLabelValues(netns).Add(float64(n)) }

// Handler serves the metrics, and the Go runtime's and the process's own
// (go_*, process_*: the agent's memory and CPU), to scrapes.
func (m *Metrics) Handler() http.Handler {
	rt := prometheus.NewRegistry()
	rt.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return promhttp.HandlerFor(prometheus.Gatherers{m.reg, rt}, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Textfile is a watch.Config.Rounds that writes the metrics to path after
// every round (WriteFile), and logs a failure.
func (m *Metrics) Textfile(path string, log *slog.Logger) func(watch.Round) {
	return func(watch.Round) {
		if err := m.WriteFile(path); err != nil {
			log.Warn("cannot write the metrics' textfile", "path", path, "err", err.Error())
		}
	}
}

// Write writes the metrics in the text format (node_exporter's textfile
// format), whole: they are gathered before anything is written.
func (m *Metrics) Write(w io.Writer) error {
	mfs, err := m.reg.Gather()
	if err != nil {
		return err
	}
	enc := expfmt.NewEncoder(w, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			return err
		}
	}
	return nil
}

// WriteFile writes the metrics to a temporary file in path's directory and
// renames it over path, so node_exporter never reads half a file (the
// temporary name does not end in .prom: the textfile collector ignores it).
func (m *Metrics) WriteFile(path string) error { return prometheus.WriteToTextfile(path, m.reg) }

// collector turns the last audits into gauges as a scrape asks for them.
type collector struct{ m *Metrics }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descSockets, descFindings, descWorst, descTime, descIntvl, descProbes, descDetect,
		descRetries2, descConntrack, descDuration, descSuccess, descTimestamp, descBuildInfo} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	b := c.m.build
	ch <- prometheus.MustNewConstMetric(descBuildInfo, prometheus.GaugeValue, 1, b.Version, b.Commit, b.GoVersion)
	c.m.mu.Lock()
	audits := make([]PromAudit, 0, len(c.m.audits))
	for _, p := range c.m.audits {
		audits = append(audits, p)
	}
	c.m.mu.Unlock()
	sort.Slice(audits, func(i, j int) bool { return audits[i].NetNS < audits[j].NetNS })
	for _, p := range audits {
		collectAudit(ch, p)
	}
}

// collectAudit sends one namespace's gauges. Without a summary only
// tcpkeep_audit_success (0), the timestamp and what is known are sent.
func collectAudit(ch chan<- prometheus.Metric, p PromAudit) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, append([]string{p.NetNS}, labels...)...)
	}
	sum := p.Summary
	gauge(descSuccess, boolFloat(sum != nil))
	gauge(descTimestamp, float64(p.Start.UnixMilli())/1000)
	if t := p.Tunables; t != nil {
		gauge(descTime, t.Time.Seconds())
		gauge(descIntvl, t.Intvl.Seconds())
		gauge(descProbes, float64(t.Probes))
		gauge(descDetect, t.DeadPeerDetect().Seconds())
		if t.Retries2 != nil {
			gauge(descRetries2, float64(*t.Retries2))
		}
		if t.ConntrackEstablished != nil {
			gauge(descConntrack, t.ConntrackEstablished.Seconds())
		}
	}
	if sum == nil {
		return
	}
	for _, st := range promStates {
		gauge(descSockets, float64(sum.Counts.ByState[st]), st.String())
	}
	for _, code := range audit.Codes {
		var v [audit.Critical + 1]int
		if n := sum.Findings[code]; n != nil {
			v = *n
		}
		for _, s := range code.Severities() {
			gauge(descFindings, float64(v[s]), string(code), s.String())
		}
	}
	gauge(descWorst, float64(sum.Worst))
	gauge(descDuration, sum.Duration.Seconds())
}

func boolFloat(v bool) float64 {
	if v {
		return 1
	}
	return 0
}
