package sysctl_test

import (
	"fmt"
	"time"

	"github.com/tcpkeep/tcpkeep/sysctl"
)

// here is the network namespace this program runs in: nothing to enter. A
// Namespace is anything that runs a function on a thread inside one (with
// setns, as github.com/vishvananda/netns does it).
type here struct{}

func (here) Do(fn func() error) error { return fn() }

// Read the keepalive tunables of a namespace.
func ExampleRead() {
	t, err := sysctl.Read(here{})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("a dead idle peer is dropped after %v\n", t.DeadPeerDetect())
}

// A copy of a /proc/sys tree reads the same way: here, what a fresh network
// namespace shows on Linux 6.18.
func ExampleProcSys_Read() {
	t, err := sysctl.ProcSys("testdata/fresh-netns").Read()
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(t.Time, t.Intvl, t.Probes, t.DeadPeerDetect())
	// Output: 2h0m0s 1m15s 9 2h11m15s
}

// Values for connections behind an AWS Network Load Balancer, which forgets a
// flow idle for 350 s, that notice a dead peer within 5 minutes.
func ExampleRecommend() {
	path, err := sysctl.ChoosePath(sysctl.PathChoice{Behind: "aws-nlb"})
	if err != nil {
		fmt.Println(err)
		return
	}
	r, err := sysctl.Recommend(sysctl.Request{Path: path, DetectWithin: 5 * time.Minute})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("a probe every", r.Cadence(), "under the balancer's", path.IdleTimeout, "less a margin:", r.Cadence() <= path.IdleTimeout-sysctl.Margin(path.IdleTimeout))
	fmt.Println("a dead peer found within the target:", r.DeadPeerDetect() <= 5*time.Minute)
	fmt.Println("enough probes that one lost does not kill a live connection:", r.Probes >= sysctl.MinProbes)
	// Output:
	// a probe every 2m11s under the balancer's 5m50s less a margin: true
	// a dead peer found within the target: true
	// enough probes that one lost does not kill a live connection: true
}

// Change the tunables of a namespace, and persist them for the next boot, all
// or nothing: a failed persist puts the old values back.
func ExampleApply() {
	c := sysctl.Change{
		Keepalive:   sysctl.Keepalive{Time: 300 * time.Second, Intvl: 30 * time.Second, Probes: 5},
		PersistFile: sysctl.DefaultPersistFile,
		Header:      "Set by the example.",
	}
	old, err := sysctl.Apply(here{}, c)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("was %v/%v/%d\n", old.Time, old.Intvl, old.Probes)
}
