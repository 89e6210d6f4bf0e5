package cli

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/tcpkeep/tcpkeep/diag"
	"github.com/tcpkeep/tcpkeep/internal/audit"
	"github.com/tcpkeep/tcpkeep/internal/flagval"
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
	fs.Var(&flagval.Value[diag.StateSet]{V: &f.states, Arg: "LIST", Parse: parseStates}, "state", states)
	fs.Var(&flagval.Value[diag.PortRange]{V: &f.sport, Arg: "P|LO-HI", Parse: diag.ParsePortRange}, "sport", "local port, or an inclusive range")
	fs.Var(&flagval.Value[diag.PortRange]{V: &f.dport, Arg: "P|LO-HI", Parse: diag.ParsePortRange}, "dport", "remote port, or an inclusive range")
	fs.Var(&flagval.Value[netip.Prefix]{V: &f.src, Arg: "ADDR[/BITS]", Parse: diag.ParsePrefix}, "src", "local address or prefix")
	fs.Var(&flagval.Value[netip.Prefix]{V: &f.dst, Arg: "ADDR[/BITS]", Parse: diag.ParsePrefix}, "dst", "remote address or prefix")
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

// selectFlags are what kill and arm select sockets by: the filters, --finding
// and the audit rules' thresholds, so that a selection means the same in both.
type selectFlags struct {
	filterFlags
	codes []audit.Code
	th    thresholdFlags
}

// addSelectFlags adds the selection flags; verb is what the command does to
// a socket (close, arm). Only kill has --max-per-peer.
func addSelectFlags(fs *pflag.FlagSet, s *selectFlags, verb, states string) {
	addFilterFlags(fs, &s.filterFlags, states)
	parse := func(v string) ([]audit.Code, error) { return parseFindings(s.codes, v, verb) }
	fs.Var(&flagval.Value[[]audit.Code]{V: &s.codes, Arg: "CODES", Parse: parse}, "finding", verb+" sockets flagged with these finding codes, comma-separated (see above)")
	addThresholdFlags(fs, &s.th, verb == "close")
}

// selection checks the selection flags and builds the filter, with def as the
// states without --state. other says another selector was given (kill's
// --max-per-peer, arm's --pid): at least one is required. LISTEN stays out
// unless --state names it, which listeners reports.
func (s *selectFlags) selection(fs *pflag.FlagSet, cmd, verb string, def diag.StateSet, other string) (filter *diag.Filter, listeners bool, err error) {
	if filter, err = s.filter(def); err != nil {
		return nil, false, err
	}
	// A filter selects only if it narrows: --ipv4=false, -4 -6 or --sport 0-65535
	// are given but select everything, and everything is never the default.
	narrows := fs.Changed("state") || filter.Family != 0 || !filter.SPort.Any() || !filter.DPort.Any() ||
		filter.Src.IsValid() || filter.Dst.IsValid()
	if !narrows && len(s.codes) == 0 && !fs.Changed(other) {
		return nil, false, usagef("%s: say what to %s: filters that narrow (--state, --sport, --dport, --src, --dst, -4, -6), --finding CODE or --%s N; tcpkeep never %ss everything by default (see -h)", cmd, verb, other, verb)
	}
	listeners = s.namesListening()
	if err := checkCodes(s.codes, "--finding", cmd, verb, &s.th, fs.Changed("max-per-peer"), listeners); err != nil {
		return nil, false, err
	}
	if !listeners {
		filter.States &^= diag.Of(diag.StateListen)
	}
	return filter, listeners, nil
}

// checkCodes refuses the finding codes of flag whose selection needs what was
// not given: perPeer says --max-per-peer was, listeners that --state names
// LISTEN.
func checkCodes(codes []audit.Code, flag, cmd, verb string, th *thresholdFlags, perPeer, listeners bool) error {
	for _, c := range codes {
		switch {
		case c == audit.PeerLimitExceeded && cmd == "arm":
			return usagef("%s peer_limit_exceeded selects a peer's surplus connections, which kill --max-per-peer closes; %s acts on what a rule flags one socket at a time", flag, cmd)
		case c == audit.PeerLimitExceeded && !perPeer:
			return usagef("%s peer_limit_exceeded needs --max-per-peer N: the limit it enforces", flag)
		case c == audit.IdleOverlong && th.IdleLimit <= 0:
			return usagef("%s idle_overlong needs --idle-limit D: how long a connection may stay idle, as 1h", flag)
		case c == audit.ListenQueueFull && !listeners:
			return usagef("%s listen_queue_full %ss listeners: add --state listening to say so", flag, verb)
		}
	}
	return nil
}

// parseFindings adds the finding codes of s, comma-separated, to codes: codes
// of socket rules only.
func parseFindings(codes []audit.Code, s, verb string) ([]audit.Code, error) {
	codes, err := audit.ParseCodes(codes, s)
	for _, c := range codes {
		if c.Tunable() {
			return nil, fmt.Errorf("%s is about the namespace's keepalive tunables, not a socket: there is nothing to %s (fix it with tcpkeep sysctl recommend --apply)", c, verb)
		}
	}
	return codes, err
}

// thresholdFlags are the audit rules' thresholds. audit, kill and arm (for
// --finding) define them once, here, so a threshold means the same in all.
type thresholdFlags struct{ audit.Config }

// addThresholdFlags adds the threshold flags to fs, at DESIGN.md's defaults;
// --max-per-peer with perPeer. A threshold that cannot mean anything is
// refused as it is parsed.
func addThresholdFlags(fs *pflag.FlagSet, f *thresholdFlags, perPeer bool) {
	f.MaxIdle, f.CloseWaitAfter, f.RetransThreshold = audit.DefaultMaxIdle, audit.DefaultCloseWaitAfter, audit.DefaultRetransThreshold
	atLeastVar(fs, &f.MaxIdle, 1, "max-idle", "idle_no_keepalive: flag ESTABLISHED connections without keepalive idle this long")
	atLeastVar(fs, &f.IdleLimit, 1, "idle-limit", "idle_overlong: flag connections idle this long, keepalive or not (default off)")
	atLeastVar(fs, &f.CloseWaitAfter, 1, "close-wait-after", "close_wait_stale: flag CLOSE_WAIT sockets idle this long")
	countVar(fs, &f.RetransThreshold, 1, 255, "retrans-threshold", "half_open_retrans: flag after this many unacknowledged retransmissions in a row")
	if perPeer {
		countVar(fs, &f.MaxPerPeer, 1, 1<<30, "max-per-peer", "peer_limit_exceeded: flag a remote address with more connections to one local port (default off)")
	}
	atLeastVar(fs, &f.PathIdleTimeout, time.Second, "path-idle-timeout", "keepalive_after_path_timeout: how long the path keeps an idle flow (default: the namespace's nf_conntrack_tcp_timeout_established, if loaded)")
}

// auditFlags are the flags of the commands that audit, audit and watch: the
// rules' thresholds, the filters, --sockopts and --prom-file.
type auditFlags struct {
	fs       *pflag.FlagSet
	th       thresholdFlags
	filt     filterFlags
	sockopts *bool
	promFile *string
}

// addAuditFlags adds them to fs; promWhen says when --prom-file is written.
func addAuditFlags(fs *pflag.FlagSet, a *auditFlags, promWhen string) {
	a.fs = fs
	addThresholdFlags(fs, &a.th, true)
	addFilterFlags(fs, &a.filt, "states or groups to check, comma-separated (default: all, listeners and TIME_WAIT included)")
	a.sockopts = fs.Bool("sockopts", false, "read the owners' real keepalive options (pidfd_getfd, Linux 5.6; scans /proc)")
	a.promFile = fs.String("prom-file", "", "also write the metrics in node_exporter textfile format to this file"+promWhen+", atomically; `PATH`")
}

// config checks them, and that the codes watch's --kill closes can be
// closed with them, and makes the audit's configuration.
func (a *auditFlags) config(kill []audit.Code) (audit.Config, error) {
	if err := checkCodes(kill, "--kill", "watch", "close", &a.th, a.fs.Changed("max-per-peer"), a.filt.namesListening()); err != nil {
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
