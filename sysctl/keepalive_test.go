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
