package sysctl

import (
	"errors"
	"fmt"
	"time"
)

// MaxRecommendedTime is the longest idle time Recommend proposes. A path that
// keeps idle flows for hours (a local conntrack's 5 days) does not constrain
// keepalive, and its limit would be a poor choice: a dead peer would go unnoticed
// longer than the kernel default already allows. An hour keeps probes rare and
// finds a dead peer in about half the default's time.
const MaxRecommendedTime = time.Hour

// MinProbes is the fewest probes Recommend allows: with fewer, one lost probe can
// kill a live connection.
const MinProbes = 3

// Probe counts and interval Recommend aims for: as many probes as the kernel's
// default where the target leaves room, no interval longer than its default.
const (
	recommendedProbes   = 9
	maxRecommendedIntvl = 75 * time.Second
)

// Request is what a recommendation must satisfy.
type Request struct {
	// Path is the path's idle timeout and where it comes from (ChoosePath); a
	// zero IdleTimeout plans for AssumedPathIdleTimeout.
	Path Path
	// DetectWithin is the longest a dead idle peer may go unnoticed; zero means no
	// target beyond keeping the path alive.
	DetectWithin time.Duration
	// Heartbeat is the period of an application heartbeat on the connections;
	// zero for none.
	Heartbeat time.Duration
}

// Recommendation is a set of tunables, the facts behind them, and why.
type Recommendation struct {
	Keepalive
	// Path is the path it planned for.
	Path Path
	// PathIdleTimeout is Path.IdleTimeout.
	PathIdleTimeout time.Duration
	// Margin is how far under the path's timeout the cadence stays (Margin).
	Margin time.Duration
	// UserTimeout is the TCP_USER_TIMEOUT applications should set so that
	// connections keepalive cannot help (data in flight, a zero window) are
	// dropped as soon: Time + Probes x Intvl. Keepalive drops an idle
	// connection at the same moment with it set.
	UserTimeout time.Duration
	// Heartbeat is the heartbeat period it planned around; 0 for none.
	Heartbeat time.Duration
	// HeartbeatClear says keepalive stays out of a healthy heartbeat's way:
	// its idle time exceeds the heartbeat period by Margin(Heartbeat), so it
	// probes only once the heartbeat stops.
	HeartbeatClear bool
	// Reason explains the choice in a few sentences.
	Reason string
}

// ErrImpossible reports a request no keepalive values can satisfy.
var ErrImpossible = errors.New("no keepalive values satisfy this")

// minDetect is the fastest detection whole-second values allow: 1 s of idle
// time and MinProbes probes 1 s apart.
const minDetect = time.Second + MinProbes*time.Second

// DetectBudget is how long keepalive's nominal detection time may be for a
// detection target: the target less Margin, so that the drop comes within the
// target even when every timer fires as late as the timer wheel allows; in
// whole seconds.
func DetectBudget(target time.Duration) time.Duration {
	return max(0, (target - Margin(target)).Truncate(time.Second))
}

// Recommend chooses keepalive values for a path and a detection target.
//
// The cadence, max(time, intvl) (Cadence), stays under the path's idle
// timeout less Margin, so that the probes keep the flow although timers fire
// late; intvl never exceeds time, so the cadence is the idle time and
// time + probes x intvl is the true worst case (DeadPeerDetect). With a
// detection target, that detection time stays within the target less Margin
// (DetectBudget), for the same late timers: half of the budget goes to idle
// time (within the path's limit) and the rest to probes, 9 of them where the
// interval can be a second or more, never fewer than MinProbes, the interval
// no longer than 75 s. Without
// one, the idle time is the path's limit (at most an hour), with 5 probes a
// tenth of it apart. With a heartbeat, the idle time is the shortest that
// exceeds the heartbeat period by its margin, so that keepalive probes only
// once the heartbeat stops. It refuses only what no values can do: a path
// that forgets a flow before a 1 s cadence plus late firing, or a target that
// 4 s of probing plus late firing miss (under 4.6 s).
func Recommend(r Request) (Recommendation, error) {
	if r.Path.IdleTimeout < 0 || r.DetectWithin < 0 || r.Heartbeat < 0 {
		return Recommendation{}, fmt.Errorf("%w: durations must not be negative", ErrImpossible)
	}
	path := r.Path
	if path.IdleTimeout == 0 {
		path = Path{IdleTimeout: AssumedPathIdleTimeout, Kind: PathAssumed}
	}
	k, clear, err := plan(path.IdleTimeout, r.DetectWithin, r.Heartbeat)
	if err != nil {
		return Recommendation{}, err
	}
	rec := Recommendation{
		Keepalive:       k,
		Path:            path,
		PathIdleTimeout: path.IdleTimeout,
		Margin:          Margin(path.IdleTimeout),
		UserTimeout:     k.Time + time.Duration(k.Probes)*k.Intvl,
		Heartbeat:       r.Heartbeat,
		HeartbeatClear:  r.Heartbeat > 0 && clear,
	}
	rec.Reason = rec.reason(r.DetectWithin)
	return rec, nil
}

// plan is Recommend's arithmetic, kept apart from its words so that the whole
// input space can be checked.
func plan(path, detect, heartbeat time.Duration) (k Keepalive, clear bool, err error) {
	limit := min(CadenceLimit(path), MaxRecommendedTime)
	if limit < time.Second {
		return k, false, fmt.Errorf("%w: a path that forgets idle flows after %v leaves no whole second for keepalive's cadence once timers that fire late (up to an eighth) are allowed for; use an application heartbeat instead", ErrImpossible, path)
	}
	// With a heartbeat, the idle time must exceed its period by a margin for
	// the heartbeat's own late timers and round trip.
	var above time.Duration
	if heartbeat > 0 {
		above = ceilSecond(heartbeat + Margin(heartbeat))
	}
	if detect <= 0 {
		k.Time = limit
		if heartbeat > 0 && above <= limit {
			k.Time = above
		}
		k.Intvl = clampDur((k.Time / 10).Truncate(time.Second), time.Second, maxRecommendedIntvl)
		k.Probes = 5
		return k, heartbeat == 0 || above <= limit, nil
	}
	d := DetectBudget(detect)
	if d < minDetect {
		return k, false, fmt.Errorf("%w: detecting a dead peer within %v is impossible: 1 s of idle time and %d probes 1 s apart take %v, and the kernel's timers may fire up to an eighth late", ErrImpossible, detect, MinProbes, minDetect)
	}
	tmax := min(limit, d-MinProbes*time.Second)
	k.Time = min(tmax, max(time.Second, (d/2).Truncate(time.Second)))
	clear = true
	if heartbeat > 0 {
		if above <= tmax {
			k.Time = max(k.Time, above)
		} else {
			clear = false
		}
	}
	rest := d - k.Time
	k.Intvl = clampDur((rest / recommendedProbes).Truncate(time.Second), time.Second, min(k.Time, maxRecommendedIntvl))
	k.Probes = int(min(max(rest/k.Intvl, MinProbes), recommendedProbes))
	return k, clear, nil
}

func clampDur(d, lo, hi time.Duration) time.Duration { return min(max(d, lo), hi) }

func ceilSecond(d time.Duration) time.Duration {
	if r := d.Truncate(time.Second); r != d {
		return r + time.Second
	}
	return d
}

// reason says why, in sentences without any command's words.
func (rec Recommendation) reason(detect time.Duration) string {
	k, path := rec.Keepalive, rec.PathIdleTimeout
	var s string
	if CadenceLimit(path) > MaxRecommendedTime && rec.Time == MaxRecommendedTime {
		s = fmt.Sprintf("The path keeps idle flows for %s (%s), so it does not limit keepalive; probes come after %s of silence, rare enough to cost nothing",
			secs(path), rec.Path.describe(), secs(k.Time))
	} else {
		s = fmt.Sprintf("Keepalive probes an idle connection every %s (the idle time; the interval, %s, is no longer), %s before the path's %s idle timeout (%s): a margin of an eighth, as the kernel's timers fire late",
			secs(k.Time), secs(k.Intvl), secs(path-k.Time), secs(path), rec.Path.describe())
	}
	s += fmt.Sprintf(". A dead peer is declared %s + %d x %s = %s after its last answer", secs(k.Time), k.Probes, secs(k.Intvl), secs(k.DeadPeerDetect()))
	if detect > 0 {
		s += fmt.Sprintf(", within the %s target even with timers an eighth late", secs(detect))
	}
	s += "."
	if h := rec.Heartbeat; h > 0 {
		switch {
		case rec.HeartbeatClear:
			s += fmt.Sprintf(" A heartbeat every %s keeps the connection from ever being idle %s, so keepalive stays out of its way; if the heartbeat itself stops, keepalive still finds a dead peer within %s.",
				secs(h), secs(k.Time), secs(k.DeadPeerDetect()))
		case h >= path:
			s += fmt.Sprintf(" A heartbeat every %s is too slow for the path (%s): keepalive keeps the flow open between heartbeats.", secs(h), secs(path))
		default:
			s += fmt.Sprintf(" A heartbeat every %s leaves no room for an idle time above it (with a margin of an eighth) within the path's limit and the target: keepalive will also probe between heartbeats, which costs little.", secs(h))
		}
	}
	s += fmt.Sprintf(" Keepalive does not run while data is in flight or the peer advertises a zero window: set TCP_USER_TIMEOUT to %d ms (%s) in the applications to drop such connections as soon.",
		rec.UserTimeout.Milliseconds(), secs(rec.UserTimeout))
	return s
}

// secs writes a duration as whole seconds, or as a Go duration when finer.
func secs(d time.Duration) string {
	if d%time.Second == 0 {
		return fmt.Sprintf("%d s", d/time.Second)
	}
	return d.String()
}
