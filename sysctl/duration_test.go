package sysctl

import (
	"strings"
	"testing"
	"time"
)

func TestParseSeconds(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration // 0: an error
		says string        // what the error must say
	}{
		{"90", 90 * time.Second, ""},
		{"90s", 90 * time.Second, ""},
		{"2m", 2 * time.Minute, ""},
		{"1m30s", 90 * time.Second, ""},
		{"2000ms", 2 * time.Second, ""},
		{"32767", 32767 * time.Second, ""},
		{"0", 0, "below one second"},
		{"-1", 0, "negative"},
		{"-5s", 0, "negative"},
		{"32768", 0, "above 32767"},
		{"10h", 0, "above 32767"},
		{"1.5", 0, "fraction"},
		{"1.5s", 0, "not whole seconds"},
		{"5ms", 0, "below one second"},
		{"10x", 0, "not a duration"},
		{"", 0, "empty"},
		{" 90", 0, "not a duration"},
		{"90 ", 0, "not a duration"},
		{"99999999999999999999", 0, "too large"},
		{"9999999999999999999s", 0, "not a duration"},
		{"1e3", 0, "not a duration"},
		{"0x10", 0, "not a duration"},
	} {
		got, err := ParseSeconds(tc.in, MaxTime)
		if tc.want != 0 {
			if err != nil || got != tc.want {
				t.Errorf("ParseSeconds(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			}
			continue
		}
		if err == nil {
			t.Errorf("ParseSeconds(%q) = %v, want an error", tc.in, got)
			continue
		}
		if !strings.Contains(err.Error(), tc.says) || !strings.Contains(err.Error(), "1 to 32767") {
			t.Errorf("ParseSeconds(%q) error %q: want it to say %q and the range", tc.in, err, tc.says)
		}
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{"0": 0, "10": 10 * time.Second, "500ms": 500 * time.Millisecond, "1h30m": 90 * time.Minute} {
		if got, err := ParseDuration(in); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "-1s", "1.5", "abc", "10x", "1e9", "99999999999999999999"} {
		if got, err := ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q) = %v, want an error", in, got)
		}
	}
}

func TestParseKeepalive(t *testing.T) {
	if k, err := ParseKeepalive("60s/10/5"); err != nil || k != (Keepalive{Time: time.Minute, Intvl: 10 * time.Second, Probes: 5}) {
		t.Errorf("ParseKeepalive(60s/10/5) = %+v, %v", k, err)
	}
	for in, says := range map[string]string{"60s/10s": "IDLE/INTVL/CNT", "0/1/1": "IDLE", "1/1.5/1": "INTVL", "1/1/128": "CNT", "1/1/+5": "CNT", "1/1/x": "CNT"} {
		if _, err := ParseKeepalive(in); err == nil || !strings.Contains(err.Error(), says) {
			t.Errorf("ParseKeepalive(%q) = %v, want an error naming %s", in, err, says)
		}
	}
}

func FuzzParseSeconds(f *testing.F) {
	for _, s := range []string{"90", "90s", "2m", "1.5", "5ms", "10x", "", "-1", "32768", "99999999999999999999", "1h0m0.5s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseSeconds(s, MaxTime)
		if err != nil {
			if d != 0 {
				t.Fatalf("ParseSeconds(%q) returned %v with error %v", s, d, err)
			}
			return
		}
		if d < time.Second || d > 32767*time.Second || d%time.Second != 0 {
			t.Fatalf("ParseSeconds(%q) = %v: outside whole seconds 1 to 32767", s, d)
		}
	})
}

func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"90", "90s", "500ms", "1.5", "-1s", "10x", "", "9223372036854775807", "1h"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDuration(s)
		if err == nil && d < 0 {
			t.Fatalf("ParseDuration(%q) = %v: negative", s, d)
		}
	})
}
