package cli

import (
	"errors"
	"fmt"

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
		if e.output == string(report.Nagios) {
			report.WriteNagiosUnknown(e.stdout, explain(err))
		}
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
	var af auditFlags
	addAuditFlags(fs, &af, "")
	failOnText := fs.String("fail-on", "warning", "lowest `SEVERITY` that makes the exit code non-zero: info, warning or critical")
	if err := parseCommand(e, fs, args, "table", "json", "ndjson", "prom", "nagios"); err != nil {
		return 0, 0, err
	}
	if failOn, err = audit.ParseSeverity(*failOnText); err != nil {
		return 0, 0, usagef("--fail-on %v", err)
	}
	cfg, err := af.config()
	if err != nil {
		return 0, 0, err
	}
	// record writes what the audit saw to --prom-file: a failed audit too, as
	// tcpkeep_audit_success 0.
	m := report.NewMetrics(build())
	p := report.PromAudit{NetNS: netns.NS{Spec: e.netnsSpec}.String(), Start: e.now()}
	record := func(err error) error {
		if path := *af.promFile; path != "" {
			m.SetAudit(p)
			if perr := m.WriteFile(path); perr != nil {
				err = errors.Join(err, fmt.Errorf("--prom-file %s: %w", path, perr))
			}
		}
		return err
	}
	ns, k, err := e.open()
	if err != nil {
		return 0, 0, record(err)
	}
	owners := proc.NewIndex("/proc", *af.sockopts)
	defer owners.Close()
	cfg.Owners = owners
	w := report.NewAuditWriter(e.stdout, e.format(), e.meta(ns.String()), report.Words{Sockopts: true, Remedy: true, NetNS: e.netnsSpec})
	w.Metrics, w.FailOn = m, failOn
	var werr error
	sum, err := audit.Run(e.ctx, k, cfg, func(f *audit.Finding) {
		if werr == nil {
			werr = w.Finding(f)
		}
	})
	if sum.HaveTunables {
		p.Tunables = &sum.Tunables
	}
	if err != nil && !sum.Interrupted {
		return 0, 0, record(inNS(ns, err))
	}
	if err := w.Finish(&sum, ns.String()); werr == nil {
		werr = err
	}
	if !sum.Interrupted {
		p.Summary = &sum
	}
	if err := record(nil); werr == nil {
		werr = err
	}
	if err := owners.Err(); err != nil {
		fmt.Fprintf(e.stderr, "tcpkeep: warning: %s; options are inferred instead\n", explain(err))
	}
	if werr == nil && sum.Interrupted {
		werr = errInterrupted
	}
	return sum.Worst, failOn, werr
}
