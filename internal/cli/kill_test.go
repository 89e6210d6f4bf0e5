package cli

import (
	"slices"
	"testing"

	"github.com/tcpkeep/tcpkeep/internal/audit"
)

// FuzzFindingFlag: any --finding value is a list of socket finding codes or an
// error, never a panic, and never a code that cannot select a socket.
func FuzzFindingFlag(f *testing.F) {
	for _, s := range []string{"half_open_keepalive", "half_open_keepalive,idle_overlong", "sysctl_keepalive_default", "", ",", " idle_overlong ", "x\x00y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var ff findingFlag
		if err := ff.Set(s); err != nil {
			return
		}
		if len(ff.codes) == 0 {
			t.Fatalf("%q accepted with no code", s)
		}
		for _, c := range ff.codes {
			if c.Tunable() || !slices.Contains(audit.Codes, c) {
				t.Fatalf("%q accepted code %q", s, c)
			}
		}
	})
}

// TestNamesListening: only a state that names LISTEN itself lets kill close
// listeners; groups that include it do not.
func TestNamesListening(t *testing.T) {
	for v, want := range map[string]bool{
		"listening": true, "LISTEN": true, "established, listen": true,
		"all": false, "big": false, "established": false,
	} {
		var f filterFlags
		if err := f.states.Set(v); err != nil {
			t.Fatal(err)
		}
		if got := f.namesListening(); got != want {
			t.Errorf("--state %q: names listening %v, want %v", v, got, want)
		}
	}
	var f filterFlags
	if f.namesListening() {
		t.Error("no --state names listening")
	}
}
