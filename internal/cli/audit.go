package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/tcpkeep/tcpkeep/diag"
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
// codes: every error, usage errors included, is 3.
func runAudit(e *env, args []string) error {
	worst, failOn, err := auditCmd(e, args)
	var pe *partialError
	switch {
	case errors.Is(err, errHelp), errors.Is(err, errInterrupted):
		return err
	case errors.As(err, &pe) && worst == audit.Critical:
		return &exitCodeError{code: auditCritical, err: err} // what is critical, whatever was not read
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
	if dir := filepath.Dir(*promFile); *promFile != "" {
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return 0, 0, usagef("--prom-file %s: directory %s does not exist", *promFile, dir)
		}
	}
	cfg := th.Config
	if cfg.Filter, err = filt.filter(diag.StatesAll); err != nil {
		return 0, 0, err
	}
	owners := proc.NewIndex("/proc", *sockopts)
	defer owners.Close()
	cfg.Owners = owners
	total := &report.Total{Command: "audit"}
	job := &sweep.Audit{Format: e.format(), Config: cfg, Words: report.Words{Sockopts: true, Remedy: true}, Total: total}
	proms := &sweep.Proms{Failed: report.PromAudit{NetNS: netns.NS{Spec: e.netnsSpec}.String(), Start: e.meta("").TS}}
	if e.output == "prom" || *promFile != "" {
		job.Prom = proms.Add
	}
	err = e.each(total, job.Run)
	if job.Prom != nil {
		err = errors.Join(err, proms.Write(e.stdout, e.output == "prom", *promFile))
	}
	if oerr := owners.Err(); oerr != nil {
		fmt.Fprintf(e.stderr, "tcpkeep: warning: %s; options are inferred instead\n", explain(oerr))
	}
	return total.Worst(), failOn, err
}
