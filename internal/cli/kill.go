package cli

import (
	"fmt"

	"github.com/tcpkeep/tcpkeep/internal/kill"
	"github.com/tcpkeep/tcpkeep/internal/proc"
	"github.com/tcpkeep/tcpkeep/internal/report"
	"github.com/tcpkeep/tcpkeep/internal/sweep"
)

func runKill(e *env, args []string) error {
	fs := newFlags(e, "kill", helpText("kill"))
	var sel selectFlags
	addSelectFlags(fs, &sel, "close", "states or groups to close, comma-separated (default: connected but time-wait and syn-recv; listeners only when named)")
	fs.Lookup("max-per-peer").Usage = "close, for each remote address and local port, the idlest connections beyond N (peer_limit_exceeded)"
	dryRun := fs.Bool("dry-run", false, "report what would be closed and why; close nothing")
	viaOwner := fs.Bool("via-owner", false, "close through each socket's owner (shutdown on a duplicate of its descriptor, Linux 5.6, CAP_SYS_PTRACE), for kernels without SOCK_DESTROY")
	procs := fs.BoolP("processes", "p", false, "record the process holding each selected socket (pid, comm), and name it in messages: one scan of /proc")
	if err := parseCommand(e, fs, args, "table", "json", "ndjson"); err != nil {
		return err
	}
	filter, listeners, err := sel.selection(fs, "kill", "close", defaultStates, "max-per-peer")
	if err != nil {
		return err
	}
	cfg := kill.Config{Filter: filter, All: len(sel.codes) == 0 && !fs.Changed("max-per-peer"), Findings: sel.codes, Audit: sel.th.Config,
		MaxPerPeer: sel.th.MaxPerPeer, Listeners: listeners, DryRun: *dryRun}
	if *procs {
		cfg.Owners = proc.NewIndex("/proc", false)
		defer cfg.Owners.Close()
	}
	total := &report.Total{Command: "kill", DryRun: *dryRun}
	job := &sweep.Kill{Format: e.format(), Config: cfg, Procs: *procs, ViaOwner: *viaOwner, Total: total}
	err = e.each(total, job.Run)
	if oerr := cfg.Owners.Err(); oerr != nil {
		fmt.Fprintf(e.stderr, "tcpkeep: warning: %s\n", explain(oerr))
	}
	if failed, selected := total.KillFailed(); err == nil && failed > 0 {
		return fmt.Errorf("kill: %d of %d selected sockets could not be closed (their records say why)", failed, selected)
	}
	return err
}
