package audit

import (
	"testing"
	"time"

	"github.com/tcpkeep/tcpkeep/sysctl"
)

// TestArmValues: what remedies suggest arming with is sysctl.Recommend's
// choice for the path recommend would plan for, and its TCP_USER_TIMEOUT,
// the detection time.
func TestArmValues(t *testing.T) {
	ct := func(d time.Duration) sysctl.Tunables { return sysctl.Tunables{ConntrackEstablished: &d} }
	for _, tc := range []struct {
		name string
		cfg  Config
		path time.Duration
	}{
		{"unknown path", Config{}, sysctl.AssumedPathIdleTimeout},
		{"given", Config{PathIdleTimeout: 10 * time.Minute}, 10 * time.Minute},
		{"short conntrack", Config{Tunables: ct(2 * time.Minute)}, 2 * time.Minute},
		{"conntrack's 5 days", Config{Tunables: ct(5 * 24 * time.Hour)}, sysctl.AssumedPathIdleTimeout},
	} {
		rec, err := sysctl.Recommend(sysctl.Request{Path: sysctl.Path{IdleTimeout: tc.path}})
		if err != nil {
			t.Fatal(err)
		}
		got := armValues(tc.cfg)
		if got.Keepalive != rec.Keepalive || !got.SetUserTimeout || got.UserTimeout != rec.Time+time.Duration(rec.Probes)*rec.Intvl {
			t.Errorf("%s: %+v, want %+v and a user timeout of its detection time", tc.name, got, rec.Keepalive)
		}
	}
	if got := armValues(Config{PathIdleTimeout: 500 * time.Millisecond}); got.Probes != 0 {
		t.Errorf("a path no keepalive can keep: %+v, want nothing", got)
	}
}
