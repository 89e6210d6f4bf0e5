package sysctl

import (
	"fmt"
	"time"
)

// Ranges tcpkeep accepts: those setsockopt accepts for TCP_KEEPIDLE, TCP_KEEPINTVL
// and TCP_KEEPCNT (MAX_TCP_KEEPIDLE, MAX_TCP_KEEPINTVL, MAX_TCP_KEEPCNT). The sysctls
// themselves accept more, but a value no socket could set is a typo, not a policy.
const (
	MaxTime   = 32767 * time.Second
	MaxIntvl  = 32767 * time.Second
	MaxProbes = 127
)

// Kernel defaults: what every new network namespace starts with.
var Defaults = Keepalive{Time: 7200 * time.Second, Intvl: 75 * time.Second, Probes: 9}

// Keepalive is the three keepalive tunables. The kernel keeps them in whole seconds.
type Keepalive struct {
	// Time is tcp_keepalive_time: how long a connection is idle before the first probe.
	Time time.Duration
	// Intvl is tcp_keepalive_intvl: the time between unanswered probes.
	Intvl time.Duration
	// Probes is tcp_keepalive_probes: how many unanswered probes drop the connection.
	Probes int
}

// DeadPeerDetect is how long after the last data an idle connection to a dead peer
// is dropped: Time + Intvl x Probes.
func (k Keepalive) DeadPeerDetect() time.Duration {
	return k.Time + time.Duration(k.Probes)*k.Intvl
}

// Validate checks that every value is whole seconds within the range setsockopt
// accepts. The error names the tunable and the range.
func (k Keepalive) Validate() error {
	if err := checkSeconds("tcp_keepalive_time", k.Time, MaxTime); err != nil {
		return err
	}
	if err := checkSeconds("tcp_keepalive_intvl", k.Intvl, MaxIntvl); err != nil {
		return err
	}
	if k.Probes < 1 || k.Probes > MaxProbes {
		return fmt.Errorf("tcp_keepalive_probes %d: want 1 to %d", k.Probes, MaxProbes)
	}
	return nil
}

func checkSeconds(name string, d, max time.Duration) error {
	if d < time.Second || d > max || d%time.Second != 0 {
		return fmt.Errorf("%s %v: want whole seconds from 1 to %d", name, d, max/time.Second)
	}
	return nil
}

// Linux's retransmission timer bounds (TCP_RTO_MIN, TCP_RTO_MAX).
const (
	rtoMin = 200 * time.Millisecond
	rtoMax = 120 * time.Second
)

// RetransGiveUp is how long the kernel retransmits unacknowledged data to a silent
// peer before it drops the connection, for a given tcp_retries2 and an initial
// RTO of TCP_RTO_MIN: the sum of the exponential backoffs, each capped at
// TCP_RTO_MAX. At the default 15 that is 924.6 s. It is the kernel's own
// computation (retransmits_timed_out); a path with a longer RTT takes longer.
func RetransGiveUp(retries2 int) time.Duration {
	if retries2 <= 0 {
		return 0
	}
	// Doubling stops at the last backoff below TCP_RTO_MAX (ilog2(120 s / 200 ms) = 9).
	const thresh = 9
	if retries2 <= thresh {
		return time.Duration((2<<retries2)-1) * rtoMin
	}
	return time.Duration((2<<thresh)-1)*rtoMin + time.Duration(retries2-thresh)*rtoMax
}

// OrphanRetries is how many retransmission backoffs the kernel allows a socket
// the application has closed (an orphan) before it drops it: tcp_orphan_retries,
// where the default 0 means 8 (tcp_orphan_retries() in the kernel).
func OrphanRetries(sysctlValue int) int {
	if sysctlValue <= 0 {
		return 8
	}
	return sysctlValue
}
