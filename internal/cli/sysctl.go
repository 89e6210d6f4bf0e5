package cli

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/tcpkeep/tcpkeep/internal/kernel"
	"github.com/tcpkeep/tcpkeep/internal/netns"
	"github.com/tcpkeep/tcpkeep/internal/report"
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
	ns, _, t, err := e.tunables()
	if err != nil {
		return err
	}
	return report.WriteSysctl(e.stdout, e.format(), e.meta(ns.String()), &t)
}

// tunables opens --netns and reads its tunables.
func (e *env) tunables() (netns.NS, kernel.NS, sysctl.Tunables, error) {
	ns, k, err := e.open()
	if err != nil {
		return ns, k, sysctl.Tunables{}, err
	}
	t, err := k.Tunables()
	return ns, k, t, inNS(ns, err)
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

// persistHost refuses --persist for a namespace other than the host's: sysctl.d
// applies at boot, to the host's namespace only.
func persistHost(ns netns.NS, k kernel.NS, persist string) error {
	if persist == "" {
		return nil
	}
	host, err := k.IsHost()
	if err != nil {
		return inNS(ns, fmt.Errorf("--persist: cannot tell whether it is the host's namespace: %w", err))
	}
	if !host {
		return usagef("--persist: netns %s is not the host's namespace, and sysctl.d files apply at boot to the host's only; persist a container's values in its own configuration (its runtime's sysctls)", ns)
	}
	return nil
}

// apply makes the change c in k, or, for a dry run, only reads what it would
// replace.
func (e *env) apply(ns netns.NS, k kernel.NS, c sysctl.Change, dryRun bool, why string) (sysctl.Keepalive, error) {
	if c.PersistFile != "" {
		c.Header = fmt.Sprintf("Written by tcpkeep %s on %s.\n%s\nEdit with: tcpkeep sysctl set --persist=%s",
			version, e.now().UTC().Format(time.RFC3339), why, c.PersistFile)
	}
	if dryRun {
		t, err := k.Tunables()
		return t.Keepalive, inNS(ns, err)
	}
	old, err := k.Apply(c)
	return old, inNS(ns, err)
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
	ns, k, cur, err := e.tunables()
	if err != nil {
		return err
	}
	if err := persistHost(ns, k, persist); err != nil {
		return err
	}
	c := sysctl.Change{Keepalive: cur.Keepalive, PersistFile: persist}
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
	old, err := e.apply(ns, k, c, *dry, "Set by: tcpkeep "+strings.Join(e.args, " "))
	if err != nil {
		return err
	}
	rec := report.Change{DryRun: *dry, Old: old, New: c.Keepalive, PersistFile: persist}
	if *dry && persist != "" {
		rec.PersistBody = sysctl.PersistFile(c.Keepalive, "...")
	}
	return report.WriteChange(e.stdout, e.format(), e.meta(ns.String()), &rec)
}

func runSysctlRecommend(e *env, args []string) error {
	fs := newFlags(e, "sysctl recommend", helpText("sysctl-recommend", "middleboxes", sysctl.MiddleboxNames()))
	var m modelFlags
	var path, heartbeat time.Duration
	var persist string
	addModelFlags(fs, &m, &path)
	durationVar(fs, &heartbeat, "heartbeat", "the period of the application's own heartbeat: keepalive stays out of its way")
	apply := fs.Bool("apply", false, "write the recommended values, as sysctl set does")
	persistFlag(fs, &persist)
	if err := parseCommand(e, fs, args, "table", "json", "ndjson"); err != nil {
		return err
	}
	switch {
	case fs.Changed("heartbeat") && heartbeat <= 0:
		return usagef("--heartbeat %s: want a positive duration", report.Duration(heartbeat))
	case persist != "" && !*apply:
		return usagef("--persist goes with --apply: recommend changes nothing without it")
	}
	if err := persistSpelling(fs, persist); err != nil {
		return err
	}
	if err := m.check(fs); err != nil {
		return err
	}
	ns, k, cur, err := e.tunables()
	if err != nil {
		return err
	}
	if err := persistHost(ns, k, persist); err != nil {
		return err
	}
	choice := m.choice()
	choice.Conntrack = cur.ConntrackEstablished
	p, err := sysctl.ChoosePath(choice)
	if err != nil {
		return m.error(ns, "sysctl recommend", err)
	}
	rec, err := sysctl.Recommend(sysctl.Request{Path: p, DetectWithin: m.detect, Heartbeat: heartbeat})
	if err != nil {
		return m.error(ns, "sysctl recommend", err)
	}
	if *apply {
		c := sysctl.Change{Keepalive: rec.Keepalive, PersistFile: persist}
		if _, err := e.apply(ns, k, c, false, "Recommended by tcpkeep: "+rec.Reason); err != nil {
			return err
		}
	}
	return report.WriteRecommendation(e.stdout, e.format(), e.meta(ns.String()),
		&report.Recommendation{Recommendation: rec, Current: cur.Keepalive, Applied: *apply, PersistFile: persist, NetNSArg: e.netnsSpec})
}

// modelFlags are the model's flags, as sysctl recommend and arm take them:
// the path (--path-idle-timeout, or --behind with --middleboxes) and the
// detection target (--detect-within).
type modelFlags struct {
	path          *time.Duration
	detect        time.Duration
	behind, boxes string
	table         sysctl.MiddleboxTable
}

// addModelFlags adds them; path holds --path-idle-timeout, which is added
// here unless the command has it already (arm's threshold flag).
func addModelFlags(fs *pflag.FlagSet, m *modelFlags, path *time.Duration) {
	if m.path = path; fs.Lookup("path-idle-timeout") == nil {
		durationVar(fs, path, "path-idle-timeout", "how long the path (NAT, firewall, load balancer) keeps an idle flow")
	}
	fs.StringVar(&m.behind, "behind", "", "a middlebox whose idle timeout is known: "+sysctl.MiddleboxNames()+"; `NAME`")
	fs.StringVar(&m.boxes, "middleboxes", "", "a `FILE` of your own middleboxes for --behind, one 'name seconds source' a line")
	durationVar(fs, &m.detect, "detect-within", "declare a dead idle peer within this long")
}

// given says whether any of them was given.
func (m *modelFlags) given(fs *pflag.FlagSet) bool {
	return fs.Changed("path-idle-timeout") || m.behind != "" || fs.Changed("detect-within")
}

// check refuses what cannot name a path or a target, and reads --middleboxes;
// ChoosePath refuses a --behind no table has (modelError words it).
func (m *modelFlags) check(fs *pflag.FlagSet) (err error) {
	switch {
	case fs.Changed("path-idle-timeout") && *m.path < time.Second:
		return usagef("--path-idle-timeout %s: want at least 1s", report.Duration(*m.path))
	case fs.Changed("detect-within") && m.detect <= 0:
		return usagef("--detect-within %s: want a positive duration", report.Duration(m.detect))
	}
	if m.table = sysctl.Middleboxes; m.boxes != "" {
		if m.table, err = sysctl.ReadMiddleboxes(m.boxes); err != nil {
			return usagef("--middleboxes %s: %v (one device a line: name seconds source)", m.boxes, err)
		}
	}
	return nil
}

// choice is the path the flags name; the caller adds the namespace's conntrack.
func (m *modelFlags) choice() sysctl.PathChoice {
	return sysctl.PathChoice{Given: *m.path, Behind: m.behind, Table: m.table}
}

// modelError words what the model refused: a path named twice, a middlebox no
// table has, or a request no values can meet is a usage error; a namespace
// without conntrack, or anything else, a runtime one.
func (m *modelFlags) error(ns netns.NS, cmd string, err error) error {
	switch {
	case errors.Is(err, sysctl.ErrPathConflict):
		return usagef("%s: give --path-idle-timeout or --behind, not both", cmd)
	case errors.Is(err, sysctl.ErrUnknownMiddlebox):
		return usagef("--behind %q: unknown middlebox (known: %s); add your own with --middleboxes FILE, or give --path-idle-timeout", m.behind, m.table.Names())
	case errors.Is(err, sysctl.ErrImpossible):
		return usagef("%s: %v", cmd, err)
	case errors.Is(err, sysctl.ErrNoConntrack):
		return inNS(ns, errors.New("--behind conntrack: there is no nf_conntrack_tcp_timeout_established (nf_conntrack is not loaded there); give --path-idle-timeout instead"))
	}
	return inNS(ns, err)
}
