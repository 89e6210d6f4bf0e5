package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/tcpkeep/tcpkeep/diag"
	"github.com/tcpkeep/tcpkeep/internal/audit"
	"github.com/tcpkeep/tcpkeep/internal/netns"
	"github.com/tcpkeep/tcpkeep/internal/proc"
	"github.com/tcpkeep/tcpkeep/internal/report"
)

// Exit codes of audit: the monitoring-plugin convention (Nagios, Icinga, Sensu).
const (
	auditOK       = 0
	auditWarning  = 1
	auditCritical = 2
	auditUnknown  = 3 // could not audit, usage errors included
)

// runAudit runs the audit and maps what happened to the monitoring-plugin exit
// codes: every error, usage errors included, is 3.
func runAudit(e *env, args []string) error {
	worst, failOn, err := auditCmd(e, args)
	switch {
	case errors.Is(err, errHelp), errors.Is(err, errInterrupted):
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

func auditCmd(e *env, args []string) (worst, failOn audit.Severity, err error) {
	fs := newFlags(e, "audit", helpText("audit"))
	var th thresholdFlags
	addThresholdFlags(fs, &th, true)
	var filt filterFlags
	addFilterFlags(fs, &filt, "states or groups to check, comma-separated (default: all, listeners and TIME_WAIT included)")
	failOnText := fs.String("fail-on", "warning", "lowest `SEVERITY` that makes the exit code non-zero: info, warning or critical")
	sockopts := fs.Bool("sockopts", false, "read the owners' real keepalive options (pidfd_getfd, Linux 5.6; scans /proc)")
	promFile := fs.String("prom-file", "", "also write the metrics in node_exporter textfile format to this file, atomically; `PATH`")
	if err := parseCommand(e, fs, args, "table", "json", "ndjson", "prom"); err != nil {
		return 0, 0, err
	}
	if failOn, err = audit.ParseSeverity(*failOnText); err != nil {
		return 0, 0, usagef("--fail-on %v", err)
	}
	if err := th.check(); err != nil {
		return 0, 0, err
	}
	if dir := filepath.Dir(*promFile); *promFile != "" {
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return 0, 0, usagef("--prom-file %s: directory %s does not exist", *promFile, dir)
		}
	}
	cfg := th.Config
	if cfg.Filter, err = filt.filter(diag.StatesAll); err != nil {
		return 0, 0, err
	}
	start := e.now()
	ns, k, err := e.open()
	if err != nil {
		return 0, 0, promFailure(e, *promFile, netns.NS{Spec: e.netnsSpec}, start, nil, err)
	}
	owners := proc.NewIndex("/proc", *sockopts)
	defer owners.Close()
	cfg.Owners = owners
	w := report.NewAuditWriter(e.stdout, e.format(), e.meta(ns.String()), report.Words{Sockopts: true, Remedy: true, NetNS: e.netnsSpec})
	var werr error
	sum, err := audit.Run(e.ctx, k, cfg, sink(w.Finding, &werr))
	if err != nil && !sum.Interrupted {
		return 0, 0, promFailure(e, *promFile, ns, start, &sum, inNS(ns, err))
	}
	if err := w.Finish(&sum, ns.String()); werr == nil {
		werr = err
	}
	if *promFile != "" {
		p := report.PromAudit{NetNS: ns.String(), Start: start, Tunables: &sum.Tunables}
		if !sum.Interrupted {
			p.Summary = &sum
		}
		if err := report.WritePromFile(*promFile, p); err != nil && werr == nil {
			werr = fmt.Errorf("--prom-file %s: %w", *promFile, err)
		}
	}
	if err := owners.Err(); err != nil {
		fmt.Fprintf(e.stderr, "tcpkeep: warning: %s; options are inferred instead\n", explain(err))
	}
	if werr == nil && sum.Interrupted {
		werr = errInterrupted
	}
	return sum.Worst, failOn, werr
}

// promFailure tells the metrics collector, under the name asked for, that the
// audit failed, and returns err.
func promFailure(e *env, path string, ns netns.NS, start time.Time, sum *audit.Summary, err error) error {
	if path == "" {
		return err
	}
	p := report.PromAudit{NetNS: ns.String(), Start: start}
	if sum != nil && sum.HaveTunables {
		p.Tunables = &sum.Tunables
	}
	if perr := report.WritePromFile(path, p); perr != nil {
		err = errors.Join(err, fmt.Errorf("--prom-file %s: %w", path, perr))
	}
	return err
}
