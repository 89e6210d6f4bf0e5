package cli

import (
	"fmt"
	"slices"

	"github.com/spf13/pflag"

	"github.com/tcpkeep/tcpkeep/diag"
	"github.com/tcpkeep/tcpkeep/internal/audit"
	"github.com/tcpkeep/tcpkeep/internal/kill"
	"github.com/tcpkeep/tcpkeep/internal/proc"
	"github.com/tcpkeep/tcpkeep/internal/report"
	"github.com/tcpkeep/tcpkeep/internal/sweep"
)

func runKill(e *env, args []string) error {
	fs := newFlags(e, "kill", helpText("kill"))
	var filt filterFlags
	addFilterFlags(fs, &filt, "states or groups to close, comma-separated (default: connected but time-wait and syn-recv; listeners only when named)")
	var codes []audit.Code
	findingsVar(fs, &codes, "finding", "close sockets flagged with these finding codes, comma-separated (see above)")
	var th thresholdFlags
	addThresholdFlags(fs, &th)
	fs.Lookup("max-per-peer").Usage = "close, for each remote address and local port, the idlest connections beyond N (peer_limit_exceeded)"
	dryRun := fs.Bool("dry-run", false, "report what would be closed and why; close nothing")
	procs := fs.BoolP("processes", "p", false, "record the process holding each selected socket (pid, comm), and name it in messages: one scan of /proc")
	if err := parseCommand(e, fs, args, "table", "json", "ndjson"); err != nil {
		return err
	}
	if err := th.check(); err != nil {
		return err
	}
	filter, err := filt.filter(defaultStates)
	if err != nil {
		return err
	}
	// A filter selects only if it narrows: --ipv4=false, -4 -6 or --sport 0-65535
	// are given but select everything, and everything is never the default.
	narrows := fs.Changed("state") || filter.Family != 0 || !filter.SPort.Any() || !filter.DPort.Any() ||
		filter.Src.IsValid() || filter.Dst.IsValid()
	perPeer := fs.Changed("max-per-peer")
	if !narrows && len(codes) == 0 && !perPeer {
		return usagef("kill: say what to close: filters that narrow (--state, --sport, --dport, --src, --dst, -4, -6), --finding CODE or --max-per-peer N; tcpkeep never closes everything by default (see -h)")
	}
	listeners := filt.namesListening()
	if err := checkKillCodes("--finding", codes, &th, listeners); err != nil {
		return err
	}
	if !listeners {
		filter.States &^= diag.Of(diag.StateListen)
	}
	cfg := kill.Config{Filter: filter, All: len(codes) == 0 && !perPeer, Findings: codes, Audit: th.Config,
		MaxPerPeer: th.MaxPerPeer, Listeners: listeners, DryRun: *dryRun}
	if *procs {
		cfg.Owners = proc.NewIndex("/proc", false)
		defer cfg.Owners.Close()
	}
	total := &report.Total{Command: "kill", DryRun: *dryRun}
	job := &sweep.Kill{Format: e.format(), Config: cfg, Procs: *procs, Total: total}
	err = e.each(total, job.Run)
	if oerr := cfg.Owners.Err(); oerr != nil {
		fmt.Fprintf(e.stderr, "tcpkeep: warning: %s\n", explain(oerr))
	}
	if failed, selected := total.KillFailed(); err == nil && failed > 0 {
		return fmt.Errorf("kill: %d of %d selected sockets could not be closed (their records say why)", failed, selected)
	}
	return err
}

// findingsVar is a flag of finding codes to close, comma-separated: codes of
// socket rules only.
func findingsVar(fs *pflag.FlagSet, codes *[]audit.Code, name, usage string) {
	fs.Var(&value[[]audit.Code]{v: codes, arg: "CODES", parse: func(s string) ([]audit.Code, error) {
		c, err := audit.ParseCodes(*codes, s, false)
		if i := slices.IndexFunc(c, audit.Code.Tunable); i >= 0 {
			return nil, fmt.Errorf("%s is about the namespace's keepalive tunables, not a socket: there is nothing to close (fix it with tcpkeep sysctl recommend --apply)", c[i])
		}
		return c, err
	}}, name, usage)
}

// checkKillCodes refuses codes whose closing needs what was not given.
func checkKillCodes(flag string, codes []audit.Code, th *thresholdFlags, listeners bool) error {
	for _, c := range codes {
		switch {
		case c == audit.PeerLimitExceeded && !th.fs.Changed("max-per-peer"):
			return usagef("%s peer_limit_exceeded needs --max-per-peer N: the limit it enforces", flag)
		case c == audit.IdleOverlong && th.IdleLimit <= 0:
			return usagef("%s idle_overlong needs --idle-limit D: how long a connection may stay idle, as 1h", flag)
		case c == audit.ListenQueueFull && !listeners:
			return usagef("%s listen_queue_full closes listeners: add --state listening to say so", flag)
		}
	}
	return nil
}
