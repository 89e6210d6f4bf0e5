package cli

// The words around sysctl's model of the kernel's clocks: the path timeout an
// operator names (--path-idle-timeout, --behind, --middleboxes), the timeline
// the tables draw, and the figures the sysctl table states.

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/tcpkeep/tcpkeep/internal/netns"
	"github.com/tcpkeep/tcpkeep/internal/report"
	"github.com/tcpkeep/tcpkeep/sysctl"
)

// loadMiddleboxes is the --behind table: the built-in one, with the entries of
// --middleboxes FILE added or overriding.
func loadMiddleboxes(file string) (sysctl.MiddleboxTable, error) {
	if file == "" {
		return sysctl.Middleboxes, nil
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, usagef("--middleboxes %s: %v", file, errors.Unwrap(err))
	}
	defer f.Close()
	extra, err := sysctl.ParseMiddleboxes(f)
	if err != nil {
		return nil, usagef("--middleboxes %s: %v (one device a line: name seconds source)", file, err)
	}
	return sysctl.Middleboxes.Merge(extra), nil
}

// choosePath is the path timeout recommend plans for, its errors worded for
// the flags that chose it.
func choosePath(nsName string, given time.Duration, behind string, table sysctl.MiddleboxTable, t sysctl.Tunables) (sysctl.Path, error) {
	p, err := sysctl.ChoosePath(sysctl.PathChoice{Given: given, Behind: behind, Table: table, Conntrack: t.ConntrackEstablished})
	switch {
	case errors.Is(err, sysctl.ErrPathConflict):
		return p, usagef("sysctl recommend: give --path-idle-timeout or --behind, not both")
	case errors.Is(err, sysctl.ErrUnknownMiddlebox):
		return p, usagef("--behind %q: unknown middlebox (known: %s); add your own with --middleboxes FILE, or give --path-idle-timeout", behind, table.Names())
	case errors.Is(err, sysctl.ErrNoConntrack):
		return p, fmt.Errorf("--behind conntrack: netns %s has no nf_conntrack_tcp_timeout_established (nf_conntrack is not loaded there); give --path-idle-timeout instead", nsName)
	}
	return p, err
}

// pathKey is how records name where the path timeout comes from: given, a
// middlebox's name, conntrack or assumed.
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
// configured otherwise.
func pathIsDefault(p sysctl.Path) bool {
	return p.Kind == sysctl.PathMiddlebox && !p.Middlebox.Custom && p.Middlebox.Configurable
}

// pathName is how the tables name where the path timeout comes from.
func pathName(p sysctl.Path) string {
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
	m := p.Middlebox
	if p.Kind != sysctl.PathMiddlebox || m.Custom || !m.Configurable {
		return ""
	}
	rng := ""
	if m.Max > 0 {
		rng = fmt.Sprintf(" (configurable from %s to %s)", human(m.Min), human(m.Max))
	}
	return fmt.Sprintf("%s's %s is its default%s. If yours is set otherwise, plan for it: --path-idle-timeout D, or a line '%s SECONDS source' in a --middleboxes file.",
		m.Name, human(m.IdleTimeout), rng, m.Name)
}

// writeTimeline draws keepalive's timeline for k behind a path timeout (0:
// none known).
func writeTimeline(w io.Writer, k sysctl.Keepalive, path time.Duration, name string) {
	fmt.Fprintln(w, "\nAn idle connection whose peer dies right after its last answer:")
	w.Write(report.AppendTimeline(nil, report.Timeline{
		FirstProbe: k.Cadence(), Intvl: k.Intvl, Probes: k.Probes, Drop: k.DeadPeerDetect(),
		Path: path, PathName: name,
	}))
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

// retransAfter is when a dead peer with unacknowledged data is dropped, after
// the first retransmission, on a path at the minimum RTO.
func retransAfter(retries2 int) time.Duration {
	return sysctl.Socket{Retries2: retries2}.RetransAfterFirst(sysctl.RTOMin).In
}

// orphanAfter is the same for a socket the application closed.
func orphanAfter(orphanRetries int) time.Duration {
	return sysctl.Socket{OrphanRetries: orphanRetries, Orphan: true}.RetransAfterFirst(sysctl.RTOMin).In
}

// cadenceOverConntrack reports whether keepalive's cadence passes the local
// conntrack timeout less its late-firing margin: conntrack may forget an idle
// flow between probes.
func cadenceOverConntrack(t sysctl.Tunables) bool {
	return t.ConntrackEstablished != nil && t.Cadence() > *t.ConntrackEstablished-sysctl.Margin(*t.ConntrackEstablished)
}

// recommendFor is the sysctl recommend command line for a measured path
// timeout, when sysctl.Recommend accepts that timeout: probe idle never
// suggests a command that would then be refused. No timeout (0), none.
func recommendFor(ns netns.NS, path time.Duration) (string, bool) {
	secs := path.Truncate(time.Second)
	if secs < time.Second {
		return "", false
	}
	if _, err := sysctl.Recommend(sysctl.Request{Path: sysctl.Path{IdleTimeout: secs, Kind: sysctl.PathGiven}}); err != nil {
		return "", false
	}
	return fmt.Sprintf("tcpkeep %ssysctl recommend --path-idle-timeout %ds", nsArg(ns), secs/time.Second), true
}
