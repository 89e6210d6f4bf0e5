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
