package report

import (
	"strings"
	"testing"
	"time"

	"github.com/tcpkeep/tcpkeep/diag"
	"github.com/tcpkeep/tcpkeep/internal/audit"
	"github.com/tcpkeep/tcpkeep/internal/proc"
	"github.com/tcpkeep/tcpkeep/sysctl"
)

// TestRemediesPointToArm: the findings keepalive or TCP_USER_TIMEOUT can fix
// say which arm command fixes the connection now, with audit's values for the
// path; where arm cannot act (an orphan, a closing state, no values) they
// say nothing of it.
func TestRemediesPointToArm(t *testing.T) {
	arm := proc.Keepalive{Keepalive: sysctl.Keepalive{Time: 216 * time.Second, Intvl: 21 * time.Second, Probes: 5},
		UserTimeout: 321 * time.Second, SetUserTimeout: true}
	conn := " arm --sport 40000 --dst 10.77.0.2 --dport 7070 --time 3m36s --intvl 21s --probes 5"
	w := Words{Remedy: true, NetNS: "web"}
	for _, tc := range []struct {
		name  string
		code  audit.Code
		rem   audit.Remedy
		edit  func(*audit.Finding)
		want  string
		unarm bool
	}{
		{name: "idle", code: audit.IdleNoKeepalive, rem: audit.RemedyKeepalive, want: "; until then, arm this connection now: tcpkeep --netns web" + conn},
		{name: "retrans", code: audit.HalfOpenRetrans, rem: audit.RemedyUserTimeout, want: "; bound this connection now with tcpkeep --netns web" + conn + " --user-timeout 5m21s"},
		{name: "zero window", code: audit.ZeroWindowStall, rem: audit.RemedyFixReader, want: " (now: tcpkeep --netns web" + conn + " --user-timeout 5m21s)"},
		{name: "orphan", code: audit.HalfOpenRetrans, rem: audit.RemedyUserTimeout, edit: func(f *audit.Finding) { f.Socket.Inode = 0 }, unarm: true},
		{name: "closing", code: audit.HalfOpenRetrans, rem: audit.RemedyUserTimeout, edit: func(f *audit.Finding) { f.Socket.State = diag.StateFinWait1 }, unarm: true},
		{name: "no values", code: audit.IdleNoKeepalive, rem: audit.RemedyKeepalive, edit: func(f *audit.Finding) { f.Arm = proc.Keepalive{} }, unarm: true},
	} {
		f := &audit.Finding{Code: tc.code, Remedy: tc.rem, Socket: established(), Arm: arm}
		if tc.edit != nil {
			tc.edit(f)
		}
		got := w.Message(f)
		if tc.unarm == strings.Contains(got, " arm ") || !strings.HasSuffix(got, tc.want) {
			t.Errorf("%s: %q, want it to end with %q", tc.name, got, tc.want)
		}
	}
}

// TestNearest: what "did you mean" offers.
func TestNearest(t *testing.T) {
	names := []string{"sysctl", "conns", "audit", "kill", "arm", "probe"}
	for in, want := range map[string]string{"audt": "audit", "sysclt": "sysctl", "con": "conns", "kil": "kill", "amr": "arm", "frobnicate": "", "": ""} {
		if got := Nearest(in, names); got != want {
			t.Errorf("Nearest(%q) = %q, want %q", in, got, want)
		}
	}
}
