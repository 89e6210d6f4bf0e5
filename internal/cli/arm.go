package cli

import (
	"cmp"
	"errors"
	"time"

	"github.com/tcpkeep/tcpkeep/diag"
	"github.com/tcpkeep/tcpkeep/internal/kill"
	"github.com/tcpkeep/tcpkeep/internal/proc"
	"github.com/tcpkeep/tcpkeep/internal/report"
	"github.com/tcpkeep/tcpkeep/sysctl"
)

// armStates are the states arm acts on: connections a program holds and
// that keepalive probes (tcp_keepalive_timer), and listeners when named.
// Sockets closing (FIN_WAIT*, LAST_ACK, CLOSING) are mostly orphans, and
// TIME_WAIT and request sockets are never anyone's: no descriptor to go through.
const armStates = diag.StateSet(1<<diag.StateEstablished | 1<<diag.StateCloseWait)

func runArm(e *env, args []string) error {
	fs := newFlags(e, "arm", helpText("arm", "middleboxes", sysctl.MiddleboxNames()))
	var sel selectFlags
	addSelectFlags(fs, &sel, "arm", "states to arm: established, close-wait (the default, and the only connections armed), listening for listeners")
	fs.Lookup("path-idle-timeout").Usage = "from the model: how long the path keeps an idle flow (also keepalive_after_path_timeout's threshold)"
	var pid int
	countVar(fs, &pid, 1, 1<<22, "pid", "arm only sockets process N holds")
	var k proc.Keepalive
	secondsVar(fs, &k.Time, sysctl.MaxTime, "time", "TCP_KEEPIDLE: idle time before the first probe (with --intvl and --probes)")
	secondsVar(fs, &k.Intvl, sysctl.MaxIntvl, "intvl", "TCP_KEEPINTVL: time between unanswered probes")
	countVar(fs, &k.Probes, 1, sysctl.MaxProbes, "probes", "TCP_KEEPCNT: unanswered probes before the kernel drops the connection")
	var m modelFlags
	addModelFlags(fs, &m, &sel.th.PathIdleTimeout)
	durationVar(fs, &k.UserTimeout, "user-timeout", "TCP_USER_TIMEOUT too: drop a connection whose data goes unacknowledged this long (0: tcp_retries2)")
	dryRun := fs.Bool("dry-run", false, "take each socket from its owner and read its options; set nothing")
	procs := fs.BoolP("processes", "p", false, "a PROCESS column in the table: the pid, comm and descriptor each socket was taken from")
	if err := parseCommand(e, fs, args, "table", "json", "ndjson"); err != nil {
		return err
	}
	filter, listeners, err := sel.selection(fs, "arm", "arm", armStates, "pid")
	if err != nil {
		return err
	}
	if filter.States &^= ^(armStates | diag.Of(diag.StateListen)); filter.States == 0 {
		return usagef("arm: --state %s: arm acts on established and close-wait connections, and on listeners named with --state listening", sel.statesText)
	}
	explicit, model := fs.Changed("time") || fs.Changed("intvl") || fs.Changed("probes"), m.given(fs)
	k.SetUserTimeout = fs.Changed("user-timeout")
	switch {
	case explicit && model:
		return usagef("arm: give --time, --intvl and --probes, or the model's --path-idle-timeout, --behind and --detect-within, not both")
	case explicit && (k.Time == 0 || k.Intvl == 0 || k.Probes == 0):
		return usagef("arm: --time, --intvl and --probes go together: a socket keeps what it is armed with, so say all three")
	case !explicit && !model:
		return usagef("arm: say which values to set: --time D --intvl D --probes N, or let the model choose for the path with --behind NAME, --path-idle-timeout D and/or --detect-within D (the values 'tcpkeep sysctl recommend' gives; see -h)")
	case k.SetUserTimeout && (k.UserTimeout%time.Millisecond != 0 || k.UserTimeout > (1<<31-1)*time.Millisecond):
		return usagef("--user-timeout %s: want whole milliseconds up to 596h, as 90s or 1500ms", report.Duration(k.UserTimeout))
	}
	if err := m.check(fs); err != nil {
		return err
	}
	cfg := kill.ArmConfig{Filter: filter, All: len(sel.codes) == 0, Findings: sel.codes, Audit: sel.th.Config,
		Listeners: listeners, Keepalive: k, DryRun: *dryRun, PID: pid}
	if model {
		cfg.Model = &kill.ArmModel{Path: m.choice(), DetectWithin: m.detect}
	}
	if mb, ok := m.table.Lookup(m.behind); ok {
		cfg.Audit.PathIdleTimeout = mb.IdleTimeout // the path keepalive_after_path_timeout judges by, too
	}
	ns, kns, err := e.open()
	if err != nil {
		return err
	}
	w := report.NewArmWriter(e.stdout, e.format(), e.meta(ns.String()), report.Words{NetNS: e.netnsSpec}, *dryRun, *procs)
	var werr error
	sum, runErr := kill.Arm(e.ctx, kns, cfg, sink(w.Action, &werr))
	if errors.Is(runErr, kill.ErrValues) {
		return m.error(ns, "arm", runErr) // before any socket: nothing to write
	}
	return ended(ns, "arm", "armed", sum.Interrupted, sum.Stopped, runErr, cmp.Or(werr, w.Finish(&sum)), sum.Failed, sum.Selected)
}
