package cli

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/tcpkeep/tcpkeep/diag"
)

func TestParsePortRange(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want diag.PortRange
		err  string
	}{
		{"22", diag.PortRange{Lo: 22, Hi: 22}, ""},
		{"65535", diag.PortRange{Lo: 65535, Hi: 65535}, ""},
		{"8000-8999", diag.PortRange{Lo: 8000, Hi: 8999}, ""},
		{"0-1023", diag.PortRange{Lo: 0, Hi: 1023}, ""},
		{"80-80", diag.PortRange{Lo: 80, Hi: 80}, ""},
		{"0", diag.PortRange{}, "port 0"},
		{"0-0", diag.PortRange{}, "port 0"},
		{"65536", diag.PortRange{}, "want a port"},
		{"-1", diag.PortRange{}, "want a port"},
		{"90-80", diag.PortRange{}, "empty"},
		{"80-", diag.PortRange{}, "want a port"},
		{"-80", diag.PortRange{}, "want a port"},
		{"1-2-3", diag.PortRange{}, "want a port"},
		{"http", diag.PortRange{}, "want a port"},
		{" 80", diag.PortRange{}, "want a port"},
		{"+80", diag.PortRange{}, "want a port"},
		{"", diag.PortRange{}, "want a port"},
		{"000000080", diag.PortRange{}, "want a port"},
	} {
		got, err := parsePortRange(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: err %v, want one containing %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

func TestParsePrefix(t *testing.T) {
	for _, tc := range []struct {
		in, want, err string
	}{
		{"10.0.0.5", "10.0.0.5/32", ""},
		{"10.1.2.3/8", "10.0.0.0/8", ""},
		{"0.0.0.0/0", "0.0.0.0/0", ""},
		{"fd77::1", "fd77::1/128", ""},
		{"[fd77::1]", "fd77::1/128", ""},
		{"fd00::/8", "fd00::/8", ""},
		{"::ffff:10.0.0.1", "10.0.0.1/32", ""},
		{"::ffff:10.0.0.0/104", "10.0.0.0/8", ""},
		{"::ffff:0.0.0.0/64", "::/64", ""},
		{"10.0.0.0/33", "", "exceeds 32"},
		{"fd00::/129", "", "exceeds 128"},
		{"10.0.0.0/", "", "not a number"},
		{"10.0.0.0/-1", "", "not a number"},
		{"10.0.0.0/8/8", "", "not a number"},
		{"fe80::1%eth0", "", "zones"},
		{"example.com", "", "not an address"},
		{"10.0.0", "", "not an address"},
		{"", "", "not an address"},
	} {
		got, err := parsePrefix(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: err %v, want one containing %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got.String() != tc.want {
			t.Errorf("%q: %v, %v; want %s", tc.in, got, err, tc.want)
		}
	}
}

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
		addFilterFlags(fs, &ff)
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

// FuzzParsePortRange: any input gives a non-empty range or an error, and what
// parses is what it says.
func FuzzParsePortRange(f *testing.F) {
	for _, s := range []string{"22", "0-1023", "8000-8999", "65536", "1-2-3", "", "-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := parsePortRange(s)
		if err != nil {
			return
		}
		if r.Hi < r.Lo || r.Hi == 0 {
			t.Fatalf("%q -> %+v", s, r)
		}
		lo, hi, ok := strings.Cut(s, "-")
		if !ok {
			hi = lo
		}
		if strconv.Itoa(int(r.Lo)) != strings.TrimLeft(lo, "0")+map[bool]string{true: "0"}[strings.TrimLeft(lo, "0") == ""] ||
			strconv.Itoa(int(r.Hi)) != strings.TrimLeft(hi, "0")+map[bool]string{true: "0"}[strings.TrimLeft(hi, "0") == ""] {
			t.Fatalf("%q -> %+v", s, r)
		}
	})
}

// FuzzParsePrefix: any input gives a valid, masked prefix or an error.
func FuzzParsePrefix(f *testing.F) {
	for _, s := range []string{"10.0.0.5", "10.1.2.3/8", "fd00::/8", "[::1]", "::ffff:1.2.3.4/120", "fe80::1%eth0/64", "/", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := parsePrefix(s)
		if err != nil {
			return
		}
		if !p.IsValid() || p != p.Masked() || p.Addr().Zone() != "" || p.Addr().Is4In6() {
			t.Fatalf("%q -> %v", s, p)
		}
	})
}
