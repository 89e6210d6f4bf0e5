package audit

import (
	"github.com/tcpkeep/tcpkeep/internal/proc"
	"github.com/tcpkeep/tcpkeep/sysctl"
)

// armValues are what a flagged connection could be armed with now, through
// its owner (Finding.Arm): the keepalive values sysctl.Recommend gives for
// the path (cfg.PathIdleTimeout; else the local conntrack timeout where it is
// shorter than the assumed path, as recommend chooses), and as
// TCP_USER_TIMEOUT their detection time, Time + Probes x Intvl, so that a
// connection keepalive cannot help (data in flight, a zero window) is dropped
// as soon as an idle one would be. Zero when no values can keep the path.
func armValues(cfg Config) proc.Keepalive {
	req := sysctl.Request{PathIdleTimeout: cfg.PathIdleTimeout}
	if ct := cfg.Tunables.ConntrackEstablished; req.PathIdleTimeout == 0 && ct != nil && *ct > 0 && *ct < sysctl.AssumedPathIdleTimeout {
		req.PathIdleTimeout = *ct
	}
	rec, err := sysctl.Recommend(req)
	if err != nil {
		return proc.Keepalive{}
	}
	return proc.Keepalive{Keepalive: rec.Keepalive, UserTimeout: rec.DeadPeerDetect(), SetUserTimeout: true}
}
