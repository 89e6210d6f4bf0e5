package sysctl

import (
	"testing"
	"time"
)

const (
	ms = time.Millisecond
	s  = time.Second
)

func TestCadenceAndDeadPeerDetect(t *testing.T) {
	for _, tc := range []struct {
		k               Keepalive
		cadence, detect time.Duration
	}{
		{Defaults, 7200 * s, 7875 * s},
		{Keepalive{2 * s, 6 * s, 3}, 6 * s, 24 * s}, // intvl > time: 6 + 3 x 6, measured 24.5 s
		{Keepalive{3 * s, 9 * s, 3}, 9 * s, 36 * s},
		{Keepalive{3 * s, 3 * s, 9}, 3 * s, 30 * s},
		{Keepalive{20 * s, 5 * s, 4}, 20 * s, 40 * s},
	} {
		if got := tc.k.Cadence(); got != tc.cadence {
			t.Errorf("%v Cadence = %v, want %v", tc.k, got, tc.cadence)
		}
		if got := tc.k.DeadPeerDetect(); got != tc.detect {
			t.Errorf("%v DeadPeerDetect = %v, want %v", tc.k, got, tc.detect)
		}
	}
}

// What the kernel did with a peer that vanished after its last answer,
// measured on 6.18 (internal/audit's timing tests let it happen again).
func TestKeepaliveAfter(t *testing.T) {
	for _, tc := range []struct {
		name  string
		k     Keepalive
		uto   time.Duration
		want  time.Duration
		cause DropCause
	}{
		{"probes count without a user timeout", Keepalive{2 * s, 6 * s, 3}, 0, 24 * s, DropKeepaliveProbes},
		{"user timeout past the count: probes go on", Keepalive{2 * s, 2 * s, 9}, 5000 * ms, 6 * s, DropUserTimeout},
		{"postgres 20/5/4 with tcp_user_timeout 9000", Keepalive{20 * s, 5 * s, 4}, 9000 * ms, 25 * s, DropUserTimeout},
		{"user timeout below the idle time: the first firing with a probe out", Keepalive{4 * s, s, 3}, 1500 * ms, 5 * s, DropUserTimeout},
		{"user timeout on a firing", Keepalive{2 * s, 2 * s, 9}, 6 * s, 6 * s, DropUserTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := Socket{Keepalive: tc.k, UserTimeout: tc.uto}.KeepaliveAfter()
			if d.In != tc.want || d.Cause != tc.cause {
				t.Fatalf("drop after %v by %s, want %v by %s", d.In, d.Cause, tc.want, tc.cause)
			}
		})
	}
}

// Observations of real sockets (sock_diag, tcp_info) and when the kernel
// dropped them, counted from the observation.
func TestDropFromObservation(t *testing.T) {
	for _, tc := range []struct {
		name     string
		sock     Socket
		obs      Observed
		drop     func(Socket, Observed) Drop
		want     time.Duration
		cause    DropCause
		measured time.Duration // what the kernel did, where it was measured
	}{
		{"keepalive 2/2/9 + 5000 ms, no probe out yet", Socket{Keepalive: Keepalive{2 * s, 2 * s, 9}, UserTimeout: 5 * s},
			Observed{Expires: 32 * ms, SinceRecv: 1968 * ms}, Socket.KeepaliveDrop, 4032 * ms, DropUserTimeout, 4070 * ms},
		{"keepalive 1/1/5, two probes out", Socket{Keepalive: Keepalive{s, s, 5}},
			Observed{Expires: 400 * ms, ProbesOut: 2, SinceRecv: 2600 * ms}, Socket.KeepaliveDrop, 3400 * ms, DropKeepaliveProbes, 0},
		{"keepalive at its count: the next firing", Socket{Keepalive: Keepalive{s, s, 3}},
			Observed{Expires: 100 * ms, ProbesOut: 3, SinceRecv: 3900 * ms}, Socket.KeepaliveDrop, 100 * ms, DropKeepaliveProbes, 0},
		{"keepalive waiting for the idle time", Socket{Keepalive: Keepalive{10 * s, s, 3}},
			Observed{Expires: 2 * s, SinceRecv: 3 * s}, Socket.KeepaliveDrop, 10 * s, DropKeepaliveProbes, 0},
		{"tcp_retries2 5 after four RTO firings", Socket{Retries2: 5},
			Observed{Retransmits: 4, Backoff: 4, RTO: 3264 * ms, Expires: 3072 * ms}, Socket.RetransDrop, 9600 * ms, DropRetries2, 10140 * ms},
		{"TCP_USER_TIMEOUT 6000 after three RTO firings", Socket{Retries2: 15, UserTimeout: 6 * s},
			Observed{Retransmits: 3, Backoff: 3, RTO: 1632 * ms, Expires: 1266 * ms}, Socket.RetransDrop, 4410 * ms, DropUserTimeout, 0},
		{"orphan, tcp_orphan_retries 3", Socket{Retries2: 15, OrphanRetries: 3, Orphan: true},
			Observed{Retransmits: 4, Backoff: 4, RTO: 3264 * ms, Expires: 3176 * ms}, Socket.RetransDrop, 3176 * ms, DropOrphanRetries, 3340 * ms},
		{"persist with TCP_USER_TIMEOUT 10000", Socket{Retries2: 15, UserTimeout: 10 * s},
			Observed{Backoff: 5, RTO: 208 * ms, Expires: 3212 * ms, SinceDataSent: 7040 * ms}, Socket.PersistDrop, 3212 * ms, DropUserTimeout, 3530 * ms},
		{"persist, probes answered, no user timeout: never", Socket{Retries2: 15},
			Observed{Backoff: 5, RTO: 208 * ms, Expires: 3 * s, SinceDataSent: 7 * s}, Socket.PersistDrop, 0, DropNone, 0},
		{"persist to a silent peer: tcp_retries2 probes", Socket{Retries2: 5},
			Observed{ProbesOut: 2, Backoff: 2, RTO: 200 * ms, Expires: 500 * ms}, Socket.PersistDrop, 11700 * ms, DropRetries2, 0},
		{"zero window through the retransmit timer, TCP_USER_TIMEOUT 10000", Socket{Retries2: 15, UserTimeout: 10 * s},
			Observed{Backoff: 5, RTO: 6528 * ms, Expires: 3428 * ms}, Socket.ZeroWindowRetransDrop, 3428 * ms, DropUserTimeout, 3820 * ms},
		{"zero window through the retransmit timer, no user timeout: not predicted", Socket{Retries2: 15},
			Observed{Backoff: 5, RTO: 6528 * ms, Expires: 3428 * ms}, Socket.ZeroWindowRetransDrop, 0, DropNone, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := tc.drop(tc.sock, tc.obs)
			if d.In != tc.want || d.Cause != tc.cause {
				t.Fatalf("drop in %v by %q, want %v by %q", d.In, d.Cause, tc.want, tc.cause)
			}
			if tc.measured > 0 {
				if diff := tc.measured - d.In; diff < 0 || diff > 1500*ms {
					t.Fatalf("predicted %v, the kernel took %v: it fires late, never early, and within 1.5 s here", d.In, tc.measured)
				}
			}
		})
	}
}

// A user timeout of days (TCP_USER_TIMEOUT takes up to 2^31-1 ms) with 1 s
// intervals: the same drop as stepping firing by firing, without the steps.
func TestKeepaliveDropLongUserTimeout(t *testing.T) {
	for _, ut := range []time.Duration{9 * s, 100 * s, 3 * time.Hour, (1<<31 - 1) * ms} {
		sk := Socket{Keepalive: Keepalive{2 * s, s, 5}, UserTimeout: ut}
		o := Observed{Expires: 300 * ms, ProbesOut: 1, SinceRecv: 2700 * ms}
		next := o.Expires
		for !reached(o.SinceRecv+next, ut) {
			next += s
		}
		if d := sk.KeepaliveDrop(o); d.In != next || d.Cause != DropUserTimeout {
			t.Errorf("user timeout %v: drop in %v by %s, want %v", ut, d.In, d.Cause, next)
		}
	}
}

// From the first retransmission to the drop, for an RTO of TCP_RTO_MIN: the
// first RTO firing that reaches tcp_model_timeout's limit.
func TestRetransAfterFirst(t *testing.T) {
	for _, tc := range []struct {
		sock  Socket
		base  time.Duration
		want  time.Duration
		cause DropCause
	}{
		{Socket{Retries2: 15}, RTOMin, 924400 * ms, DropRetries2}, // 0.2 x 1022 + 6 x 120 s
		{Socket{Retries2: 5}, RTOMin, 12400 * ms, DropRetries2},   // 0.2 x 62
		{Socket{Retries2: 3}, RTOMin, 6 * s, DropRetries2},        // 2.8 s falls short of 3 s: one firing more
		// On a veth (RTO 204 ms) the fifth firing comes 6.12 s after the first,
		// 80 ms short of tcp_retries2 4's 6.2 s, and the kernel gave up there.
		{Socket{Retries2: 4}, 204 * ms, 6120 * ms, DropRetries2},
		{Socket{Retries2: 15, Orphan: true}, RTOMin, 102 * s, DropOrphanRetries},
		{Socket{Retries2: 15, UserTimeout: 30 * s}, RTOMin, 30 * s, DropUserTimeout},
	} {
		if d := tc.sock.RetransAfterFirst(tc.base); d.In != tc.want || d.Cause != tc.cause {
			t.Errorf("%+v: %v by %s, want %v by %s", tc.sock, d.In, d.Cause, tc.want, tc.cause)
		}
	}
}

// The sums tcp_model_timeout computes for an initial RTO of 200 ms.
func TestRetransGiveUp(t *testing.T) {
	for _, tc := range []struct {
		retries2 int
		want     time.Duration
	}{
		{0, 200 * ms},
		{1, 600 * ms},
		{3, 3 * s},
		{8, 102200 * ms},
		{9, 204600 * ms},
		{10, 204600*ms + 120*s},
		{15, 924600 * ms},
		{20, 204600*ms + 11*120*s},
	} {
		if got := RetransGiveUp(tc.retries2); got != tc.want {
			t.Errorf("RetransGiveUp(%d) = %v, want %v", tc.retries2, got, tc.want)
		}
	}
}

func TestFinWait2(t *testing.T) {
	for fin, want := range map[time.Duration]time.Duration{60 * s: 60 * s, 30 * s: 30 * s, 120 * s: 120 * s, 90 * s: 60 * s} {
		if got := (Socket{FinTimeout: fin}).FinWait2Lifetime(RTOMin); got != want {
			t.Errorf("tcp_fin_timeout %v: lives %v, want %v", fin, got, want)
		}
	}
	sock := Socket{FinTimeout: 120 * s}
	if d := sock.FinWait2Drop(Observed{Expires: 10 * s, RTO: RTOMin}, false); d.In != 70*s || d.Cause != DropFinWait2 {
		t.Errorf("keepalive-timer stage: %+v, want 10 s + 60 s", d)
	}
	if d := sock.FinWait2Drop(Observed{Expires: 10 * s}, true); d.In != 10*s {
		t.Errorf("timewait stage: %+v, want 10 s", d)
	}
}

func TestMarginAndCadenceLimit(t *testing.T) {
	for path, want := range map[time.Duration]time.Duration{
		2 * s: s, 3 * s: 2 * s, 4 * s: 3 * s, 5 * s: 4 * s, 8 * s: 7 * s, 9 * s: 7 * s,
		60 * s: 52 * s, 350 * s: 306 * s, 1100 * ms: 0, 1500 * ms: s,
	} {
		if got := CadenceLimit(path); got != want {
			t.Errorf("CadenceLimit(%v) = %v, want %v", path, got, want)
		}
		// At the cadence limit, even a timer 8/63 late fires before the path forgets.
		if got := CadenceLimit(path); got+got*8/63 >= path {
			t.Errorf("CadenceLimit(%v) = %v: a timer 8/63 late misses the path", path, got)
		}
	}
}
