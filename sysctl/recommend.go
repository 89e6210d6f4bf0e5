package sysctl

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Middlebox is a kind of device on a path whose idle timeout is known: after that
// long without a packet it forgets a TCP flow, and later packets of the flow are
// dropped or reset.
type Middlebox struct {
	// Name is what --behind takes.
	Name string
	// IdleTimeout is how long the device keeps an idle established TCP flow.
	IdleTimeout time.Duration
	// Source says where the number comes from.
	Source string
}

// Middleboxes are the idle timeouts of common middleboxes, as their vendors
// document them (README cites each). The local conntrack timeout is read from the
// namespace instead.
var Middleboxes = []Middlebox{
	{"aws-nlb", 350 * time.Second, "AWS Network Load Balancer: TCP idle timeout 350 s (Elastic Load Balancing user guide, 'Connection idle timeout')"},
	{"aws-nat", 350 * time.Second, "AWS NAT gateway: idle connections time out after 350 s (Amazon VPC user guide, 'Troubleshoot NAT gateways')"},
	{"azure-lb", 240 * time.Second, "Azure Load Balancer: TCP idle timeout 4 minutes by default (Azure docs, 'Configure TCP reset and idle timeout')"},
	{"gcp-cloud-nat", 1200 * time.Second, "Google Cloud NAT: TCP established connection idle timeout 1200 s (Cloud NAT docs, 'NAT timeouts')"},
	{"gcp-vpc", 600 * time.Second, "Google Cloud VPC firewall connection tracking: idle TCP connections are forgotten after 10 minutes (VPC firewall rules docs)"},
}

// ConntrackName is the --behind name for the local nf_conntrack timeout, which
// the caller reads from the namespace (Tunables.ConntrackEstablished).
const ConntrackName = "conntrack"

// LookupMiddlebox finds a middlebox by name.
func LookupMiddlebox(name string) (Middlebox, bool) {
	for _, m := range Middleboxes {
		if m.Name == name {
			return m, true
		}
	}
	return Middlebox{}, false
}

// MiddleboxNames lists the names LookupMiddlebox knows, and ConntrackName.
func MiddleboxNames() string {
	var n []string
	for _, m := range Middleboxes {
		n = append(n, m.Name)
	}
	return strings.Join(append(n, ConntrackName), ", ")
}

// AssumedPathIdleTimeout is what Recommend plans for when the path is unknown: the
// shortest default among the common middleboxes (Azure Load Balancer's 4 minutes).
const AssumedPathIdleTimeout = 240 * time.Second

// MaxRecommendedTime is the longest idle time Recommend proposes. A path that
// keeps idle flows for hours (a local conntrack's 5 days) does not constrain
// keepalive, and its limit would be a poor choice: a dead peer would go unnoticed
// longer than the kernel default already allows. An hour keeps probes rare and
// finds a dead peer in about half the default's time.
const MaxRecommendedTime = time.Hour

// MinProbes is the fewest probes Recommend allows: with fewer, one lost probe can
// kill a live connection.
const MinProbes = 3

// Request is what a recommendation must satisfy.
type Request struct {
	// PathIdleTimeout is how long the path keeps an idle flow; zero means unknown
	// (AssumedPathIdleTimeout is used).
	PathIdleTimeout time.Duration
	// PathName names where PathIdleTimeout comes from, for the reason ("aws-nlb").
	PathName string
	// DetectWithin is the longest a dead idle peer may go unnoticed; zero means no
	// target beyond keeping the path alive.
	DetectWithin time.Duration
}

// Recommendation is a set of tunables and why.
type Recommendation struct {
	Keepalive
	// PathIdleTimeout is the path timeout it planned for.
	PathIdleTimeout time.Duration
	// Reason explains the choice in a sentence or two.
	Reason string
}

// ErrImpossible reports a request no keepalive values can satisfy.
var ErrImpossible = errors.New("no keepalive values satisfy this")

// Recommend chooses keepalive values whose first probe comes before the path
// forgets an idle flow, with a margin of a tenth of its timeout (at least 1 s),
// and which declare a dead peer within DetectWithin, with at least MinProbes
// probes.
//
// With a detection target, half of it goes to idle time (never past the path's
// limit) and the rest to probes: 3 to 9 of them, about 10 s apart where there is
// room. Without one, the probes come every tenth of the idle time, 5 of them.
func Recommend(r Request) (Recommendation, error) {
	if r.PathIdleTimeout < 0 || r.DetectWithin < 0 {
		return Recommendation{}, fmt.Errorf("%w: durations must not be negative", ErrImpossible)
	}
	path, pathName := r.PathIdleTimeout, r.PathName
	if path == 0 {
		path, pathName = AssumedPathIdleTimeout, "assumed: the shortest common middlebox default"
	}
	margin := max(path/10, time.Second)
	timeMax := min((path - margin).Truncate(time.Second), MaxRecommendedTime)
	if timeMax < time.Second {
		return Recommendation{}, fmt.Errorf("%w: a path that forgets idle flows after %v leaves no whole second for keepalive's first probe; use an application heartbeat instead", ErrImpossible, path)
	}
	var k Keepalive
	if r.DetectWithin > 0 {
		d := r.DetectWithin.Truncate(time.Second)
		floor := time.Second + MinProbes*time.Second
		if d < floor {
			return Recommendation{}, fmt.Errorf("%w: detecting a dead peer within %v is impossible: 1 s of idle time and %d probes 1 s apart take at least %v", ErrImpossible, r.DetectWithin, MinProbes, floor)
		}
		k.Time = min(timeMax, max(time.Second, (d/2).Truncate(time.Second)), d-MinProbes*time.Second)
		rest := d - k.Time
		k.Probes = min(9, max(MinProbes, int(rest/(10*time.Second))))
		k.Intvl = min(75*time.Second, max(time.Second, (rest/time.Duration(k.Probes)).Truncate(time.Second)))
	} else {
		k.Time = timeMax
		k.Probes = 5
		k.Intvl = min(75*time.Second, max(time.Second, (timeMax/10).Truncate(time.Second)))
	}
	if err := k.Validate(); err != nil {
		return Recommendation{}, fmt.Errorf("%w: %v", ErrImpossible, err)
	}
	reason := fmt.Sprintf("The first probe comes after %s of silence, %s before the path's %s idle timeout (%s)",
		secs(k.Time), secs(path-k.Time), secs(path), pathName)
	if k.Time == MaxRecommendedTime {
		reason = fmt.Sprintf("The path keeps idle flows for %s (%s), so it does not limit keepalive; the first probe comes after %s of silence, rare enough to cost nothing",
			secs(path), pathName, secs(k.Time))
	}
	reason += fmt.Sprintf("; a dead peer is declared after %s + %d x %s = %s", secs(k.Time), k.Probes, secs(k.Intvl), secs(k.DeadPeerDetect()))
	if r.DetectWithin > 0 {
		reason += fmt.Sprintf(", within the %s target", secs(r.DetectWithin))
	}
	reason += "."
	return Recommendation{Keepalive: k, PathIdleTimeout: path, Reason: reason}, nil
}

// secs writes a duration as whole seconds, or as a Go duration when finer.
func secs(d time.Duration) string {
	if d%time.Second == 0 {
		return fmt.Sprintf("%d s", d/time.Second)
	}
	return d.String()
}
