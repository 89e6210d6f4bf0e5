package sysctl

import (
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	s := time.Second
	for _, tc := range []struct {
		name string
		k    Keepalive
		ok   bool
	}{
		{"kernel defaults", Defaults, true},
		{"smallest", Keepalive{s, s, 1}, true},
		{"largest", Keepalive{32767 * s, 32767 * s, 127}, true},
		{"time zero", Keepalive{0, s, 1}, false},
		{"time negative", Keepalive{-s, s, 1}, false},
		{"time above setsockopt's range", Keepalive{32768 * s, s, 1}, false},
		{"time fractional", Keepalive{1500 * time.Millisecond, s, 1}, false},
		{"time below a second", Keepalive{5 * time.Millisecond, s, 1}, false},
		{"intvl zero", Keepalive{s, 0, 1}, false},
		{"intvl above range", Keepalive{s, 32768 * s, 1}, false},
		{"probes zero", Keepalive{s, s, 0}, false},
		{"probes above TCP_KEEPCNT's range", Keepalive{s, s, 128}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.k.Validate()
			if (err == nil) != tc.ok {
				t.Fatalf("Validate(%+v) = %v, want ok=%v", tc.k, err, tc.ok)
			}
		})
	}
}

func TestDeadPeerDetect(t *testing.T) {
	if got, want := Defaults.DeadPeerDetect(), 2*time.Hour+11*time.Minute+15*time.Second; got != want {
		t.Fatalf("defaults detect a dead peer after %v, want %v", got, want)
	}
}

// The sums the kernel's tcp_model_timeout computes for an initial RTO of 200 ms.
func TestRetransGiveUp(t *testing.T) {
	for _, tc := range []struct {
		retries2 int
		want     time.Duration
	}{
		{0, 0},
		{1, 600 * time.Millisecond},                        // 0.2 + 0.4
		{3, 3 * time.Second},                               // 0.2 + 0.4 + 0.8 + 1.6
		{8, 102200 * time.Millisecond},                     // (2^9 - 1) x 0.2
		{9, 204600 * time.Millisecond},                     // last doubling
		{10, 204600*time.Millisecond + 120*time.Second},    // then TCP_RTO_MAX each
		{15, 924600 * time.Millisecond},                    // the default: 924.6 s
		{20, 204600*time.Millisecond + 11*120*time.Second}, //
	} {
		if got := RetransGiveUp(tc.retries2); got != tc.want {
			t.Errorf("RetransGiveUp(%d) = %v, want %v", tc.retries2, got, tc.want)
		}
	}
}
