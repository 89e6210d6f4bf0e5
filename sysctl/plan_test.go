package sysctl

import (
	"math/rand/v2"
	"testing"
	"time"
)

// checkPlan is what every recommendation must hold: valid values, intvl no
// longer than time, a cadence under the path less the late-firing margin, and
// detection within the target.
func checkPlan(t *testing.T, path, detect, heartbeat time.Duration) {
	k, _, err := plan(path, detect, heartbeat)
	// Refused only where even 1/1/3 would miss the target when timers fire
	// an eighth late: targets under 4.6 s.
	if impossible := detect > 0 && detect*7/8 < 4*time.Second; impossible != (err != nil) {
		t.Fatalf("path %v, target %v, heartbeat %v: error %v", path, detect, heartbeat, err)
	}
	if err != nil {
		return
	}
	if err := k.Validate(); err != nil || k.Probes < MinProbes {
		t.Fatalf("path %v, target %v: %+v: %v", path, detect, k, err)
	}
	if k.Intvl > k.Time || k.Cadence() > path-Margin(path) {
		t.Fatalf("path %v, target %v: %d/%d/%d: cadence %v beyond %v less its margin", path, detect, k.Time/time.Second, k.Intvl/time.Second, k.Probes, k.Cadence(), path)
	}
	if late := k.DeadPeerDetect() + k.DeadPeerDetect()*8/63; detect > 0 && late > detect {
		t.Fatalf("path %v, target %v: %d/%d/%d detects after %v", path, detect, k.Time/time.Second, k.Intvl/time.Second, k.Probes, k.DeadPeerDetect())
	}
}

// The whole input space of whole-second paths from 2 s to 2 h and targets from
// 4 s to 1 h: every plan keeps the cadence under the path with its margin and
// meets the target even if every timer fires as late as the timer wheel allows
// (8/63); only targets that even then cannot be met are refused.
func TestPlanWholeInputSpace(t *testing.T) {
	step := 1
	if testing.Short() {
		step = 7
	}
	for p := 2; p <= 7200; p += step {
		path := time.Duration(p) * time.Second
		checkPlan(t, path, 0, 0)
		for d := 4; d <= 3600; d++ {
			checkPlan(t, path, time.Duration(d)*time.Second, 0)
		}
	}
}

// Heartbeats change the idle time, never the promises.
func TestPlanWithHeartbeats(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 200000 {
		path := time.Duration(2+r.IntN(7199)) * time.Second
		var detect time.Duration
		if r.IntN(4) > 0 {
			detect = time.Duration(4+r.IntN(3597)) * time.Second
		}
		hb := time.Duration(1+r.IntN(3600000)) * time.Millisecond
		checkPlan(t, path, detect, hb)
		k, clear, _ := plan(path, detect, hb)
		if clear && k.Time < hb+Margin(hb) {
			t.Fatalf("path %v, target %v, heartbeat %v: idle %v said clear of the heartbeat", path, detect, hb, k.Time)
		}
	}
}
