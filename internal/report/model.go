package report

// The words and drawings around sysctl's model of the kernel's clocks: the
// figures the sysctl table states, where a path timeout comes from, the
// timeline the tables draw, and the recommend command probe idle suggests.

import (
	"fmt"
	"time"

	"github.com/tcpkeep/tcpkeep/sysctl"
)

// retransAfter is when a dead peer with unacknowledged data is dropped,
// counted from the first retransmission, on a path at the minimum RTO
// (sysctl.Socket.RetransAfterFirst): retrans_give_up_ms.
func retransAfter(retries2 int) time.Duration {
	return sysctl.Socket{Retries2: retries2}.RetransAfterFirst(sysctl.RTOMin).In
}

// orphanAfter is the same for a socket the application closed, under
// tcp_orphan_retries.
func orphanAfter(orphanRetries int) time.Duration {
	return sysctl.Socket{OrphanRetries: orphanRetries, Orphan: true}.RetransAfterFirst(sysctl.RTOMin).In
}

// detectFormula writes DeadPeerDetect's sum as the kernel does it: the cadence
// (the interval where it is the longer) plus the probes.
func detectFormula(k sysctl.Keepalive) string {
	first := fmt.Sprintf("%ds", k.Time/time.Second)
	if k.Intvl > k.Time {
		first = fmt.Sprintf("max(%ds idle, %ds interval)", k.Time/time.Second, k.Intvl/time.Second)
	}
	return fmt.Sprintf("%s + %d x %ds", first, k.Probes, k.Intvl/time.Second)
}

// cadenceOverConntrack reports whether keepalive's cadence passes the local
// conntrack timeout less its late-firing margin: conntrack may forget an idle
// flow between probes.
func cadenceOverConntrack(t *sysctl.Tunables) bool {
	ct := t.ConntrackEstablished
	return ct != nil && t.Cadence() > *ct-sysctl.Margin(*ct)
}

// pathKey is how records name where the path timeout comes from (the
// sysctl_recommend record's "path"): given, a middlebox's name, conntrack or
// assumed.
func pathKey(p sysctl.Path) string {
	switch p.Kind {
	case sysctl.PathGiven:
		return "given"
	case sysctl.PathMiddlebox:
		return p.Middlebox.Name
	case sysctl.PathConntrack:
		return sysctl.ConntrackName
	}
	return "assumed"
}

// pathIsDefault says the path timeout is a vendor's default that can be
// configured otherwise ("path_default").
func pathIsDefault(p sysctl.Path) bool {
	return p.Kind == sysctl.PathMiddlebox && !p.Middlebox.Custom && p.Middlebox.Configurable
}

// pathFrom is how the tables name where the path timeout comes from.
func pathFrom(p sysctl.Path) string {
	switch p.Kind {
	case sysctl.PathGiven:
		return "--path-idle-timeout"
	case sysctl.PathMiddlebox:
		if p.Middlebox.Custom {
			return p.Middlebox.Name + ", --middleboxes"
		}
		return p.Middlebox.Name + "'s default"
	case sysctl.PathConntrack:
		return "local conntrack"
	}
	return "assumed"
}

// pathNote says, for a vendor default that can be configured, that it is a
// default and how to plan for the configured value instead.
func pathNote(p sysctl.Path) string {
	if !pathIsDefault(p) {
		return ""
	}
	m := p.Middlebox
	rng := ""
	if m.Max > 0 {
		rng = fmt.Sprintf(" (configurable from %s to %s)", Duration(m.Min), Duration(m.Max))
	}
	return fmt.Sprintf("%s's %s is its default%s. If yours is set otherwise, plan for it: --path-idle-timeout D, or a line '%s SECONDS source' in a --middleboxes file.",
		m.Name, Duration(m.IdleTimeout), rng, m.Name)
}

// appendKeepaliveTimeline draws keepalive's timeline for k behind a path
// timeout (0: none known) named name.
func appendKeepaliveTimeline(dst []byte, k sysctl.Keepalive, path time.Duration, name string) []byte {
	dst = append(dst, "\nAn idle connection whose peer dies right after its last answer:\n"...)
	return AppendTimeline(dst, Timeline{
		FirstProbe: k.Cadence(), Intvl: k.Intvl, Probes: k.Probes, Drop: k.DeadPeerDetect(),
		Path: path, PathName: name,
	})
}

// RecommendCommand is the sysctl recommend command line for a measured path
// timeout, when sysctl.Recommend accepts that timeout: probe idle never
// suggests a command that would then be refused. No timeout (0), none.
func RecommendCommand(netns string, path time.Duration) (string, bool) {
	secs := path.Truncate(time.Second)
	if secs < time.Second {
		return "", false
	}
	if _, err := sysctl.Recommend(sysctl.Request{Path: sysctl.Path{IdleTimeout: secs, Kind: sysctl.PathGiven}}); err != nil {
		return "", false
	}
	return fmt.Sprintf("tcpkeep %ssysctl recommend --path-idle-timeout %ds", netnsArg(netns), secs/time.Second), true
}
