package sysctl_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tcpkeep/tcpkeep/sysctl"
)

func given(d time.Duration) sysctl.Path { return sysctl.Path{IdleTimeout: d, Kind: sysctl.PathGiven} }

func behind(t *testing.T, name string) sysctl.Path {
	t.Helper()
	p, err := sysctl.ChoosePath(sysctl.PathChoice{Behind: name})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRecommend(t *testing.T) {
	s := time.Second
	for _, tc := range []struct {
		name   string
		req    sysctl.Request
		want   sysctl.Keepalive
		reason string // a phrase the reason must contain
	}{
		{"aws nlb: an eighth under its 350 s", sysctl.Request{Path: behind(t, "aws-nlb")},
			sysctl.Keepalive{Time: 306 * s, Intvl: 30 * s, Probes: 5}, "44 s before the path's 350 s idle timeout (aws-nlb's default)"},
		{"azure lb 240 s", sysctl.Request{Path: given(240 * s)},
			sysctl.Keepalive{Time: 210 * s, Intvl: 21 * s, Probes: 5}, "= 315 s"},
		{"gcp cloud nat: interval capped at the kernel's default 75 s", sysctl.Request{Path: given(1200 * s)},
			sysctl.Keepalive{Time: 1050 * s, Intvl: 75 * s, Probes: 5}, "1050 s + 5 x 75 s = 1425 s"},
		{"unknown path: plan for the shortest common default", sysctl.Request{},
			sysctl.Keepalive{Time: 210 * s, Intvl: 21 * s, Probes: 5}, "assumed"},
		{"a 4 s firewall", sysctl.Request{Path: given(4 * s)},
			sysctl.Keepalive{Time: 3 * s, Intvl: s, Probes: 5}, "every 3 s"},
		{"a path that keeps flows for hours: at most an hour idle", sysctl.Request{Path: given(100000 * s)},
			sysctl.Keepalive{Time: 3600 * s, Intvl: 75 * s, Probes: 5}, "does not limit keepalive"},
		{"local conntrack's 5 days", sysctl.Request{Path: sysctl.Path{IdleTimeout: 432000 * s, Kind: sysctl.PathConntrack}},
			sysctl.Keepalive{Time: 3600 * s, Intvl: 75 * s, Probes: 5}, "nf_conntrack_tcp_timeout_established"},
		{"a 4 s path and 30 s: more probes, not a longer interval", sysctl.Request{Path: given(4 * s), DetectWithin: 30 * s},
			sysctl.Keepalive{Time: 3 * s, Intvl: 2 * s, Probes: 9}, "within the 30 s target even with timers an eighth late"},
		{"60 s and 10 minutes: the interval stays under the path too", sysctl.Request{Path: given(60 * s), DetectWithin: 10 * time.Minute},
			sysctl.Keepalive{Time: 52 * s, Intvl: 52 * s, Probes: 9}, "= 520 s"},
		{"3 s path, 20 s", sysctl.Request{Path: given(3 * s), DetectWithin: 20 * s}, sysctl.Keepalive{Time: 2 * s, Intvl: s, Probes: 9}, "= 11 s"},
		{"3 s path, 60 s", sysctl.Request{Path: given(3 * s), DetectWithin: 60 * s}, sysctl.Keepalive{Time: 2 * s, Intvl: 2 * s, Probes: 9}, "= 20 s"},
		{"5 s path, 60 s", sysctl.Request{Path: given(5 * s), DetectWithin: 60 * s}, sysctl.Keepalive{Time: 4 * s, Intvl: 4 * s, Probes: 9}, "= 40 s"},
		{"8 s path, 20 s", sysctl.Request{Path: given(8 * s), DetectWithin: 20 * s}, sysctl.Keepalive{Time: 7 * s, Intvl: s, Probes: 9}, "= 16 s"},
		{"detect within a minute behind an nlb", sysctl.Request{Path: behind(t, "aws-nlb"), DetectWithin: time.Minute},
			sysctl.Keepalive{Time: 26 * s, Intvl: 2 * s, Probes: 9}, "within the 60 s target"},
		{"detect within 10 minutes behind an nlb", sysctl.Request{Path: behind(t, "aws-nlb"), DetectWithin: 10 * time.Minute},
			sysctl.Keepalive{Time: 262 * s, Intvl: 29 * s, Probes: 9}, "= 523 s"},
		{"a generous target: 9 probes at most 75 s apart", sysctl.Request{Path: behind(t, "aws-nlb"), DetectWithin: time.Hour},
			sysctl.Keepalive{Time: 306 * s, Intvl: 75 * s, Probes: 9}, "= 981 s"},
		{"the tightest possible target: 4 s and an eighth", sysctl.Request{Path: behind(t, "aws-nlb"), DetectWithin: 4600 * time.Millisecond},
			sysctl.Keepalive{Time: s, Intvl: s, Probes: 3}, "= 4 s after its last answer, within the 4.6s target"},
		{"5 s", sysctl.Request{Path: behind(t, "aws-nlb"), DetectWithin: 5 * s},
			sysctl.Keepalive{Time: s, Intvl: s, Probes: 3}, "within the 5 s target"},
		{"a 1.5 s path still fits a 1 s cadence", sysctl.Request{Path: given(1500 * time.Millisecond)},
			sysctl.Keepalive{Time: s, Intvl: s, Probes: 5}, "every 1 s"},
		{"a heartbeat: idle time just above it", sysctl.Request{Path: behind(t, "aws-nlb"), Heartbeat: 10 * s},
			sysctl.Keepalive{Time: 12 * s, Intvl: s, Probes: 5}, "A heartbeat every 10 s keeps the connection from ever being idle 12 s, so keepalive stays out of its way; if the heartbeat itself stops, keepalive still finds a dead peer within 17 s"},
		{"a heartbeat and a target", sysctl.Request{Path: behind(t, "aws-nlb"), Heartbeat: 40 * s, DetectWithin: 60 * s},
			sysctl.Keepalive{Time: 45 * s, Intvl: s, Probes: 7}, "stays out of its way"},
		{"a heartbeat too close to the path's limit", sysctl.Request{Path: behind(t, "aws-nlb"), Heartbeat: 300 * s},
			sysctl.Keepalive{Time: 306 * s, Intvl: 30 * s, Probes: 5}, "will also probe between heartbeats"},
		{"a heartbeat slower than the path", sysctl.Request{Path: given(60 * s), Heartbeat: 90 * s},
			sysctl.Keepalive{Time: 52 * s, Intvl: 5 * s, Probes: 5}, "too slow for the path"},
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
			if got.Intvl > got.Time || got.Cadence() > sysctl.CadenceLimit(got.PathIdleTimeout) {
				t.Fatalf("cadence %v over the path's limit %v", got.Cadence(), sysctl.CadenceLimit(got.PathIdleTimeout))
			}
			if tc.req.DetectWithin > 0 && got.DeadPeerDetect() > sysctl.DetectBudget(tc.req.DetectWithin) {
				t.Fatalf("detects after %v, beyond the %v target", got.DeadPeerDetect(), tc.req.DetectWithin)
			}
			if got.UserTimeout != got.DeadPeerDetect() {
				t.Fatalf("TCP_USER_TIMEOUT %v, want the detection time %v", got.UserTimeout, got.DeadPeerDetect())
			}
			// With that user timeout, keepalive drops at its last probe firing
			// or, where the timers' lateness reaches it first, the one before.
			if d := (sysctl.Socket{Keepalive: got.Keepalive, UserTimeout: got.UserTimeout}).KeepaliveAfter(); d.In > got.DeadPeerDetect() || d.In < got.DeadPeerDetect()-got.Intvl {
				t.Fatalf("with TCP_USER_TIMEOUT %v keepalive drops after %v, want about %v", got.UserTimeout, d.In, got.DeadPeerDetect())
			}
			if !strings.Contains(got.Reason, tc.reason) {
				t.Fatalf("reason %q lacks %q", got.Reason, tc.reason)
			}
			if !strings.Contains(got.Reason, "TCP_USER_TIMEOUT") || strings.Contains(got.Reason, "tcpkeep") || strings.Contains(got.Reason, "--") {
				t.Fatalf("reason %q: want TCP_USER_TIMEOUT and no command's words", got.Reason)
			}
		})
	}
}

func TestRecommendRefusesOnlyTheImpossible(t *testing.T) {
	s := time.Second
	for _, tc := range []struct {
		name string
		req  sysctl.Request
		why  string
	}{
		{"detect faster than 3 probes allow", sysctl.Request{Path: given(350 * s), DetectWithin: 3 * s}, "3 probes"},
		{"4 s: the probes take it all, and timers fire late", sysctl.Request{Path: given(350 * s), DetectWithin: 4 * s}, "an eighth late"},
		{"a path that forgets within a second", sysctl.Request{Path: given(s)}, "heartbeat"},
		{"a path a 1 s timer firing late misses", sysctl.Request{Path: given(1100 * time.Millisecond)}, "late"},
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
