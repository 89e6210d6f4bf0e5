package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"github.com/tcpkeep/tcpkeep/internal/netns"
	"github.com/tcpkeep/tcpkeep/internal/report"
	"github.com/tcpkeep/tcpkeep/sysctl"
)

const sysctlUsage = `
Usage:
  tcpkeep sysctl [-o table|json|ndjson] [--netns NS]
  tcpkeep sysctl set [--time D] [--intvl D] [--probes N] [--persist[=FILE]] [--dry-run]
  tcpkeep sysctl recommend [--path-idle-timeout D | --behind NAME] [--middleboxes FILE]
                           [--detect-within D] [--heartbeat D] [--apply] [--persist[=FILE]]

Shows the TCP keepalive tunables of a network namespace and what they imply: how
long a dead idle peer goes unnoticed (max(time, intvl) + intvl x probes after its
last answer) and how long one with unacknowledged data does (the retransmission
backoffs under tcp_retries2, from the first retransmission), and draws the
timeline of a connection whose peer dies. docs/model.md gives the kernel's rules.

Keepalive probes only sockets that set SO_KEEPALIVE, and a socket may override all
three values (TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT). Each namespace has its own
values: a container's start at the kernel defaults, not at the host's.

Examples:
  tcpkeep sysctl
  tcpkeep --netns web sysctl -o json
  tcpkeep sysctl recommend --behind aws-nlb --detect-within 5m
`

func runSysctl(e *env, args []string) error {
	switch sub, rest := splitSubcommand(args, "set", "recommend"); sub {
	case "set":
		return runSysctlSet(e, rest)
	case "recommend":
		return runSysctlRecommend(e, rest)
	}
	fs := newFlags(e, "sysctl", sysctlUsage)
	if err := parse(e, fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("sysctl: unknown subcommand %q (sysctl, sysctl set, sysctl recommend; see -h)", fs.Arg(0))
	}
	if err := checkOutput(e, "table", "json", "ndjson"); err != nil {
		return err
	}
	ns, err := e.ns()
	if err != nil {
		return err
	}
	t, err := sysctl.Read(ns)
	if err != nil {
		return fmt.Errorf("netns %s: %w", ns, err)
	}
	if e.output != "table" {
		return writeJSON(e, sysctlRecordOf(e.meta(ns), t))
	}
	return writeTunablesTable(e.stdout, ns, t)
}

// keepaliveFields are the keys every record about keepalive values has.
type keepaliveFields struct {
	TimeS   int64 `json:"keepalive_time_s"`
	IntvlS  int64 `json:"keepalive_intvl_s"`
	Probes  int   `json:"keepalive_probes"`
	DetectS int64 `json:"dead_peer_detect_s"`
}

func keepaliveFieldsOf(k sysctl.Keepalive) keepaliveFields {
	return keepaliveFields{
		TimeS:   int64(k.Time / time.Second),
		IntvlS:  int64(k.Intvl / time.Second),
		Probes:  k.Probes,
		DetectS: int64(k.DeadPeerDetect() / time.Second),
	}
}

// header is the type, ts, host and netns every record starts with.
type header struct {
	Type  string `json:"type"`
	TS    string `json:"ts"`
	Host  string `json:"host"`
	NetNS string `json:"netns"`
}

func headerOf(typ string, m report.Meta) header {
	return header{Type: typ, TS: m.TSString(), Host: m.Host, NetNS: m.NetNS}
}

// sysctlRecord is the "sysctl" record: the tunables of one namespace.
type sysctlRecord struct {
	header
	keepaliveFields
	Retries2        *int   `json:"tcp_retries2,omitempty"`
	RetransGiveUpMS *int64 `json:"retrans_give_up_ms,omitempty"`
	FinTimeoutS     *int64 `json:"tcp_fin_timeout_s,omitempty"`
	OrphanRetries   *int   `json:"tcp_orphan_retries,omitempty"`
	ConntrackS      *int64 `json:"conntrack_established_timeout_s,omitempty"`
}

func sysctlRecordOf(m report.Meta, t sysctl.Tunables) sysctlRecord {
	r := sysctlRecord{header: headerOf("sysctl", m), keepaliveFields: keepaliveFieldsOf(t.Keepalive), Retries2: t.Retries2}
	if t.Retries2 != nil {
		ms := retransAfter(*t.Retries2).Milliseconds()
		r.RetransGiveUpMS = &ms
	}
	r.FinTimeoutS = seconds(t.FinTimeout)
	r.OrphanRetries = t.OrphanRetries
	r.ConntrackS = seconds(t.ConntrackEstablished)
	return r
}

func seconds(d *time.Duration) *int64 {
	if d == nil {
		return nil
	}
	s := int64(*d / time.Second)
	return &s
}

// writeJSON writes one record: a document for -o json, a line for -o ndjson.
func writeJSON(e *env, v any) error {
	enc := json.NewEncoder(e.stdout)
	if e.output == "json" {
		enc.SetIndent("", "  ")
	}
	return enc.Encode(v)
}

func writeTunablesTable(w io.Writer, ns netns.NS, t sysctl.Tunables) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "TUNABLE (netns %s)\tVALUE\t\n", ns)
	fmt.Fprintf(tw, "net.ipv4.tcp_keepalive_time\t%d\t%s before the first probe of an idle connection\n", t.Time/time.Second, human(t.Time))
	fmt.Fprintf(tw, "net.ipv4.tcp_keepalive_intvl\t%d\t%s between unanswered probes\n", t.Intvl/time.Second, human(t.Intvl))
	fmt.Fprintf(tw, "net.ipv4.tcp_keepalive_probes\t%d\tunanswered probes before the connection is dropped\n", t.Probes)
	if t.Retries2 != nil {
		fmt.Fprintf(tw, "net.ipv4.tcp_retries2\t%d\tretransmissions before giving up (about %s after the first)\n", *t.Retries2, human(retransAfter(*t.Retries2).Round(time.Second)))
	}
	if t.FinTimeout != nil {
		fmt.Fprintf(tw, "net.ipv4.tcp_fin_timeout\t%d\t%s an orphaned FIN_WAIT2 socket lives\n", *t.FinTimeout/time.Second, human(*t.FinTimeout))
	}
	if t.OrphanRetries != nil {
		r := sysctl.OrphanRetries(*t.OrphanRetries)
		fmt.Fprintf(tw, "net.ipv4.tcp_orphan_retries\t%d\tretransmissions of a closed socket before giving up (%d: about %s)\n", *t.OrphanRetries, r, human(orphanAfter(*t.OrphanRetries).Round(time.Second)))
	}
	if t.ConntrackEstablished != nil {
		fmt.Fprintf(tw, "net.netfilter.nf_conntrack_tcp_timeout_established\t%d\t%s local conntrack keeps an idle flow\n", *t.ConntrackEstablished/time.Second, human(*t.ConntrackEstablished))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nA dead peer on an idle connection with SO_KEEPALIVE is dropped %s after its last answer (%s).\n",
		human(t.DeadPeerDetect()), detectFormula(t.Keepalive))
	if t.Retries2 != nil {
		fmt.Fprintf(w, "A dead peer with unacknowledged data is dropped about %s after the first retransmission (tcp_retries2 %d), unless TCP_USER_TIMEOUT is set.\n",
			human(retransAfter(*t.Retries2).Round(time.Second)), *t.Retries2)
	}
	fmt.Fprintln(w, "Sockets without SO_KEEPALIVE never notice a dead idle peer; sockets that set TCP_KEEPIDLE/INTVL/CNT use their own values.")
	if t.Time == sysctl.Defaults.Time {
		fmt.Fprintf(w, "Warning: tcp_keepalive_time is the kernel default of %s; most NAT gateways, firewalls and load balancers forget an idle flow within 4 to 20 minutes. See: tcpkeep sysctl recommend -h\n", human(t.Time))
	}
	if cadenceOverConntrack(t) {
		fmt.Fprintf(w, "Warning: keepalive probes every %s (max of tcp_keepalive_time and _intvl), too close to the local conntrack timeout (%s) for timers that fire late: conntrack forgets idle flows between probes. See: tcpkeep sysctl recommend --behind conntrack\n",
			human(t.Cadence()), human(*t.ConntrackEstablished))
	}
	var path time.Duration
	if t.ConntrackEstablished != nil {
		path = *t.ConntrackEstablished
	}
	writeTimeline(w, t.Keepalive, path, "local conntrack")
	return nil
}

// persistFlag adds --persist[=FILE].
func persistFlag(fs *pflag.FlagSet, p *string) {
	fs.StringVar(p, "persist", "", "also write a sysctl.d file so the values survive a reboot (default "+sysctl.DefaultPersistFile+"); host namespace only")
	fs.Lookup("persist").NoOptDefVal = sysctl.DefaultPersistFile
}

// change is what set and recommend --apply do: write k to ns (unless dryRun), then
// persist it (if persist names a file), all or nothing.
type change struct {
	ns      netns.NS
	k       sysctl.Keepalive
	persist string
	dryRun  bool
	why     string // for the persisted file's header
}

// checkPersist refuses --persist for a namespace other than the host's: sysctl.d
// applies at boot, to the host's namespace only.
func checkPersist(e *env, ns netns.NS, persist string) error {
	if persist == "" {
		return nil
	}
	host, err := e.isHost(ns)
	if err != nil {
		return fmt.Errorf("--persist: cannot tell whether netns %s is the host's: %w", ns, err)
	}
	if !host {
		return usagef("--persist: netns %s is not the host's namespace, and sysctl.d files apply at boot to the host's only; persist a container's values in its own configuration (its runtime's sysctls)", ns)
	}
	if strings.HasSuffix(persist, "/") {
		return usagef("--persist=%q: give a file name, as %s", persist, sysctl.DefaultPersistFile)
	}
	return nil
}

// apply writes c, then persists it; if persisting fails, the old values are
// restored so nothing is half done.
func (c change) apply() (old sysctl.Keepalive, err error) {
	if c.dryRun {
		t, err := sysctl.Read(c.ns)
		return t.Keepalive, err
	}
	old, err = sysctl.Write(c.ns, c.k)
	if err != nil {
		return old, fmt.Errorf("netns %s: %w", c.ns, err)
	}
	if c.persist != "" {
		header := fmt.Sprintf("Written by tcpkeep %s on %s.\n%s\nEdit with: tcpkeep sysctl set --persist=%s",
			version, time.Now().UTC().Format(time.RFC3339), c.why, c.persist)
		if perr := sysctl.Persist(c.persist, c.k, header); perr != nil {
			if rerr := sysctl.Restore(c.ns, old); rerr != nil {
				return old, fmt.Errorf("%w; restoring the live values failed too: %v", perr, rerr)
			}
			return old, fmt.Errorf("%w; the live values were restored, nothing changed", perr)
		}
	}
	return old, nil
}

// setRecord is the "sysctl_set" record: what set (or recommend --apply) changed.
type setRecord struct {
	header
	DryRun      bool            `json:"dry_run"`
	Old         keepaliveFields `json:"old"`
	New         keepaliveFields `json:"new"`
	PersistFile string          `json:"persist_file,omitempty"`
}

func writeChange(e *env, ns netns.NS, c change, old sysctl.Keepalive) error {
	if e.output != "table" {
		return writeJSON(e, setRecord{header: headerOf("sysctl_set", e.meta(ns)), DryRun: c.dryRun,
			Old: keepaliveFieldsOf(old), New: keepaliveFieldsOf(c.k), PersistFile: c.persist})
	}
	w := e.stdout
	verb := "set"
	if c.dryRun {
		verb = "would set"
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(name string, o, n int64) {
		if o == n {
			fmt.Fprintf(tw, "  %s\t%d\t(unchanged)\n", name, n)
		} else {
			fmt.Fprintf(tw, "  %s\t%d -> %d\t\n", name, o, n)
		}
	}
	fmt.Fprintf(w, "netns %s: %s\n", ns, verb)
	row("net.ipv4.tcp_keepalive_time", int64(old.Time/time.Second), int64(c.k.Time/time.Second))
	row("net.ipv4.tcp_keepalive_intvl", int64(old.Intvl/time.Second), int64(c.k.Intvl/time.Second))
	row("net.ipv4.tcp_keepalive_probes", int64(old.Probes), int64(c.k.Probes))
	tw.Flush()
	fmt.Fprintf(w, "A dead idle peer is declared after %s (was %s).\n", human(c.k.DeadPeerDetect()), human(old.DeadPeerDetect()))
	if c.persist != "" {
		if c.dryRun {
			fmt.Fprintf(w, "Would write %s:\n%s", c.persist, sysctl.PersistFile(c.k, "..."))
		} else {
			fmt.Fprintf(w, "Persisted to %s (applies to the host at boot).\n", c.persist)
		}
	}
	if c.dryRun {
		fmt.Fprintln(w, "Nothing was written (--dry-run).")
	} else {
		fmt.Fprintln(w, "Timers already pending expire as scheduled; sockets that set TCP_KEEPIDLE/INTVL/CNT keep their own values.")
	}
	return nil
}

func runSysctlSet(e *env, args []string) error {
	fs := newFlags(e, "sysctl set", `
Usage: tcpkeep sysctl set [--time D] [--intvl D] [--probes N] [--persist[=FILE]] [--dry-run]

Sets the keepalive tunables of a network namespace: all of them or none. Values are
checked before anything is written; if a write fails, what was already written is
restored. The values are read back to verify them. Unset flags keep their values.

D is whole seconds from 1 to 32767, as a bare number (90) or a duration (90s, 2m).

Examples:
  tcpkeep sysctl set --time 5m --intvl 30s --probes 5
  tcpkeep sysctl set --time 300 --persist            # also for the next boot
  tcpkeep --netns web sysctl set --time 60 --dry-run
`)
	tm := &secondsFlag{max: int(sysctl.MaxTime / time.Second)}
	iv := &secondsFlag{max: int(sysctl.MaxIntvl / time.Second)}
	pr := &countFlag{min: 1, max: sysctl.MaxProbes}
	var persist string
	var dry bool
	fs.Var(tm, "time", "tcp_keepalive_time: idle time before the first probe (1 to 32767 s)")
	fs.Var(iv, "intvl", "tcp_keepalive_intvl: time between probes (1 to 32767 s)")
	fs.Var(pr, "probes", "tcp_keepalive_probes: unanswered probes before the connection is dropped (1 to 127)")
	persistFlag(fs, &persist)
	fs.BoolVar(&dry, "dry-run", false, "show what would change and write nothing")
	if err := parseCommand(e, fs, args, "table", "json", "ndjson"); err != nil {
		return err
	}
	if fs.Changed("persist") && persist == "" {
		return usagef("--persist=: give a file name, or --persist alone for %s", sysctl.DefaultPersistFile)
	}
	if !tm.set && !iv.set && !pr.set {
		return usagef("sysctl set: nothing to set: give --time, --intvl and/or --probes (see -h)")
	}
	ns, err := e.ns()
	if err != nil {
		return err
	}
	if err := checkPersist(e, ns, persist); err != nil {
		return err
	}
	cur, err := sysctl.Read(ns)
	if err != nil {
		return fmt.Errorf("netns %s: %w", ns, err)
	}
	k := cur.Keepalive
	if tm.set {
		k.Time = tm.d
	}
	if iv.set {
		k.Intvl = iv.d
	}
	if pr.set {
		k.Probes = pr.n
	}
	if err := k.Validate(); err != nil {
		return usagef("sysctl set: the current value of %v; give that flag too", err)
	}
	c := change{ns: ns, k: k, persist: persist, dryRun: dry, why: "Set by: tcpkeep " + strings.Join(os.Args[1:], " ")}
	old, err := c.apply()
	if err != nil {
		return err
	}
	return writeChange(e, ns, c, old)
}

// recommendRecord is the "sysctl_recommend" record.
type recommendRecord struct {
	header
	keepaliveFields
	PathIdleTimeoutS int64  `json:"path_idle_timeout_s"`
	Path             string `json:"path"`
	PathDefault      bool   `json:"path_default,omitempty"`
	UserTimeoutMS    int64  `json:"user_timeout_ms"`
	HeartbeatMS      int64  `json:"heartbeat_ms,omitempty"`
	Reason           string `json:"reason"`
	Applied          bool   `json:"applied"`
}

func runSysctlRecommend(e *env, args []string) error {
	fs := newFlags(e, "sysctl recommend", `
Usage: tcpkeep sysctl recommend [--path-idle-timeout D | --behind NAME] [--middleboxes FILE]
                                [--detect-within D] [--heartbeat D] [--apply] [--persist[=FILE]]

Recommends keepalive tunables for a path. On an idle connection whose peer
answers, the kernel probes every max(time, intvl): that cadence stays under the
path's idle timeout less an eighth, because the kernel's timers fire late. The
interval is never longer than the idle time, so a dead peer is declared at most
time + probes x intvl after its last answer: within --detect-within less an
eighth, with more probes (up to 9, at least 3) rather than a longer interval.
Without a path
timeout it plans for the shortest common middlebox default (240 s), or the local
conntrack timeout if that is shorter.

--heartbeat D: the application sends its own heartbeat every D. Keepalive's idle
time is then set just above it, so keepalive stays out of a healthy heartbeat's
way and still finds a dead peer when the heartbeat itself stops.

Keepalive does not run while data is in flight or the peer advertises a zero
window: the recommendation says which TCP_USER_TIMEOUT applications should set
to drop such connections as soon (user_timeout_ms in json).

--behind knows: `+sysctl.MiddleboxNames()+` (docs/model.md cites each).
Those are vendor defaults; where yours is configured otherwise, give
--path-idle-timeout, or list your devices in --middleboxes FILE, one a line:
  name seconds source...      (edge-fw 300 our firewall policy; # comments)
Measure your own path with: tcpkeep probe idle ADDR

Examples:
  tcpkeep sysctl recommend --behind aws-nlb
  tcpkeep sysctl recommend --path-idle-timeout 10m --detect-within 2m --apply
  tcpkeep sysctl recommend --behind edge-fw --middleboxes /etc/tcpkeep/middleboxes
  tcpkeep sysctl recommend --behind azure-lb --heartbeat 30s --detect-within 5m
`)
	var path, detect, heartbeat time.Duration
	var behind, persist, boxes string
	var apply bool
	fs.Var(&durationFlag{d: &path}, "path-idle-timeout", "how long the path (NAT, firewall, load balancer) keeps an idle flow")
	fs.StringVar(&behind, "behind", "", "a middlebox whose idle timeout is known: "+sysctl.MiddleboxNames())
	fs.StringVar(&boxes, "middleboxes", "", "a file of your own middleboxes for --behind, one 'name seconds source' a line")
	fs.Var(&durationFlag{d: &detect}, "detect-within", "declare a dead idle peer within this long")
	fs.Var(&durationFlag{d: &heartbeat}, "heartbeat", "the period of the application's own heartbeat: keepalive stays out of its way")
	fs.BoolVar(&apply, "apply", false, "write the recommended values, as sysctl set does")
	persistFlag(fs, &persist)
	if err := parseCommand(e, fs, args, "table", "json", "ndjson"); err != nil {
		return err
	}
	if fs.Changed("path-idle-timeout") && behind != "" {
		return usagef("sysctl recommend: give --path-idle-timeout or --behind, not both")
	}
	if fs.Changed("path-idle-timeout") && path < time.Second {
		return usagef("--path-idle-timeout %v: want at least 1s", path)
	}
	if fs.Changed("detect-within") && detect <= 0 {
		return usagef("--detect-within %v: want a positive duration", detect)
	}
	if fs.Changed("heartbeat") && heartbeat <= 0 {
		return usagef("--heartbeat %v: want a positive duration", heartbeat)
	}
	if fs.Changed("persist") && persist == "" {
		return usagef("--persist=: give a file name, or --persist alone for %s", sysctl.DefaultPersistFile)
	}
	if persist != "" && !apply {
		return usagef("--persist goes with --apply: recommend changes nothing without it")
	}
	table, err := loadMiddleboxes(boxes)
	if err != nil {
		return err
	}
	ns, err := e.ns()
	if err != nil {
		return err
	}
	if err := checkPersist(e, ns, persist); err != nil {
		return err
	}
	cur, err := sysctl.Read(ns)
	if err != nil {
		return fmt.Errorf("netns %s: %w", ns, err)
	}
	p, err := choosePath(ns.String(), path, behind, table, cur)
	if err != nil {
		return err
	}
	req := sysctl.Request{Path: p, DetectWithin: detect, Heartbeat: heartbeat}
	rec, err := sysctl.Recommend(req)
	if err != nil {
		if errors.Is(err, sysctl.ErrImpossible) {
			return usagef("sysctl recommend: %v", err)
		}
		return err
	}
	if apply {
		c := change{ns: ns, k: rec.Keepalive, persist: persist, why: "Recommended by tcpkeep: " + rec.Reason}
		if _, err := c.apply(); err != nil {
			return err
		}
	}
	if e.output != "table" {
		return writeJSON(e, recommendRecord{header: headerOf("sysctl_recommend", e.meta(ns)), keepaliveFields: keepaliveFieldsOf(rec.Keepalive),
			PathIdleTimeoutS: int64(rec.PathIdleTimeout / time.Second), Path: pathKey(rec.Path), PathDefault: pathIsDefault(rec.Path), UserTimeoutMS: rec.UserTimeout.Milliseconds(),
			HeartbeatMS: rec.Heartbeat.Milliseconds(), Reason: rec.Reason, Applied: apply})
	}
	w := e.stdout
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "TUNABLE (netns %s)\tNOW\tRECOMMENDED\n", ns)
	fmt.Fprintf(tw, "net.ipv4.tcp_keepalive_time\t%d\t%d\n", cur.Time/time.Second, rec.Time/time.Second)
	fmt.Fprintf(tw, "net.ipv4.tcp_keepalive_intvl\t%d\t%d\n", cur.Intvl/time.Second, rec.Intvl/time.Second)
	fmt.Fprintf(tw, "net.ipv4.tcp_keepalive_probes\t%d\t%d\n", cur.Probes, rec.Probes)
	tw.Flush()
	fmt.Fprintln(w, rec.Reason)
	if note := pathNote(rec.Path); note != "" {
		fmt.Fprintln(w, note)
	}
	writeTimeline(w, rec.Keepalive, rec.PathIdleTimeout, pathName(rec.Path))
	switch {
	case apply && persist != "":
		fmt.Fprintf(w, "Applied, and persisted to %s.\n", persist)
	case apply:
		fmt.Fprintln(w, "Applied. Timers already pending expire as scheduled.")
	case rec.Keepalive == cur.Keepalive:
		fmt.Fprintln(w, "The namespace already has these values.")
	default:
		fmt.Fprintf(w, "Apply with: tcpkeep %ssysctl set --time %d --intvl %d --probes %d   (or add --apply; --persist for the next boot)\n",
			nsArg(ns), rec.Time/time.Second, rec.Intvl/time.Second, rec.Probes)
	}
	return nil
}

// nsArg is the --netns argument that names ns again on a suggested command line.
func nsArg(ns netns.NS) string {
	if ns.Spec == "" {
		return ""
	}
	return "--netns " + ns.Spec + " "
}
