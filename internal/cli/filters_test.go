package cli

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/tcpkeep/tcpkeep/diag"
)

// TestFilterFlags: the flags together make the filter the kernel gets.
func TestFilterFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want diag.Filter
		err  string
	}{
		{nil, diag.Filter{States: defaultStates}, ""},
		{[]string{"--state", "established,close-wait"}, diag.Filter{States: diag.Of(diag.StateEstablished) | diag.Of(diag.StateCloseWait)}, ""},
		{[]string{"--state", "all", "-4", "--dport", "443", "--src", "10.0.0.0/8"},
			diag.Filter{States: diag.StatesAll, Family: diag.FamilyInet, DPort: diag.PortRange{Lo: 443, Hi: 443}, Src: netip.MustParsePrefix("10.0.0.0/8")}, ""},
		{[]string{"-6", "--sport", "1-1024", "--dst", "fd77::/16"},
			diag.Filter{States: defaultStates, Family: diag.FamilyInet6, SPort: diag.PortRange{Lo: 1, Hi: 1024}, Dst: netip.MustParsePrefix("fd77::/16")}, ""},
		{[]string{"-4", "-6"}, diag.Filter{States: defaultStates}, ""},
		{[]string{"-4", "--dst", "fd77::1"}, diag.Filter{}, "IPv6 but -4"},
		{[]string{"--state", "estab,nosuch"}, diag.Filter{}, "unknown TCP state"},
		{[]string{"--sport", "99999"}, diag.Filter{}, "want a port"},
		{[]string{"--src", "10.0.0.0/40"}, diag.Filter{}, "exceeds"},
	} {
		fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
		var ff filterFlags
		addFilterFlags(fs, &ff, "")
		err := fs.Parse(tc.args)
		var f *diag.Filter
		if err == nil {
			f, err = ff.filter(defaultStates)
		}
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%v: err %v, want one containing %q", tc.args, err, tc.err)
			}
			continue
		}
		if err != nil || *f != tc.want {
			t.Errorf("%v: %+v, %v; want %+v", tc.args, f, err, tc.want)
		}
	}
}

// TestDefaultStatesLikeSS: without --state, conns shows what ss shows: neither
// listeners nor the minisocket states.
func TestDefaultStatesLikeSS(t *testing.T) {
	for _, st := range []diag.State{diag.StateListen, diag.StateClose, diag.StateTimeWait, diag.StateSynRecv, diag.StateNewSynRecv} {
		if defaultStates.Has(st) {
			t.Errorf("default states include %s", st)
		}
	}
	for _, st := range []diag.State{diag.StateEstablished, diag.StateSynSent, diag.StateFinWait1, diag.StateFinWait2, diag.StateCloseWait, diag.StateLastAck, diag.StateClosing} {
		if !defaultStates.Has(st) {
			t.Errorf("default states lack %s", st)
		}
	}
}
