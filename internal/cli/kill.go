package cli

import (
	"fmt"
	"strings"

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
	fs.Var(&value[[]audit.Code]{v: &codes, arg: "CODES", parse: func(s string) ([]audit.Code, error) { return parseFindings(codes, s) }},
		"finding", "close sockets flagged with these finding codes, comma-separated (see above)")
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
	for _, c := range codes {
		switch {
		case c == audit.PeerLimitExceeded && !perPeer:
			return usagef("--finding peer_limit_exceeded needs --max-per-peer N: the limit it enforces")
		case c == audit.IdleOverlong && th.IdleLimit <= 0:
			return usagef("--finding idle_overlong needs --idle-limit D: how long a connection may stay idle, as 1h")
		case c == audit.ListenQueueFull && !listeners:
			return usagef("--finding listen_queue_full closes listeners: add --state listening to say so")
		}
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

// parseFindings adds the finding codes of s, comma-separated, to codes: codes
// of socket rules only.
func parseFindings(codes []audit.Code, s string) ([]audit.Code, error) {
	for _, v := range strings.Split(s, ",") {
		c := audit.Code(strings.TrimSpace(v))
		known := false
		for _, k := range audit.Codes {
			known = known || k == c
		}
		switch {
		case !known:
			var names []string
			for _, k := range audit.Codes {
				if !k.Tunable() {
					names = append(names, string(k))
				}
			}
			return nil, fmt.Errorf("unknown finding code %q (codes of socket findings: %s)", c, strings.Join(names, ", "))
		case c.Tunable():
			return nil, fmt.Errorf("%s is about the namespace's keepalive tunables, not a socket: there is nothing to close (fix it with tcpkeep sysctl recommend --apply)", c)
		}
		dup := false
		for _, k := range codes {
			dup = dup || k == c
		}
		if !dup {
			codes = append(codes, c)
		}
	}
	return codes, nil
}
