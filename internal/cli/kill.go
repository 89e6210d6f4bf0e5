package cli

import (
	"fmt"

	"github.com/spf13/pflag"

	"github.com/tcpkeep/tcpkeep/diag"
	"github.com/tcpkeep/tcpkeep/internal/audit"
	"github.com/tcpkeep/tcpkeep/internal/kill"
	"github.com/tcpkeep/tcpkeep/internal/proc"
	"github.com/tcpkeep/tcpkeep/internal/report"
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
	ns, k, err := e.open()
	if err != nil {
		return err
	}
	if *procs {
		cfg.Owners = proc.NewIndex("/proc", false)
		defer cfg.Owners.Close()
	}
	w := report.NewKillWriter(e.stdout, e.format(), e.meta(ns.String()), report.Words{NetNS: e.netnsSpec}, *dryRun, *procs)
	var werr error
	sum, runErr := kill.Run(e.ctx, k, cfg, func(a *kill.Action) {
		if werr == nil {
			werr = w.Action(a)
		}
	})
	if err := w.Finish(&sum); werr == nil {
		werr = err
	}
	if err := cfg.Owners.Err(); err != nil {
		fmt.Fprintf(e.stderr, "tcpkeep: warning: %s\n", explain(err))
	}
	switch {
	case sum.Interrupted:
		return errInterrupted
	case sum.Stopped:
		return inNS(ns, fmt.Errorf("kill: %w; nothing else was tried", runErr))
	case runErr != nil:
		return inNS(ns, runErr)
	case werr != nil:
		return werr
	case sum.Failed > 0:
		return fmt.Errorf("kill: %d of %d selected sockets could not be closed (their records say why)", sum.Failed, sum.Selected)
	}
	return nil
}

// findingsVar is a flag of finding codes to close, comma-separated.
func findingsVar(fs *pflag.FlagSet, codes *[]audit.Code, name, usage string) {
	fs.Var(&value[[]audit.Code]{v: codes, arg: "CODES", parse: func(s string) ([]audit.Code, error) { return parseFindings(*codes, s) }}, name, usage)
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

// parseFindings adds the finding codes of s, comma-separated, to codes: codes
// of socket rules only.
func parseFindings(codes []audit.Code, s string) ([]audit.Code, error) {
	codes, err := audit.ParseCodes(codes, s, false)
	for _, c := range codes {
		if c.Tunable() {
			return nil, fmt.Errorf("%s is about the namespace's keepalive tunables, not a socket: there is nothing to close (fix it with tcpkeep sysctl recommend --apply)", c)
		}
	}
	return codes, err
}
