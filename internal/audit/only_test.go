package audit

import (
	"testing"
	"time"

	"github.com/tcpkeep/tcpkeep/diag"
)

// TestOnly: Config.Only runs the named rules and no other, and looks up no
// owner for what the others would have flagged (tcpkeep kill --finding).
func TestOnly(t *testing.T) {
	s := est(idle(2 * time.Hour)) // idle_no_keepalive and idle_overlong both
	cfg := DefaultConfig(tunables)
	cfg.IdleLimit = time.Hour
	o := &owners{}
	cfg.Owners = o
	codes := func(only ...Code) []Code {
		c := cfg
		c.Only = only
		var got []Code
		New(c).Check(s, func(f *Finding) { got = append(got, f.Code) })
		return got
	}
	if got := codes(); len(got) != 2 {
		t.Fatalf("without Only: %v, want idle_no_keepalive and idle_overlong", got)
	}
	o.lookups = 0
	if got := codes(IdleOverlong); len(got) != 1 || got[0] != IdleOverlong {
		t.Fatalf("Only idle_overlong: %v", got)
	}
	if got := codes(HalfOpenKeepalive); len(got) != 0 || o.lookups != 1 {
		// One lookup: the idle_overlong run above; none for a rule not run.
		t.Fatalf("Only half_open_keepalive: %v, %d owner lookups", got, o.lookups)
	}
}

func TestCodeTunable(t *testing.T) {
	for _, c := range Codes {
		want := c == SysctlKeepaliveDefault || c == SysctlKeepaliveAfterConntrack
		if c.Tunable() != want {
			t.Errorf("%s.Tunable() = %v", c, !want)
		}
	}
	if !HoldsPeer(diag.StateEstablished) || !HoldsPeer(diag.StateCloseWait) || HoldsPeer(diag.StateListen) || HoldsPeer(diag.StateTimeWait) {
		t.Error("HoldsPeer: want established and close-wait counted, listen and time-wait not")
	}
}
