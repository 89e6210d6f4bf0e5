package diag

import (
	"strconv"
	"strings"
	"testing"
)

func TestParsePortRange(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want PortRange
		err  string
	}{
		{"22", PortRange{Lo: 22, Hi: 22}, ""},
		{"65535", PortRange{Lo: 65535, Hi: 65535}, ""},
		{"8000-8999", PortRange{Lo: 8000, Hi: 8999}, ""},
		{"0-1023", PortRange{Lo: 0, Hi: 1023}, ""},
		{"80-80", PortRange{Lo: 80, Hi: 80}, ""},
		{"0", PortRange{}, "port 0"},
		{"0-0", PortRange{}, "port 0"},
		{"65536", PortRange{}, "want a port"},
		{"-1", PortRange{}, "want a port"},
		{"90-80", PortRange{}, "empty"},
		{"80-", PortRange{}, "want a port"},
		{"-80", PortRange{}, "want a port"},
		{"1-2-3", PortRange{}, "want a port"},
		{"http", PortRange{}, "want a port"},
		{" 80", PortRange{}, "want a port"},
		{"+80", PortRange{}, "want a port"},
		{"", PortRange{}, "want a port"},
		{"000000080", PortRange{}, "want a port"},
	} {
		got, err := ParsePortRange(tc.in)
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
		got, err := ParsePrefix(tc.in)
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

// FuzzParsePortRange: any input gives a non-empty range or an error, and what
// parses is what it says.
func FuzzParsePortRange(f *testing.F) {
	for _, s := range []string{"22", "0-1023", "8000-8999", "65536", "1-2-3", "", "-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParsePortRange(s)
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
		p, err := ParsePrefix(s)
		if err != nil {
			return
		}
		if !p.IsValid() || p != p.Masked() || p.Addr().Zone() != "" || p.Addr().Is4In6() {
			t.Fatalf("%q -> %v", s, p)
		}
	})
}
