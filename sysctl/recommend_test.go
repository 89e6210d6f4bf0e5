package sysctl_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tcpkeep/tcpkeep/sysctl"
)

func TestRecommend(t *testing.T) {
	s := time.Second
	for _, tc := range []struct {
		name   string
		req    sysctl.Request
		want   sysctl.Keepalive
		reason string // a phrase the reason must contain
	}{
		{"aws nlb: probe a tenth before its 350 s", sysctl.Request{PathIdleTimeout: 350 * s, PathName: "aws-nlb"},
			sysctl.Keepalive{Time: 315 * s, Intvl: 31 * s, Probes: 5}, "35 s before the path's 350 s idle timeout (aws-nlb)"},
		{"azure lb 240 s", sysctl.Request{PathIdleTimeout: 240 * s},
			sysctl.Keepalive{Time: 216 * s, Intvl: 21 * s, Probes: 5}, "= 321 s"},
		{"gcp cloud nat: interval capped at the kernel's default 75 s", sysctl.Request{PathIdleTimeout: 1200 * s},
			sysctl.Keepalive{Time: 1080 * s, Intvl: 75 * s, Probes: 5}, "1080 s + 5 x 75 s = 1455 s"},
		{"unknown path: plan for the shortest common default", sysctl.Request{},
			sysctl.Keepalive{Time: 216 * s, Intvl: 21 * s, Probes: 5}, "assumed"},
		{"a 4 s firewall: margin of at least a second", sysctl.Request{PathIdleTimeout: 4 * s},
			sysctl.Keepalive{Time: 3 * s, Intvl: s, Probes: 5}, "1 s before"},
		{"a path that keeps flows for hours: at most an hour idle", sysctl.Request{PathIdleTimeout: 100000 * s},
			sysctl.Keepalive{Time: 3600 * s, Intvl: 75 * s, Probes: 5}, "does not limit keepalive"},
		{"local conntrack's 5 days", sysctl.Request{PathIdleTimeout: 432000 * s, PathName: "conntrack"},
			sysctl.Keepalive{Time: 3600 * s, Intvl: 75 * s, Probes: 5}, "= 3975 s"},
		{"just over an hour: the margin binds first", sysctl.Request{PathIdleTimeout: 3700 * s},
			sysctl.Keepalive{Time: 3330 * s, Intvl: 75 * s, Probes: 5}, "370 s before"},
		{"detect within a minute behind an nlb", sysctl.Request{PathIdleTimeout: 350 * s, DetectWithin: time.Minute},
			sysctl.Keepalive{Time: 30 * s, Intvl: 10 * s, Probes: 3}, "within the 60 s target"},
		{"detect within 10 minutes: idle capped by the path", sysctl.Request{PathIdleTimeout: 350 * s, DetectWithin: 10 * time.Minute},
			sysctl.Keepalive{Time: 300 * s, Intvl: 33 * s, Probes: 9}, "= 597 s"},
		{"a generous target: at most 9 probes 75 s apart", sysctl.Request{PathIdleTimeout: 350 * s, DetectWithin: time.Hour},
			sysctl.Keepalive{Time: 315 * s, Intvl: 75 * s, Probes: 9}, "= 990 s"},
		{"the tightest possible target", sysctl.Request{PathIdleTimeout: 350 * s, DetectWithin: 4 * s},
			sysctl.Keepalive{Time: s, Intvl: s, Probes: 3}, "= 4 s"},
		{"a fractional target rounds down", sysctl.Request{PathIdleTimeout: 350 * s, DetectWithin: 4500 * time.Millisecond},
			sysctl.Keepalive{Time: s, Intvl: s, Probes: 3}, "within the 4.5s target"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := sysctl.Recommend(tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if got.Keepalive != tc.want {
				t.Fatalf("got %d/%d/%d, want %d/%d/%d", got.Time/s, got.Intvl/s, got.Probes, tc.want.Time/s, tc.want.Intvl/s, tc.want.Probes)
			}
			if err := got.Validate(); err != nil {
				t.Fatal(err)
			}
			if got.Probes < sysctl.MinProbes {
				t.Fatalf("%d probes: one lost probe could kill a live connection", got.Probes)
			}
			path := tc.req.PathIdleTimeout
			if path == 0 {
				path = sysctl.AssumedPathIdleTimeout
			}
			if got.Time >= path {
				t.Fatalf("first probe after %v, not before the path's %v", got.Time, path)
			}
			if tc.req.DetectWithin > 0 && got.DeadPeerDetect() > tc.req.DetectWithin {
				t.Fatalf("detects after %v, beyond the %v target", got.DeadPeerDetect(), tc.req.DetectWithin)
			}
			if !strings.Contains(got.Reason, tc.reason) {
				t.Fatalf("reason %q lacks %q", got.Reason, tc.reason)
			}
		})
	}
}

func TestRecommendRefusesImpossibleTargets(t *testing.T) {
	s := time.Second
	for _, tc := range []struct {
		name string
		req  sysctl.Request
		why  string
	}{
		{"detect faster than 3 probes allow", sysctl.Request{PathIdleTimeout: 350 * s, DetectWithin: 3 * s}, "3 probes"},
		{"a path that forgets within a second", sysctl.Request{PathIdleTimeout: s}, "heartbeat"},
		{"a negative target", sysctl.Request{DetectWithin: -s}, "negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := sysctl.Recommend(tc.req)
			if !errors.Is(err, sysctl.ErrImpossible) || !strings.Contains(err.Error(), tc.why) {
				t.Fatalf("Recommend = %v, want ErrImpossible saying %q", err, tc.why)
			}
		})
	}
}

func TestMiddleboxesAreKnownByName(t *testing.T) {
	for name, want := range map[string]time.Duration{
		"aws-nlb": 350 * time.Second, "aws-nat": 350 * time.Second, "azure-lb": 240 * time.Second,
		"gcp-cloud-nat": 1200 * time.Second, "gcp-vpc": 600 * time.Second,
	} {
		m, ok := sysctl.LookupMiddlebox(name)
		if !ok || m.IdleTimeout != want || m.Source == "" {
			t.Errorf("%s: %+v, want %v with a source", name, m, want)
		}
	}
	if _, ok := sysctl.LookupMiddlebox("nope"); ok {
		t.Error("an unknown middlebox was found")
	}
}
