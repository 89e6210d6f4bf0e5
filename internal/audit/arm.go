package audit

import (
	"github.com/tcpkeep/tcpkeep/internal/proc"
	"github.com/tcpkeep/tcpkeep/sysctl"
)

// armValues are what a flagged connection could be armed with now, through
// its owner (Finding.Arm): the keepalive values sysctl.Recommend gives for
// the path sysctl.ChoosePath picks (cfg.PathIdleTimeout; else the local
// conntrack timeout where it is shorter than the assumed path), and its
// TCP_USER_TIMEOUT, Time + Probes x Intvl, so that a connection keepalive
// cannot help (data in flight, a zero window) is dropped as soon as an idle
// one would be. Zero when no values can keep the path.
func armValues(cfg Config) proc.Keepalive {
	p, err := sysctl.ChoosePath(sysctl.PathChoice{Given: cfg.PathIdleTimeout, Conntrack: cfg.Tunables.ConntrackEstablished})
	if err != nil {
		return proc.Keepalive{}
	}
	rec, err := sysctl.Recommend(sysctl.Request{Path: p})
	if err != nil {
		return proc.Keepalive{}
	}
	return proc.Keepalive{Keepalive: rec.Keepalive, UserTimeout: rec.UserTimeout, SetUserTimeout: true}
}
