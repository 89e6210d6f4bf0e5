package cli

import (
	"time"

	"github.com/spf13/pflag"

	"github.com/tcpkeep/tcpkeep/internal/audit"
	"github.com/tcpkeep/tcpkeep/sysctl"
)

// thresholdFlags are the audit rules' thresholds. audit and kill (for
// --finding) define them once, here, so a threshold means the same in both.
type thresholdFlags struct {
	maxIdle, idleLimit, closeWaitAfter, pathIdle time.Duration
	retrans                                      countFlag
	perPeer                                      countFlag
}

// newThresholdFlags is the thresholds at DESIGN.md's defaults.
func newThresholdFlags() thresholdFlags {
	return thresholdFlags{
		maxIdle: audit.DefaultMaxIdle, closeWaitAfter: audit.DefaultCloseWaitAfter,
		retrans: countFlag{n: audit.DefaultRetransThreshold, min: 1, max: 255},
		perPeer: countFlag{min: 1, max: 1 << 30},
	}
}

// addThresholdFlags adds the threshold flags to fs.
func addThresholdFlags(fs *pflag.FlagSet, f *thresholdFlags) {
	fs.Var(&durationFlag{d: &f.maxIdle, set: true}, "max-idle", "idle_no_keepalive: flag ESTABLISHED connections without keepalive idle this long")
	fs.Var(&durationFlag{d: &f.idleLimit}, "idle-limit", "idle_overlong: flag connections idle this long, keepalive or not (default off)")
	fs.Var(&durationFlag{d: &f.closeWaitAfter, set: true}, "close-wait-after", "close_wait_stale: flag CLOSE_WAIT sockets idle this long")
	fs.Var(&f.retrans, "retrans-threshold", "half_open_retrans: flag after this many unacknowledged retransmissions in a row (default 3)")
	fs.Var(&f.perPeer, "max-per-peer", "peer_limit_exceeded: flag a remote address with more connections to one local port (default off)")
	fs.Var(&durationFlag{d: &f.pathIdle}, "path-idle-timeout", "keepalive_after_path_timeout: how long the path keeps an idle flow (default: the namespace's nf_conntrack_tcp_timeout_established, if loaded)")
}

// check refuses thresholds that cannot mean anything.
func (f *thresholdFlags) check(fs *pflag.FlagSet) error {
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"max-idle", f.maxIdle}, {"close-wait-after", f.closeWaitAfter}} {
		if d.v <= 0 {
			return usagef("--%s %s: want a positive duration, as 10m", d.name, d.v)
		}
	}
	if fs.Changed("idle-limit") && f.idleLimit <= 0 {
		return usagef("--idle-limit %s: want a positive duration, as 1h", f.idleLimit)
	}
	if fs.Changed("path-idle-timeout") && f.pathIdle < time.Second {
		return usagef("--path-idle-timeout %s: want at least 1s, as 350s", f.pathIdle)
	}
	return nil
}

// config is the audit configuration the thresholds and tunables t make.
func (f *thresholdFlags) config(t sysctl.Tunables) audit.Config {
	return audit.Config{
		MaxIdle: f.maxIdle, IdleLimit: f.idleLimit, CloseWaitAfter: f.closeWaitAfter,
		RetransThreshold: f.retrans.n, MaxPerPeer: f.perPeer.n, PathIdleTimeout: f.pathIdle,
		Tunables: t,
	}
}
