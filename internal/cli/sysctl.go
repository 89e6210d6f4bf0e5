package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/tcpkeep/tcpkeep/internal/kernel"
	"github.com/tcpkeep/tcpkeep/internal/report"
	"github.com/tcpkeep/tcpkeep/internal/sweep"
	"github.com/tcpkeep/tcpkeep/sysctl"
)

func runSysctl(e *env, args []string) error {
	switch sub, rest := splitSubcommand(args, "set", "recommend"); sub {
	case "set":
		return runSysctlSet(e, rest)
	case "recommend":
		return runSysctlRecommend(e, rest)
	}
	fs := newFlags(e, "sysctl", helpText("sysctl"))
	if err := parse(e, fs, args, "table", "json", "ndjson"); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("sysctl: unknown subcommand %q (sysctl, sysctl set, sysctl recommend; see -h)", fs.Arg(0))
	}
	return e.each(&report.Total{Command: "sysctl"}, sweep.Sysctl(e.format()))
}

// persistFlag adds --persist[=FILE].
func persistFlag(fs *pflag.FlagSet, p *string) {
	fs.StringVar(p, "persist", "", "also write a sysctl.d `FILE` so the values survive a reboot (default "+sysctl.DefaultPersistFile+"); host namespace only")
	fs.Lookup("persist").NoOptDefVal = sysctl.DefaultPersistFile
}

// persistSpelling refuses a --persist that names no file.
func persistSpelling(fs *pflag.FlagSet, persist string) error {
	switch {
	case fs.Changed("persist") && persist == "":
		return usagef("--persist=: give a file name, or --persist alone for %s", sysctl.DefaultPersistFile)
	case strings.HasSuffix(persist, "/"):
		return usagef("--persist=%q: give a file name, as %s", persist, sysctl.DefaultPersistFile)
	}
	return nil
}

// persistFor is the file to persist t's values to: sysctl.d applies at boot,
// to the host's namespace only, so --persist for another is refused, and with
// --all-netns it persists the host's alone (and says so).
func (e *env) persistFor(t *sweep.Target, persist string) (string, error) {
	if persist == "" {
		return "", nil
	}
	host, err := t.K.IsHost()
	switch {
	case err != nil:
		return "", fmt.Errorf("--persist: cannot tell whether it is the host's namespace: %w", err)
	case !host && !e.allNetns:
		return "", usagef("--persist: netns %s is not the host's namespace, and sysctl.d files apply at boot to the host's only; persist a container's values in its own configuration (its runtime's sysctls)", t.Meta.NetNS)
	case !host:
		return "", nil
	case e.allNetns:
		fmt.Fprintf(e.stderr, "tcpkeep: note: --persist writes %s for the host's namespace only (sysctl.d applies at boot to the host's); the others keep the new values until they are recreated\n", persist)
	}
	return persist, nil
}

// apply makes the change c in k, or, for a dry run, only reads what it would
// replace.
func (e *env) apply(k kernel.NS, c sysctl.Change, dryRun bool, why string) (sysctl.Keepalive, error) {
	if c.PersistFile != "" {
		c.Header = fmt.Sprintf("Written by tcpkeep %s on %s.\n%s\nEdit with: tcpkeep sysctl set --persist=%s",
			version, e.now().UTC().Format(time.RFC3339), why, c.PersistFile)
	}
	if dryRun {
		t, err := k.Tunables()
		return t.Keepalive, err
	}
	return k.Apply(c)
}

func runSysctlSet(e *env, args []string) error {
	fs := newFlags(e, "sysctl set", helpText("sysctl-set"))
	var tm, iv time.Duration
	var probes int
	var persist string
	secondsVar(fs, &tm, sysctl.MaxTime, "time", "tcp_keepalive_time: idle time before the first probe (1 to 32767 s)")
	secondsVar(fs, &iv, sysctl.MaxIntvl, "intvl", "tcp_keepalive_intvl: time between probes (1 to 32767 s)")
	countVar(fs, &probes, 1, sysctl.MaxProbes, "probes", "tcp_keepalive_probes: unanswered probes before the connection is dropped (1 to 127)")
	persistFlag(fs, &persist)
	dry := fs.Bool("dry-run", false, "show what would change and write nothing")
	if err := parseCommand(e, fs, args, "table", "json", "ndjson"); err != nil {
		return err
	}
	if err := persistSpelling(fs, persist); err != nil {
		return err
	}
	if !fs.Changed("time") && !fs.Changed("intvl") && !fs.Changed("probes") {
		return usagef("sysctl set: nothing to set: give --time, --intvl and/or --probes (see -h)")
	}
	return e.each(&report.Total{Command: "sysctl set"}, func(ctx context.Context, t *sweep.Target) error {
		cur, err := t.K.Tunables()
		if err != nil {
			return err
		}
		p, err := e.persistFor(t, persist)
		if err != nil {
			return err
		}
		c := sysctl.Change{Keepalive: cur.Keepalive, PersistFile: p}
		if fs.Changed("time") {
			c.Time = tm
		}
		if fs.Changed("intvl") {
			c.Intvl = iv
		}
		if fs.Changed("probes") {
			c.Probes = probes
		}
		if err := c.Validate(); err != nil {
			return usagef("sysctl set: the current value of %v; give that flag too", err)
		}
		old, err := e.apply(t.K, c, *dry, "Set by: tcpkeep "+strings.Join(e.args, " "))
		if err != nil {
			return err
		}
		rec := report.Change{DryRun: *dry, Old: old, New: c.Keepalive, PersistFile: p}
		if *dry && p != "" {
			rec.PersistBody = sysctl.PersistFile(c.Keepalive, "...")
		}
		return report.WriteChange(t.Out, e.format(), t.Meta, &rec)
	})
}

func runSysctlRecommend(e *env, args []string) error {
	fs := newFlags(e, "sysctl recommend", helpText("sysctl-recommend", "middleboxes", sysctl.MiddleboxNames()))
	var path, detect, heartbeat time.Duration
	var persist string
	atLeastVar(fs, &path, time.Second, "path-idle-timeout", "how long the path (NAT, firewall, load balancer) keeps an idle flow")
	behind := fs.String("behind", "", "a middlebox whose idle timeout is known: "+sysctl.MiddleboxNames()+"; `NAME`")
	boxes := fs.String("middleboxes", "", "a `FILE` of your own middleboxes for --behind, one 'name seconds source' a line")
	atLeastVar(fs, &detect, 1, "detect-within", "declare a dead idle peer within this long")
	atLeastVar(fs, &heartbeat, 1, "heartbeat", "the period of the application's own heartbeat: keepalive stays out of its way")
	apply := fs.Bool("apply", false, "write the recommended values, as sysctl set does")
	persistFlag(fs, &persist)
	if err := parseCommand(e, fs, args, "table", "json", "ndjson"); err != nil {
		return err
	}
	switch {
	case fs.Changed("path-idle-timeout") && *behind != "":
		return usagef("sysctl recommend: give --path-idle-timeout or --behind, not both")
	case persist != "" && !*apply:
		return usagef("--persist goes with --apply: recommend changes nothing without it")
	}
	if err := persistSpelling(fs, persist); err != nil {
		return err
	}
	var err error
	table := sysctl.Middleboxes
	if *boxes != "" {
		if table, err = sysctl.ReadMiddleboxes(*boxes); err != nil {
			return usagef("--middleboxes %s: %v (one device a line: name seconds source)", *boxes, err)
		}
	}
	if _, ok := table.Lookup(*behind); *behind != "" && *behind != sysctl.ConntrackName && !ok {
		return usagef("--behind %q: unknown middlebox (known: %s); add your own with --middleboxes FILE, or give --path-idle-timeout", *behind, table.Names())
	}
	return e.each(&report.Total{Command: "sysctl recommend"}, func(ctx context.Context, t *sweep.Target) error {
		cur, err := t.K.Tunables()
		if err != nil {
			return err
		}
		file, err := e.persistFor(t, persist)
		if err != nil {
			return err
		}
		// Each namespace has its own conntrack timeout.
		p, err := sysctl.ChoosePath(sysctl.PathChoice{Given: path, Behind: *behind, Table: table, Conntrack: cur.ConntrackEstablished})
		if errors.Is(err, sysctl.ErrNoConntrack) {
			return errors.New("--behind conntrack: there is no nf_conntrack_tcp_timeout_established (nf_conntrack is not loaded there); give --path-idle-timeout instead")
		} else if err != nil {
			return err
		}
		rec, err := sysctl.Recommend(sysctl.Request{Path: p, DetectWithin: detect, Heartbeat: heartbeat})
		if errors.Is(err, sysctl.ErrImpossible) {
			return usagef("sysctl recommend: %v", err)
		} else if err != nil {
			return err
		}
		if *apply {
			c := sysctl.Change{Keepalive: rec.Keepalive, PersistFile: file}
			if _, err := e.apply(t.K, c, false, "Recommended by tcpkeep: "+rec.Reason); err != nil {
				return err
			}
		}
		return report.WriteRecommendation(t.Out, e.format(), t.Meta,
			&report.Recommendation{Recommendation: rec, Current: cur.Keepalive, Applied: *apply, PersistFile: file, NetNSArg: t.Arg})
	})
}
