package cli

import (
	"errors"
	"fmt"
	"time"

	"github.com/tcpkeep/tcpkeep/internal/kill"
	"github.com/tcpkeep/tcpkeep/internal/proc"
	"github.com/tcpkeep/tcpkeep/internal/report"
	"github.com/tcpkeep/tcpkeep/internal/sweep"
	"github.com/tcpkeep/tcpkeep/sysctl"
)

func runArm(e *env, args []string) error {
	fs := newFlags(e, "arm", helpText("arm", "middleboxes", sysctl.MiddleboxNames()))
	var sel selectFlags
	addSelectFlags(fs, &sel, "arm", "states to arm: established, close-wait (the default, and the only connections armed), listening for listeners")
	var pid int
	countVar(fs, &pid, 1, 1<<22, "pid", "arm only sockets process N holds")
	var k proc.Keepalive
	var detect time.Duration
	secondsVar(fs, &k.Time, sysctl.MaxTime, "time", "TCP_KEEPIDLE: idle time before the first probe (with --intvl and --probes)")
	secondsVar(fs, &k.Intvl, sysctl.MaxIntvl, "intvl", "TCP_KEEPINTVL: time between unanswered probes")
	countVar(fs, &k.Probes, 1, sysctl.MaxProbes, "probes", "TCP_KEEPCNT: unanswered probes before the kernel drops the connection")
	behind := fs.String("behind", "", "from the model: a middlebox on the path whose idle timeout is known, `NAME` (see above)")
	atLeastVar(fs, &detect, 1, "detect-within", "from the model: find a dead idle peer within this long")
	durationVar(fs, &k.UserTimeout, "user-timeout", "TCP_USER_TIMEOUT too: drop a connection whose data goes unacknowledged this long (0: tcp_retries2)")
	dryRun := fs.Bool("dry-run", false, "take each socket from its owner and read its options; set nothing")
	procs := fs.BoolP("processes", "p", false, "a PROCESS column in the table: the pid, comm and descriptor each socket was taken from")
	if err := parseCommand(e, fs, args, "table", "json", "ndjson"); err != nil {
		return err
	}
	filter, listeners, err := sel.selection(fs, "arm", "arm", kill.Armable, "pid")
	if err != nil {
		return err
	}
	explicit, model := fs.Changed("time") || fs.Changed("intvl") || fs.Changed("probes"), fs.Changed("path-idle-timeout") || *behind != "" || fs.Changed("detect-within")
	_, pathErr := sysctl.ChoosePath(sysctl.PathChoice{Given: sel.th.PathIdleTimeout, Behind: *behind, Conntrack: new(time.Duration)})
	k.SetUserTimeout = fs.Changed("user-timeout")
	switch {
	case explicit == model, explicit && (k.Time == 0 || k.Intvl == 0 || k.Probes == 0):
		return usagef("arm: say which values to set: all of --time D --intvl D --probes N, or the model's choice for the path with --behind NAME, --path-idle-timeout D and/or --detect-within D (what 'tcpkeep sysctl recommend' gives), not both (see -h)")
	case model && pathErr != nil: // a timeout and a device both, or a device no table has
		return usagef("arm: %v (--behind knows %s; or give --path-idle-timeout alone)", pathErr, sysctl.MiddleboxNames())
	case k.SetUserTimeout && (k.UserTimeout%time.Millisecond != 0 || k.UserTimeout > (1<<31-1)*time.Millisecond):
		return usagef("--user-timeout %s: want whole milliseconds up to 596h, as 90s or 1500ms", report.Duration(k.UserTimeout))
	}
	cfg := kill.ArmConfig{Filter: filter, All: len(sel.codes) == 0, Findings: sel.codes, Audit: sel.th.Config,
		Listeners: listeners, Keepalive: k, DryRun: *dryRun, PID: pid}
	if model {
		cfg.Model = &kill.ArmModel{Path: sysctl.PathChoice{Given: sel.th.PathIdleTimeout, Behind: *behind}, DetectWithin: detect}
	}
	total := &report.Total{Command: "arm", DryRun: *dryRun}
	err = e.each(total, (&sweep.Arm{Format: e.format(), Config: cfg, Procs: *procs, Total: total}).Run)
	if failed, selected := total.KillFailed(); err == nil && failed > 0 {
		return fmt.Errorf("arm: %d of %d selected sockets could not be armed (their records say why)", failed, selected)
	} else if errors.Is(err, sysctl.ErrImpossible) {
		return usagef("arm: %v", err)
	}
	return err
}
