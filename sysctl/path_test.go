package sysctl_test

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tcpkeep/tcpkeep/sysctl"
)

// The built-in table: vendor defaults, each with its source, and the range
// where operators can configure it.
func TestMiddleboxesAreKnownByName(t *testing.T) {
	for name, want := range map[string]time.Duration{
		"aws-nlb": 350 * time.Second, "aws-nat": 350 * time.Second, "aws-nitro-v6": 350 * time.Second,
		"azure-lb": 4 * time.Minute, "aks-outbound": 30 * time.Minute, "gcp-cloud-nat": 1200 * time.Second,
		"gcp-vpc": 600 * time.Second, "ipvs": 900 * time.Second,
	} {
		m, ok := sysctl.LookupMiddlebox(name)
		if !ok || m.IdleTimeout != want || m.Source == "" || m.Custom {
			t.Errorf("%s: %+v, want %v with a source", name, m, want)
		}
		if m.Configurable && m.Max > 0 && (m.IdleTimeout < m.Min || m.IdleTimeout > m.Max) {
			t.Errorf("%s: default %v outside its range %v-%v", name, m.IdleTimeout, m.Min, m.Max)
		}
	}
	if m, _ := sysctl.LookupMiddlebox("aws-nlb"); !m.Configurable || m.Min != 60*time.Second || m.Max != 6000*time.Second || !strings.Contains(m.Source, "TLS listeners are fixed at 350 s") {
		t.Errorf("aws-nlb %+v: want configurable 60-6000 s, TLS fixed at 350 s", m)
	}
	if m, _ := sysctl.LookupMiddlebox("azure-lb"); m.Max != 100*time.Minute {
		t.Errorf("azure-lb %+v: want configurable up to 100 minutes", m)
	}
	if _, ok := sysctl.LookupMiddlebox("nope"); ok {
		t.Error("an unknown middlebox was found")
	}
	if n := sysctl.MiddleboxNames(); !strings.HasSuffix(n, ", conntrack") || !strings.Contains(n, "ipvs") {
		t.Errorf("names %q", n)
	}
}

func TestParseMiddleboxesFixture(t *testing.T) {
	f, err := os.Open("testdata/middleboxes.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := sysctl.ParseMiddleboxes(f)
	if err != nil {
		t.Fatal(err)
	}
	want := sysctl.MiddleboxTable{
		{Name: "edge-fw", IdleTimeout: 300 * time.Second, Source: "Palo Alto edge firewall, TCP session timeout set in our policy (ticket NET-1412)", Custom: true},
		{Name: "office-nat", IdleTimeout: 1800 * time.Second, Source: "the office NAT, its admin page", Custom: true},
		{Name: "aws-nlb", IdleTimeout: 600 * time.Second, Source: "our NLB listeners, tcp.idle_timeout.seconds = 600 in terraform", Custom: true},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d entries, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("entry %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	// The file adds its own devices and overrides a default in place.
	table := sysctl.Middleboxes.Merge(got)
	if m, _ := table.Lookup("aws-nlb"); m.IdleTimeout != 600*time.Second || !m.Custom {
		t.Errorf("aws-nlb after the merge: %+v, want the file's 600 s", m)
	}
	if m, _ := table.Lookup("edge-fw"); m.IdleTimeout != 300*time.Second {
		t.Errorf("edge-fw after the merge: %+v", m)
	}
	if len(table) != len(sysctl.Middleboxes)+2 || table[0].Name != "aws-nlb" {
		t.Errorf("merged table has %d entries starting %q, want %d with aws-nlb replaced in place", len(table), table[0].Name, len(sysctl.Middleboxes)+2)
	}
	if m, _ := sysctl.LookupMiddlebox("aws-nlb"); m.IdleTimeout != 350*time.Second {
		t.Error("the merge changed the built-in table")
	}
}

func TestParseMiddleboxesRejects(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		line     int
	}{
		{"fw 300\n", "three fields", 1},
		{"# c\nfw x source\n", "whole seconds", 2},
		{"fw 0 source\n", "whole seconds", 1},
		{"fw 432001 source\n", "whole seconds", 1},
		{"fw 1.5 source\n", "whole seconds", 1},
		{"fw/1 30 source\n", "letters, digits", 1},
		{"conntrack 30 mine\n", "nf_conntrack", 1},
		{"fw 30 a\n\nfw 40 b\n", "already on line 1", 3},
		{"fw 30 bell\x07\n", "control characters", 1},
		{"fw 30 bad \xff utf-8\n", "invalid UTF-8", 1},
		{strings.Repeat("x", 65) + " 30 long name\n", "64", 1},
	} {
		_, err := sysctl.ParseMiddleboxes(strings.NewReader(tc.in))
		var fe *sysctl.MiddleboxFileError
		if !errors.As(err, &fe) || fe.Line != tc.line || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want line %d saying %q", tc.in, err, tc.line, tc.want)
		}
	}
	if _, err := sysctl.ParseMiddleboxes(strings.NewReader(strings.Repeat("# padding\n", 200000))); err == nil {
		t.Error("a 2 MB file was read as a middleboxes file")
	}
	if got, err := sysctl.ParseMiddleboxes(strings.NewReader("fw 30 tabs\tand  spaces kept\r\n")); err != nil || got[0].Source != "tabs\tand  spaces kept" {
		t.Errorf("entries %+v, %v", got, err)
	}
}

// FuzzParseMiddleboxes: no input panics the parser; each gives entries that
// hold its rules, or an error.
func FuzzParseMiddleboxes(f *testing.F) {
	if b, err := os.ReadFile("testdata/middleboxes.txt"); err == nil {
		f.Add(b)
	}
	for _, s := range []string{"", "fw 30 x\n", "a 1 b\nb 2 c", "conntrack 1 x", "# only\n\n", "fw 99999999999999999999 x"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := sysctl.ParseMiddleboxes(strings.NewReader(string(b)))
		if err != nil {
			if got != nil {
				t.Fatalf("entries %v with error %v", got, err)
			}
			return
		}
		seen := map[string]bool{}
		for _, m := range got {
			if m.Name == "" || m.Name == sysctl.ConntrackName || seen[m.Name] || m.IdleTimeout < time.Second || m.IdleTimeout > 432000*time.Second || m.Source == "" || !m.Custom {
				t.Fatalf("entry %+v breaks the file's rules", m)
			}
			seen[m.Name] = true
		}
	})
}

func TestChoosePath(t *testing.T) {
	ct := 300 * time.Second
	short := 100 * time.Second
	own := sysctl.Middleboxes.Merge(sysctl.MiddleboxTable{{Name: "edge-fw", IdleTimeout: 90 * time.Second, Source: "ours", Custom: true}})
	for _, tc := range []struct {
		name string
		c    sysctl.PathChoice
		want time.Duration
		kind sysctl.PathKind
	}{
		{"given", sysctl.PathChoice{Given: 42 * time.Second, Conntrack: &short}, 42 * time.Second, sysctl.PathGiven},
		{"behind a known box", sysctl.PathChoice{Behind: "azure-lb", Conntrack: &short}, 240 * time.Second, sysctl.PathMiddlebox},
		{"behind the operator's own box", sysctl.PathChoice{Behind: "edge-fw", Table: own}, 90 * time.Second, sysctl.PathMiddlebox},
		{"behind local conntrack", sysctl.PathChoice{Behind: "conntrack", Conntrack: &ct}, 300 * time.Second, sysctl.PathConntrack},
		{"nothing said, conntrack shorter than the assumption", sysctl.PathChoice{Conntrack: &short}, 100 * time.Second, sysctl.PathConntrack},
		{"nothing said, conntrack longer", sysctl.PathChoice{Conntrack: &ct}, 240 * time.Second, sysctl.PathAssumed},
		{"nothing known", sysctl.PathChoice{}, 240 * time.Second, sysctl.PathAssumed},
	} {
		p, err := sysctl.ChoosePath(tc.c)
		if err != nil || p.IdleTimeout != tc.want || p.Kind != tc.kind {
			t.Errorf("%s: %+v, %v; want %v of kind %d", tc.name, p, err, tc.want, tc.kind)
		}
	}
	for _, tc := range []struct {
		c    sysctl.PathChoice
		want error
	}{
		{sysctl.PathChoice{Given: time.Second, Behind: "aws-nlb"}, sysctl.ErrPathConflict},
		{sysctl.PathChoice{Behind: "nope"}, sysctl.ErrUnknownMiddlebox},
		{sysctl.PathChoice{Behind: "edge-fw"}, sysctl.ErrUnknownMiddlebox},
		{sysctl.PathChoice{Behind: "conntrack"}, sysctl.ErrNoConntrack},
	} {
		if _, err := sysctl.ChoosePath(tc.c); !errors.Is(err, tc.want) {
			t.Errorf("%+v: %v, want %v", tc.c, err, tc.want)
		}
	}
}
