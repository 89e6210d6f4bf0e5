package cli

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/tcpkeep/tcpkeep/diag"
	"github.com/tcpkeep/tcpkeep/internal/audit"
	"github.com/tcpkeep/tcpkeep/internal/report"
)

// The socket filters conns, audit and kill share (DESIGN.md, Command line). The
// kernel applies them: states as the dump's state mask, ports and addresses as
// inet_diag bytecode.

// defaultStates is what ss shows without a state filter, and so what conns shows:
// every connected state but the minisocket ones (TIME_WAIT, SYN_RECV). LISTEN and
// CLOSE take --state listening or --state all.
const defaultStates = diag.StatesConnected &^ diag.StatesBucket

// filterFlags holds the filter flags as parsed.
type filterFlags struct {
	states       diag.StateSet
	statesText   string
	sport, dport diag.PortRange
	src, dst     netip.Prefix
	v4, v6       bool
}

// addFilterFlags adds the shared filter flags to fs.
func addFilterFlags(fs *pflag.FlagSet, f *filterFlags, states string) {
	parseStates := func(s string) (diag.StateSet, error) { f.statesText = s; return diag.ParseStates(s) }
	fs.Var(&value[diag.StateSet]{v: &f.states, arg: "LIST", parse: parseStates}, "state", states)
	fs.Var(&value[diag.PortRange]{v: &f.sport, arg: "P|LO-HI", parse: diag.ParsePortRange}, "sport", "local port, or an inclusive range")
	fs.Var(&value[diag.PortRange]{v: &f.dport, arg: "P|LO-HI", parse: diag.ParsePortRange}, "dport", "remote port, or an inclusive range")
	fs.Var(&value[netip.Prefix]{v: &f.src, arg: "ADDR[/BITS]", parse: diag.ParsePrefix}, "src", "local address or prefix")
	fs.Var(&value[netip.Prefix]{v: &f.dst, arg: "ADDR[/BITS]", parse: diag.ParsePrefix}, "dst", "remote address or prefix")
	fs.BoolVarP(&f.v4, "ipv4", "4", false, "IPv4 sockets only")
	fs.BoolVarP(&f.v6, "ipv6", "6", false, "IPv6 sockets only")
}

// filter builds the diag filter, with def as the states when --state is not
// given, and refuses combinations no socket can match.
func (f *filterFlags) filter(def diag.StateSet) (*diag.Filter, error) {
	df := &diag.Filter{States: def, SPort: f.sport, DPort: f.dport, Src: f.src, Dst: f.dst}
	if f.statesText != "" {
		df.States = f.states
	}
	switch {
	case f.v4 && f.v6:
		// Both: what no flag means.
	case f.v4:
		df.Family = diag.FamilyInet
	case f.v6:
		df.Family = diag.FamilyInet6
	}
	for _, p := range []struct {
		flag string
		p    netip.Prefix
	}{{"--src", f.src}, {"--dst", f.dst}} {
		// An IPv4 prefix still matches IPv4-mapped addresses of IPv6 sockets.
		if p.p.IsValid() && p.p.Addr().Is6() && df.Family == diag.FamilyInet {
			return nil, usagef("%s %s is IPv6 but -4 asks for IPv4 sockets only", p.flag, p.p)
		}
	}
	if err := df.Check(); err != nil {
		return nil, usagef("%v", err)
	}
	return df, nil
}

// namesListening says whether --state names LISTEN itself (listening, listen,
// LISTEN): a group such as all does not, so listeners stay out of kill.
func (f *filterFlags) namesListening() bool {
	for _, s := range strings.Split(f.statesText, ",") {
		switch strings.ToLower(strings.TrimSpace(s)) {
		case "listening", "listen":
			return true
		}
	}
	return false
}

// thresholdFlags are the audit rules' thresholds. audit and kill (for
// --finding) define them once, here, so a threshold means the same in both.
type thresholdFlags struct {
	audit.Config
	fs *pflag.FlagSet
}

// addThresholdFlags adds the threshold flags to fs, at DESIGN.md's defaults.
func addThresholdFlags(fs *pflag.FlagSet, f *thresholdFlags) {
	f.fs = fs
	f.MaxIdle, f.CloseWaitAfter, f.RetransThreshold = audit.DefaultMaxIdle, audit.DefaultCloseWaitAfter, audit.DefaultRetransThreshold
	durationVar(fs, &f.MaxIdle, "max-idle", "idle_no_keepalive: flag ESTABLISHED connections without keepalive idle this long")
	durationVar(fs, &f.IdleLimit, "idle-limit", "idle_overlong: flag connections idle this long, keepalive or not (default off)")
	durationVar(fs, &f.CloseWaitAfter, "close-wait-after", "close_wait_stale: flag CLOSE_WAIT sockets idle this long")
	countVar(fs, &f.RetransThreshold, 1, 255, "retrans-threshold", "half_open_retrans: flag after this many unacknowledged retransmissions in a row")
	countVar(fs, &f.MaxPerPeer, 1, 1<<30, "max-per-peer", "peer_limit_exceeded: flag a remote address with more connections to one local port (default off)")
	durationVar(fs, &f.PathIdleTimeout, "path-idle-timeout", "keepalive_after_path_timeout: how long the path keeps an idle flow (default: the namespace's nf_conntrack_tcp_timeout_established, if loaded)")
}

// check refuses thresholds that cannot mean anything.
func (f *thresholdFlags) check() error {
	for _, d := range []struct {
		name string
		v    time.Duration
		min  time.Duration
	}{{"max-idle", f.MaxIdle, 1}, {"close-wait-after", f.CloseWaitAfter, 1}, {"idle-limit", f.IdleLimit, 1}, {"path-idle-timeout", f.PathIdleTimeout, time.Second}} {
		if f.fs.Changed(d.name) && d.v < d.min {
			return usagef("--%s %s: want at least %s, as 10m", d.name, report.Duration(d.v), report.Duration(max(d.min, time.Millisecond)))
		}
	}
	return nil
}

// auditFlags are the flags of the commands that audit, audit and watch: the
// rules' thresholds, the filters, --sockopts and --prom-file.
type auditFlags struct {
	th       thresholdFlags
	filt     filterFlags
	sockopts *bool
	promFile *string
}

// addAuditFlags adds them to fs; promWhen says when --prom-file is written.
func addAuditFlags(fs *pflag.FlagSet, a *auditFlags, promWhen string) {
	addThresholdFlags(fs, &a.th)
	addFilterFlags(fs, &a.filt, "states or groups to check, comma-separated (default: all, listeners and TIME_WAIT included)")
	a.sockopts = fs.Bool("sockopts", false, "read the owners' real keepalive options (pidfd_getfd, Linux 5.6; scans /proc)")
	a.promFile = fs.String("prom-file", "", "also write the metrics in node_exporter textfile format to this file"+promWhen+", atomically; `PATH`")
}

// config checks them, and that the codes watch's --kill closes can be
// closed with them, and makes the audit's configuration.
func (a *auditFlags) config(kill []audit.Code) (audit.Config, error) {
	if err := a.th.check(); err != nil {
		return audit.Config{}, err
	}
	if err := checkKillCodes("--kill", kill, &a.th, a.filt.namesListening()); err != nil {
		return audit.Config{}, err
	}
	if dir := filepath.Dir(*a.promFile); *a.promFile != "" {
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return audit.Config{}, usagef("--prom-file %s: directory %s does not exist", *a.promFile, dir)
		}
	}
	cfg := a.th.Config
	var err error
	cfg.Filter, err = a.filt.filter(diag.StatesAll)
	return cfg, err
}
