package cli

import (
	"errors"
	"fmt"
	"time"

	"github.com/tcpkeep/tcpkeep/internal/audit"
	"github.com/tcpkeep/tcpkeep/internal/netns"
	"github.com/tcpkeep/tcpkeep/internal/proc"
	"github.com/tcpkeep/tcpkeep/internal/report"
	"github.com/tcpkeep/tcpkeep/internal/sweep"
)

// Exit codes of audit: the monitoring-plugin convention (Nagios, Icinga, Sensu).
const (
	auditOK       = 0
	auditWarning  = 1
	auditCritical = 2
	auditUnknown  = 3 // could not audit, usage errors included
)

// runAudit runs the audit and maps what happened to the monitoring-plugin exit
// codes: every error, usage errors included, is 3; -o nagios says the same in
// its status line.
func runAudit(e *env, args []string) error {
	start := time.Now()
	worst, failOn, total, err := auditCmd(e, args)
	code := auditUnknown // could not audit
	switch {
	case errors.Is(err, errHelp):
		return err
	case errors.Is(err, errInterrupted):
		code = exitInterrupted
	case errors.As(err, new(*partialError)) && worst == audit.Critical:
		code = auditCritical // what is critical, whatever was not read
	case err == nil:
		code = auditCode(worst, failOn)
	}
	if e.output == "nagios" {
		e.stdout.Write(report.AppendNagios(nil, code, netns.NS{Spec: e.netnsSpec}.String(), e.allNetns, total, time.Since(start), explain(err)))
	}
	return &exitCodeError{code: code, err: err}
}

// auditCode is the exit code for the worst severity found.
func auditCode(worst, failOn audit.Severity) int {
	switch {
	case worst == 0 || worst < failOn:
		return auditOK
	case worst == audit.Critical:
		return auditCritical
	}
	return auditWarning
}

func auditCmd(e *env, args []string) (worst, failOn audit.Severity, total *report.Total, err error) {
	total = &report.Total{Command: "audit"}
	fs := newFlags(e, "audit", helpText("audit"))
	var af auditFlags
	addAuditFlags(fs, &af, "")
	failOnText := fs.String("fail-on", "warning", "lowest `SEVERITY` that makes the exit code non-zero: info, warning or critical")
	if err := parseCommand(e, fs, args, "table", "json", "ndjson", "prom", "nagios"); err != nil {
		return 0, 0, total, err
	}
	if failOn, err = audit.ParseSeverity(*failOnText); err != nil {
		return 0, 0, total, usagef("--fail-on %v", err)
	}
	cfg, err := af.config(nil)
	if err != nil {
		return 0, 0, total, err
	}
	owners := proc.NewIndex("/proc", *af.sockopts)
	defer owners.Close()
	cfg.Owners = owners
	job := &sweep.Audit{Format: e.format(), Config: cfg, Words: report.Words{Sockopts: true, Remedy: true}, Total: total}
	proms := &sweep.Proms{Build: build(), Failed: report.PromAudit{NetNS: netns.NS{Spec: e.netnsSpec}.String(), Start: e.meta("").TS}}
	if e.output == "prom" || *af.promFile != "" {
		job.Prom = proms.Add
	}
	err = e.each(total, job.Run)
	if job.Prom != nil {
		err = errors.Join(err, proms.Write(e.stdout, e.output == "prom", *af.promFile))
	}
	if oerr := owners.Err(); oerr != nil {
		fmt.Fprintf(e.stderr, "tcpkeep: warning: %s; options are inferred instead\n", explain(oerr))
	}
	return total.Worst(), failOn, total, err
}
