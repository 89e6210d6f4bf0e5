package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tcpkeep/tcpkeep/diag"
	"github.com/tcpkeep/tcpkeep/internal/audit"
	"github.com/tcpkeep/tcpkeep/internal/netns"
	"github.com/tcpkeep/tcpkeep/internal/proc"
	"github.com/tcpkeep/tcpkeep/internal/report"
	"github.com/tcpkeep/tcpkeep/sysctl"
)

// Exit codes of audit: the monitoring-plugin convention (Nagios, Icinga, Sensu).
const (
	auditOK       = 0
	auditWarning  = 1
	auditCritical = 2
	auditUnknown  = 3 // could not audit, usage errors included
)

const auditUsage = `
Usage: tcpkeep audit [thresholds] [filters] [--fail-on SEVERITY] [--sockopts]
                     [-o table|json|ndjson|prom] [--prom-file PATH]

Checks every TCP socket of a network namespace, and its keepalive tunables, and
reports what is wrong and what to do about it:

  half_open_keepalive    critical  keepalive probes go unanswered: the peer is gone
  half_open_retrans      critical  retransmissions go unacknowledged (--retrans-threshold)
  zero_window_stall      warning   the peer stopped reading: zero-window probes pile up
  idle_no_keepalive      warning   idle for --max-idle without SO_KEEPALIVE: a dead peer
                                   would never be noticed
  idle_overlong          warning   idle for --idle-limit (only when set)
  keepalive_after_path_timeout
                         warning   keepalive's first probe comes after the path (NAT,
                                   firewall, load balancer, local conntrack) forgot the flow
  close_wait_stale       warning   CLOSE_WAIT for --close-wait-after: the application
                                   never closed its end
  peer_limit_exceeded    warning   one remote address holds more than --max-per-peer
                                   connections to one local port (only when set)
  listen_queue_full      critical  a listener's accept queue is at its backlog
                                   (warning at 80%)
  sysctl_keepalive_default         tcp_keepalive_time is the 7200 s kernel default
  sysctl_keepalive_after_conntrack tcp_keepalive_time exceeds the conntrack timeout

README's "Findings" section explains each and what to do. Without --state every
socket is checked, listeners and TIME_WAIT included.

The sockets stream from the kernel (sock_diag) one at a time: nothing holds the
socket table, and the processes owning a socket are looked up only for sockets
that are flagged. --sockopts reads the owners' real keepalive options (TCP_KEEPIDLE
and friends) instead of inferring them, at the cost of a scan of /proc.

Exit codes (the monitoring-plugin convention): 0 nothing at or above --fail-on,
1 the worst finding is a warning (or info, with --fail-on info), 2 the worst is
critical, 3 the audit could not run (any error, a mistyped flag included).

Output: -o table (default) groups findings by severity, then code, and ends with a
summary line; -o ndjson writes one "finding" record per line, then a "summary"
record; -o json one document with findings, summary and tunables; -o prom the
node_exporter textfile format. --prom-file writes the prom format to a file as
well (atomically: a temporary file in the same directory, renamed), whatever -o.

Examples:
  tcpkeep audit
  tcpkeep audit --max-idle 5m --path-idle-timeout 350s --fail-on critical
  tcpkeep --netns web audit --sport 443 -o ndjson
  tcpkeep audit --max-per-peer 200 --state established,close-wait --sockopts

  # cron, every 5 minutes: metrics for node_exporter, findings to syslog
  */5 * * * * root tcpkeep audit -o ndjson --prom-file /var/lib/node_exporter/textfile_collector/tcpkeep.prom | logger -t tcpkeep
`

// auditFlags are audit's own flags.
type auditFlags struct {
	thresholdFlags // shared with kill: thresholds.go
	failOn         string
	sockopts       bool
	promFile       string
}

// runAudit runs the audit and maps what happened to the monitoring-plugin exit
// codes: every error, usage errors included, is 3.
func runAudit(e *env, args []string) error {
	worst, failOn, err := audit1(e, args)
	switch {
	case errors.Is(err, errHelp):
		return err
	case err != nil:
		return &exitCodeError{code: auditUnknown, err: err}
	}
	return auditExit(worst, failOn)
}

// auditExit is the exit for the worst severity found.
func auditExit(worst, failOn audit.Severity) error {
	switch {
	case worst == 0 || worst < failOn:
		return nil
	case worst == audit.Critical:
		return &exitCodeError{code: auditCritical}
	default:
		return &exitCodeError{code: auditWarning}
	}
}

func audit1(e *env, args []string) (worst, failOn audit.Severity, err error) {
	fs := newFlags(e, "audit", auditUsage+"\n"+filterHelp)
	f := auditFlags{thresholdFlags: newThresholdFlags()}
	addThresholdFlags(fs, &f.thresholdFlags)
	var filt filterFlags
	addFilterFlags(fs, &filt)
	fs.Lookup("state").Usage = "states or groups to check, comma-separated (default: all, listeners and TIME_WAIT included)"
	fs.StringVar(&f.failOn, "fail-on", "warning", "lowest severity that makes the exit code non-zero: info, warning or critical")
	fs.BoolVar(&f.sockopts, "sockopts", false, "read the owners' real keepalive options (pidfd_getfd, Linux 5.6; scans /proc)")
	fs.StringVar(&f.promFile, "prom-file", "", "also write the metrics in node_exporter textfile format to this file, atomically")
	if err := parseCommand(e, fs, args, "table", "json", "ndjson", "prom"); err != nil {
		return 0, 0, err
	}
	failOn, err = audit.ParseSeverity(f.failOn)
	if err != nil {
		return 0, 0, usagef("--fail-on %v", err)
	}
	if err := f.check(fs); err != nil {
		return 0, 0, err
	}
	if f.promFile != "" {
		if st, err := os.Stat(filepath.Dir(f.promFile)); err != nil || !st.IsDir() {
			return 0, 0, usagef("--prom-file %s: directory %s does not exist", f.promFile, filepath.Dir(f.promFile))
		}
	}
	filter, err := filt.filter(diag.StatesAll)
	if err != nil {
		return 0, 0, err
	}
	start := time.Now()
	ns, err := e.ns()
	if err != nil {
		if f.promFile != "" {
			// Tell the collector the audit failed, under the name asked for.
			r := &auditRun{e: e, ns: netns.NS{Spec: e.netnsSpec}, start: start}
			if perr := r.writePromFile(f.promFile, false); perr != nil {
				err = errors.Join(err, perr)
			}
		}
		return 0, 0, err
	}
	r := &auditRun{e: e, ns: ns, meta: e.meta(ns), start: start}
	worst, err = r.run(f, filter)
	if f.promFile != "" {
		if perr := r.writePromFile(f.promFile, err == nil); perr != nil && err == nil {
			err = perr
		}
	}
	return worst, failOn, err
}

// auditRun is one audit: its namespace, what it counted, where it writes.
type auditRun struct {
	e       *env
	ns      netns.NS
	meta    report.Meta
	start   time.Time
	tun     sysctl.Tunables
	tunOK   bool
	sockets report.Summary
	sum     audit.Summary
	out     *bufio.Writer
	buf     []byte
	n       int             // findings written, for json's commas
	held    []audit.Finding // the table's findings, grouped at the end
	owners  *ownerIndex
}

func (r *auditRun) run(f auditFlags, filter *diag.Filter) (audit.Severity, error) {
	t, err := sysctl.Read(r.ns)
	if err != nil {
		return 0, fmt.Errorf("netns %s: %w", r.ns, err)
	}
	r.tun, r.tunOK = t, true
	cfg := f.config(t)
	r.owners = &ownerIndex{}
	cfg.Owner = r.owners.owner
	if f.sockopts {
		opts := proc.NewOptReader()
		defer opts.Close()
		cfg.Sockopts = func(s *diag.Socket) (proc.SockOpts, bool) { return r.owners.sockopts(opts, s) }
	}
	c, err := dialDiag(r.ns)
	if err != nil {
		return 0, err
	}
	defer c.Close()

	r.out = bufio.NewWriterSize(r.e.stdout, 64<<10)
	a := audit.New(cfg)
	emit := r.emit
	if r.e.output == "json" {
		r.out.WriteString("{")
		r.buf = report.AppendHeader(r.buf[:0], "audit", r.meta)
		r.out.Write(r.buf)
		r.out.WriteString(`,"findings":[`)
	}
	a.Tunables(emit)
	for s, err := range c.Sockets(context.Background(), filter) {
		if err != nil {
			r.out.Flush()
			return 0, err
		}
		r.sockets.Add(s)
		a.Check(s, emit)
	}
	a.Finish(emit)
	r.sum = a.Summary()
	r.sockets.Duration = time.Since(r.start)
	if err := r.finish(); err != nil {
		return 0, err
	}
	if err := r.out.Flush(); err != nil {
		return 0, fmt.Errorf("write output: %w", err)
	}
	if r.owners.err != nil {
		fmt.Fprintf(r.e.stderr, "tcpkeep: warning: %v\n", r.owners.err)
	}
	return r.sum.Worst, nil
}

// appendStreamed appends one record of a stream as it comes: for ndjson a line
// of its own, with the header; for json an element of the document's array
// (which carries the header once). n counts the records before it. fields
// appends the record's own fields, the first without a leading comma.
func appendStreamed(dst []byte, output, typ string, m report.Meta, n int, fields func([]byte) []byte) []byte {
	if output == "ndjson" {
		dst = append(dst, '{')
		dst = report.AppendHeader(dst, typ, m)
		dst = append(dst, ',')
		dst = fields(dst)
		return append(dst, '}', '\n')
	}
	if n > 0 {
		dst = append(dst, ',')
	}
	dst = append(dst, "\n  {"...)
	dst = fields(dst)
	return append(dst, '}')
}

// emit writes a finding as it comes (json, ndjson), or holds it for the table.
func (r *auditRun) emit(f audit.Finding) {
	switch r.e.output {
	case "ndjson", "json":
		r.buf = appendStreamed(r.buf[:0], r.e.output, "finding", r.meta, r.n, func(dst []byte) []byte {
			return appendFindingFields(dst, &f)
		})
		r.out.Write(r.buf)
	case "table":
		r.held = append(r.held, f)
	}
	r.n++
}

// appendFindingFields appends code, severity, message, the predicted drop
// (drop_in_ms, drop_by) and socket.
func appendFindingFields(dst []byte, f *audit.Finding) []byte {
	dst = append(dst, `"code":`...)
	dst = appendJSONString(dst, string(f.Code))
	dst = append(dst, `,"severity":`...)
	dst = appendJSONString(dst, f.Severity.String())
	dst = append(dst, `,"message":`...)
	dst = appendJSONString(dst, f.Message)
	if f.DropBy != sysctl.DropNone {
		dst = append(dst, `,"drop_in_ms":`...)
		dst = strconv.AppendInt(dst, f.DropIn.Milliseconds(), 10)
		dst = append(dst, `,"drop_by":`...)
		dst = appendJSONString(dst, f.DropBy.String())
	}
	if f.Socket != nil {
		var x report.SocketExtra
		if f.Owner != nil {
			x.HasOwner, x.PID, x.Comm = true, f.Owner.PID, f.Owner.Comm
		}
		if f.Sockopts != nil {
			x.HasOpts, x.Opts = true, *f.Sockopts
		}
		dst = append(dst, `,"socket":`...)
		dst = report.AppendSocket(dst, f.Socket, &x)
	}
	return dst
}

func appendJSONString(dst []byte, s string) []byte {
	b, _ := json.Marshal(s) // a string always marshals
	return append(dst, b...)
}

// summaryFields appends the summary's keys: sockets, by_state, findings (count
// per code), worst and duration_ms.
func (r *auditRun) appendSummaryFields(dst []byte, first bool) []byte {
	dst = report.AppendSummaryFields(dst, &r.sockets, first)
	dst = append(dst, `,"findings":{`...)
	n := 0
	for _, c := range audit.Codes {
		if k := r.sum.Total(c); k > 0 {
			if n > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSONString(dst, string(c))
			dst = append(dst, ':')
			dst = strconv.AppendInt(dst, int64(k), 10)
			n++
		}
	}
	dst = append(dst, `},"worst":`...)
	return appendJSONString(dst, r.sum.Worst.String())
}

// auditTunables is the json document's "tunables".
type auditTunables struct {
	keepaliveFields
	Retries2        *int   `json:"tcp_retries2,omitempty"`
	RetransGiveUpMS *int64 `json:"retrans_give_up_ms,omitempty"`
	FinTimeoutS     *int64 `json:"tcp_fin_timeout_s,omitempty"`
	ConntrackS      *int64 `json:"conntrack_established_timeout_s,omitempty"`
}

func (r *auditRun) finish() error {
	switch r.e.output {
	case "ndjson":
		r.buf = append(r.buf[:0], '{')
		r.buf = report.AppendHeader(r.buf, "summary", r.meta)
		r.buf = r.appendSummaryFields(r.buf, false)
		r.buf = append(r.buf, '}', '\n')
		r.out.Write(r.buf)
	case "json":
		rec := sysctlRecordOf(r.meta, r.tun)
		tun, err := json.Marshal(auditTunables{rec.keepaliveFields, rec.Retries2, rec.RetransGiveUpMS, rec.FinTimeoutS, rec.ConntrackS})
		if err != nil {
			return err
		}
		r.buf = r.buf[:0]
		if r.n > 0 {
			r.buf = append(r.buf, '\n')
		}
		r.buf = append(r.buf, "],\n\"summary\":{"...)
		r.buf = r.appendSummaryFields(r.buf, true)
		r.buf = append(r.buf, "},\n\"tunables\":"...)
		r.buf = append(r.buf, tun...)
		r.buf = append(r.buf, "}\n"...)
		r.out.Write(r.buf)
	case "prom":
		r.out.Write(r.appendProm(nil, true))
	case "table":
		r.writeTable()
	}
	return nil
}

// writeTable writes the findings grouped by severity (worst first), then code,
// then a summary line; or one line saying all is well.
func (r *auditRun) writeTable() {
	w := r.out
	sort.SliceStable(r.held, func(i, j int) bool {
		a, b := r.held[i], r.held[j]
		if a.Severity != b.Severity {
			return a.Severity > b.Severity
		}
		return codeIndex(a.Code) < codeIndex(b.Code)
	})
	for i, f := range r.held {
		if i == 0 || f.Severity != r.held[i-1].Severity || f.Code != r.held[i-1].Code {
			if i > 0 {
				fmt.Fprintln(w)
			}
			fmt.Fprintf(w, "%s %s (%d)\n", strings.ToUpper(f.Severity.String()), f.Code, r.sum.Findings[f.Code][f.Severity])
		}
		fmt.Fprintf(w, "  %s\n", f.Message)
	}
	if len(r.held) > 0 {
		fmt.Fprintln(w)
	}
	states := r.statesText()
	took := human(r.sockets.Duration.Round(time.Millisecond))
	if len(r.held) == 0 {
		fmt.Fprintf(w, "All is well: %s in netns %s%s and the keepalive tunables checked, nothing found (took %s).\n", count(r.sockets.Sockets, "socket"), r.ns, states, took)
		return
	}
	var sev []string
	for _, s := range []audit.Severity{audit.Critical, audit.Warning, audit.Info} {
		n := 0
		for _, v := range r.sum.Findings {
			n += v[s]
		}
		if n > 0 {
			sev = append(sev, fmt.Sprintf("%d %s", n, s))
		}
	}
	fmt.Fprintf(w, "netns %s: %s%s, %s (%s), worst %s (took %s).\n",
		r.ns, count(r.sockets.Sockets, "socket"), states, count(len(r.held), "finding"), strings.Join(sev, ", "), r.sum.Worst, took)
}

func (r *auditRun) statesText() string {
	var parts []string
	for st, n := range r.sockets.ByState {
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", diag.State(st), n))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

// count writes "1 socket", "2 sockets".
func count(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return strconv.Itoa(n) + " " + what + "s"
}

func codeIndex(c audit.Code) int {
	for i, k := range audit.Codes {
		if k == c {
			return i
		}
	}
	return len(audit.Codes)
}

// promStates are the states tcpkeep_sockets always has a series for, so a
// state that empties reads 0 instead of vanishing.
var promStates = []diag.State{
	diag.StateEstablished, diag.StateSynSent, diag.StateSynRecv, diag.StateFinWait1,
	diag.StateFinWait2, diag.StateTimeWait, diag.StateClose, diag.StateCloseWait,
	diag.StateLastAck, diag.StateListen, diag.StateClosing,
}

// appendProm appends the node_exporter textfile metrics. Without success only
// tcpkeep_audit_success (0), the timestamp and what is known are written.
func (r *auditRun) appendProm(b []byte, success bool) []byte {
	ns := promLabel(r.ns.String())
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
	metric("tcpkeep_audit_success", "Whether the last audit ran to the end (1) or failed (0).", "gauge")
	val("tcpkeep_audit_success", "", boolFloat(success))
	metric("tcpkeep_audit_timestamp_seconds", "When the last audit started, in seconds since the epoch.", "gauge")
	val("tcpkeep_audit_timestamp_seconds", "", float64(r.start.UnixMilli())/1000)
	if r.tunOK {
		t := r.tun
		metric("tcpkeep_keepalive_time_seconds", "net.ipv4.tcp_keepalive_time: idle time before the first keepalive probe.", "gauge")
		val("tcpkeep_keepalive_time_seconds", "", t.Time.Seconds())
		metric("tcpkeep_keepalive_intvl_seconds", "net.ipv4.tcp_keepalive_intvl: time between unanswered keepalive probes.", "gauge")
		val("tcpkeep_keepalive_intvl_seconds", "", t.Intvl.Seconds())
		metric("tcpkeep_keepalive_probes", "net.ipv4.tcp_keepalive_probes: unanswered probes before the connection is dropped.", "gauge")
		val("tcpkeep_keepalive_probes", "", float64(t.Probes))
		metric("tcpkeep_dead_peer_detect_seconds", "How long a dead peer on an idle keepalive connection goes unnoticed: max(time, intvl) + intvl x probes.", "gauge")
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
	if !success {
		return b
	}
	metric("tcpkeep_sockets", "TCP sockets the audit checked, by state.", "gauge")
	for _, st := range promStates {
		val("tcpkeep_sockets", `,state="`+st.String()+`"`, float64(r.sockets.ByState[st]))
	}
	metric("tcpkeep_findings", "Findings of the audit, by code and severity (README's Findings section explains each).", "gauge")
	for _, c := range audit.Codes {
		var v [audit.Critical + 1]int
		if p := r.sum.Findings[c]; p != nil {
			v = *p
		}
		for _, s := range c.Severities() {
			val("tcpkeep_findings", `,code="`+string(c)+`",severity="`+s.String()+`"`, float64(v[s]))
		}
	}
	metric("tcpkeep_worst_severity", "The worst finding's severity: 0 none, 1 info, 2 warning, 3 critical.", "gauge")
	val("tcpkeep_worst_severity", "", float64(r.sum.Worst))
	metric("tcpkeep_audit_duration_seconds", "How long the audit took: tunables, dump, rules and output.", "gauge")
	val("tcpkeep_audit_duration_seconds", "", r.sockets.Duration.Seconds())
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

// writePromFile writes the metrics to a temporary file in path's directory and
// renames it over path, so node_exporter never reads half a file. The temporary
// name does not end in .prom: the textfile collector ignores it.
func (r *auditRun) writePromFile(path string, success bool) error {
	if r.sockets.Duration == 0 {
		r.sockets.Duration = time.Since(r.start)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("--prom-file: %w", err)
	}
	_, err = tmp.Write(r.appendProm(nil, success))
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
		return fmt.Errorf("--prom-file %s: %w", path, err)
	}
	return nil
}

// ownerIndex finds the processes that own sockets. The /proc scan happens on
// the first lookup, so an audit that flags nothing never scans.
type ownerIndex struct {
	scanned bool
	o       *proc.Owners
	err     error
}

func (x *ownerIndex) lookup(s *diag.Socket) (proc.Owner, bool) {
	if !x.scanned {
		x.scanned = true
		x.o, x.err = proc.ScanOwners("/proc")
	}
	if x.o == nil {
		return proc.Owner{}, false
	}
	return x.o.Lookup(s.Inode)
}

func (x *ownerIndex) owner(s *diag.Socket) (audit.Owner, bool) {
	o, ok := x.lookup(s)
	if !ok {
		return audit.Owner{}, false
	}
	return audit.Owner{PID: o.PID, Comm: x.o.Comm(o.PID)}, true
}

func (x *ownerIndex) sockopts(r *proc.OptReader, s *diag.Socket) (proc.SockOpts, bool) {
	o, ok := x.lookup(s)
	if !ok {
		return proc.SockOpts{}, false
	}
	var so proc.SockOpts
	if err := r.Read(o, s.Inode, &so); err != nil {
		if !errors.Is(err, proc.ErrGone) && x.err == nil {
			x.err = fmt.Errorf("--sockopts: %w; options are inferred instead", err)
		}
		return proc.SockOpts{}, false
	}
	return so, true
}
