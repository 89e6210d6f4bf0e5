package sysctl

import (
	"testing"
	"time"
)

// testdata/fresh-netns holds the files a new network namespace shows under
// /proc/sys on Linux 6.18, byte for byte: the kernel defaults.
func TestReadFreshNamespaceFixture(t *testing.T) {
	got, err := ProcSys("testdata/fresh-netns").Read()
	if err != nil {
		t.Fatal(err)
	}
	if got.Keepalive != Defaults {
		t.Errorf("keepalive %+v, want the kernel defaults %+v", got.Keepalive, Defaults)
	}
	if got.Retries2 == nil || *got.Retries2 != 15 {
		t.Errorf("tcp_retries2 %v, want 15", got.Retries2)
	}
	if got.FinTimeout == nil || *got.FinTimeout != time.Minute {
		t.Errorf("tcp_fin_timeout %v, want 1m", got.FinTimeout)
	}
	if got.OrphanRetries == nil || *got.OrphanRetries != 0 || OrphanRetries(*got.OrphanRetries) != 8 {
		t.Errorf("tcp_orphan_retries %v, want 0, which means 8", got.OrphanRetries)
	}
	if got.ConntrackEstablished == nil || *got.ConntrackEstablished != 5*24*time.Hour {
		t.Errorf("nf_conntrack_tcp_timeout_established %v, want 5 days", got.ConntrackEstablished)
	}
}

func TestParseValue(t *testing.T) {
	for in, want := range map[string]int{"7200\n": 7200, "0\n": 0, "-1\n": -1, "75": 75} {
		if n, err := parseValue([]byte(in)); err != nil || n != want {
			t.Errorf("parseValue(%q) = %d, %v; want %d", in, n, err, want)
		}
	}
	for _, in := range []string{"", "\n", "lots\n", "1 2\n", "7200\n\n", " 7200\n", "99999999999999999999\n"} {
		if n, err := parseValue([]byte(in)); err == nil {
			t.Errorf("parseValue(%q) = %d, want an error", in, n)
		}
	}
}

// FuzzParseValue: no bytes panic the parser; each gives a value or an error.
func FuzzParseValue(f *testing.F) {
	for _, s := range []string{"7200\n", "75\n", "9\n", "432000\n", "-1\n", "", "x\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if n, err := parseValue(b); err != nil && n != 0 {
			t.Fatalf("parseValue(%q) = %d with error %v", b, n, err)
		}
	})
}
