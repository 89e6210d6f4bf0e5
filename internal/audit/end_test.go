package audit_test

import (
	"testing"
	"time"

	"github.com/tcpkeep/tcpkeep/diag"
	"github.com/tcpkeep/tcpkeep/internal/audit"
	"github.com/tcpkeep/tcpkeep/internal/proc"
	"github.com/tcpkeep/tcpkeep/sysctl"
)

// record is a last record as the destroy broadcast carries it: state CLOSE, no
// timer, and the tcp_info fields HowEnded reads.
func record(retransmits, probes uint8, lastAckRecv, lastDataRecv, rtt time.Duration, bytesAcked, bytesRecv uint64, sndWnd uint32) diag.Socket {
	return diag.Socket{
		Family: diag.FamilyInet,
		State:  diag.StateClose,
		Info: diag.TCPInfo{
			Len: 280, State: uint8(diag.StateClose), Retransmits: retransmits, Probes: probes,
			LastAckRecv: lastAckRecv, LastDataRecv: lastDataRecv, RTT: rtt,
			BytesAcked: bytesAcked, BytesRecv: bytesRecv, SndWnd: sndWnd,
		},
	}
}

// opts are a socket's options as read from its owner.
func opts(keepCnt int, userTimeout time.Duration) *proc.SockOpts {
	return &proc.SockOpts{KeepaliveOn: keepCnt > 0, Keepalive: sysctl.Keepalive{Time: time.Second, Intvl: time.Second, Probes: keepCnt}, UserTimeout: userTimeout}
}

const ms = time.Millisecond

// TestHowEnded classifies the last records TestHowEndedLive captured from
// Linux 6.18 (figures copied from its log), and the cases around them.
func TestHowEnded(t *testing.T) {
	for _, c := range []struct {
		name   string
		s      diag.Socket
		hints  audit.EndHints
		want   audit.End
		isDrop bool
	}{
		// Captured: the record and the end it came from.
		{"closed by the owner, first", record(0, 0, 0, 52*ms, 6*ms, 6, 4, 65536), audit.EndHints{Sockopts: opts(9, 0)}, audit.EndClosed, false},
		{"closed by the owner, second", record(0, 0, 0, 4*ms, 37*time.Microsecond, 6, 5, 65536), audit.EndHints{}, audit.EndClosed, false},
		{"reset by the peer", record(0, 0, 4*ms, 4*ms, 32*time.Microsecond, 5, 4, 65536), audit.EndHints{Sockopts: opts(9, 0)}, audit.EndClosed, false},
		{"keepalive: 3 probes of 3 unanswered", record(0, 3, 4104*ms, 4104*ms, 40*time.Microsecond, 5, 4, 65536), audit.EndHints{}, audit.EndKeepalive, true},
		{"keepalive, with options", record(0, 3, 4104*ms, 4104*ms, 40*time.Microsecond, 5, 4, 65536), audit.EndHints{Sockopts: opts(3, 0)}, audit.EndKeepalive, true},
		{"reset answering the 2nd of 5 probes, record alone", record(0, 2, 2036*ms, 2036*ms, 32*time.Microsecond, 5, 4, 65536), audit.EndHints{}, audit.EndKeepalive, true},
		{"reset answering the 2nd of 5 probes, with options", record(0, 2, 2036*ms, 2036*ms, 32*time.Microsecond, 5, 4, 65536), audit.EndHints{Sockopts: opts(5, 0)}, audit.EndClosed, false},
		{"tcp_retries2 3: 4 retransmissions", record(4, 0, 6828*ms, 6828*ms, 40*time.Microsecond, 5, 4, 65536), audit.EndHints{Sockopts: opts(0, 0)}, audit.EndRetransmit, true},
		{"user timeout 1.5s retransmitting, record alone", record(3, 0, 1936*ms, 1936*ms, 47*time.Microsecond, 5, 4, 65536), audit.EndHints{}, audit.EndRetransmit, true},
		{"user timeout 1.5s retransmitting, with options", record(3, 0, 1936*ms, 1936*ms, 47*time.Microsecond, 5, 4, 65536), audit.EndHints{Sockopts: opts(0, 1500*ms)}, audit.EndUserTimeout, true},
		{"user timeout 2.5s probing, record alone", record(0, 2, 3072*ms, 3072*ms, 34*time.Microsecond, 5, 4, 65536), audit.EndHints{}, audit.EndKeepalive, true},
		{"user timeout 2.5s probing, with options", record(0, 2, 3072*ms, 3072*ms, 34*time.Microsecond, 5, 4, 65536), audit.EndHints{Sockopts: opts(9, 2500*ms)}, audit.EndUserTimeout, true},
		{"zero-window probes: 3 of tcp_retries2 3", record(0, 3, 3256*ms, 3348*ms, 9947*time.Microsecond, 127481, 0, 0), audit.EndHints{Sockopts: opts(0, 0)}, audit.EndRetransmit, true},
		{"destroyed, healthy, record alone", record(0, 0, 4*ms, 4*ms, 36*time.Microsecond, 5, 4, 65536), audit.EndHints{}, audit.EndClosed, false},
		{"destroyed, healthy, by the caller", record(0, 0, 4*ms, 4*ms, 36*time.Microsecond, 5, 4, 65536), audit.EndHints{Destroyed: true}, audit.EndDestroyed, false},
		{"destroyed at 2 of 5 probes, record alone", record(0, 2, 2068*ms, 2068*ms, 29*time.Microsecond, 5, 4, 65536), audit.EndHints{}, audit.EndKeepalive, true},
		{"destroyed at 2 of 5 probes, with options", record(0, 2, 2068*ms, 2068*ms, 29*time.Microsecond, 5, 4, 65536), audit.EndHints{Sockopts: opts(5, 0)}, audit.EndClosed, false},
		{"destroyed at 2 of 5 probes, by the caller", record(0, 2, 2068*ms, 2068*ms, 29*time.Microsecond, 5, 4, 65536), audit.EndHints{Destroyed: true, Sockopts: opts(5, 0)}, audit.EndDestroyed, false},
		{"closed while half-open, FIN unanswered", record(2, 1, 2728*ms, 2728*ms, 33*time.Microsecond, 5, 4, 65536), audit.EndHints{Sockopts: opts(5, 0)}, audit.EndRetransmit, true},
		{"connect timed out", record(2, 0, 664544*ms, 664544*ms, 0, 0, 0, 0), audit.EndHints{}, audit.EndConnectTimeout, true},

		// Around them.
		{"no tcp_info", diag.Socket{State: diag.StateClose}, audit.EndHints{Destroyed: true}, audit.EndUnknown, false},
		{"zero-window probes, user timeout", record(0, 6, 9*time.Second, 9*time.Second, ms, 1000, 0, 0), audit.EndHints{Sockopts: opts(0, 5*time.Second)}, audit.EndUserTimeout, true},
		{"probes, user timeout not reached: a reset", record(0, 1, 1200*ms, 1200*ms, ms, 5, 4, 65536), audit.EndHints{Sockopts: opts(9, 5*time.Second)}, audit.EndClosed, false},
		{"probes, count unknown in the options", record(0, 2, 3*time.Second, 3*time.Second, ms, 5, 4, 65536), audit.EndHints{Sockopts: opts(0, 0)}, audit.EndKeepalive, true},
		{"retransmitting server end that never got an ACK", record(5, 0, 20*time.Second, 20*time.Second, 90*time.Microsecond, 0, 0, 65535), audit.EndHints{}, audit.EndRetransmit, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := audit.HowEnded(&c.s, c.hints)
			if got != c.want {
				t.Errorf("HowEnded = %s, want %s", got, c.want)
			}
			if got.KernelDrop() != c.isDrop {
				t.Errorf("%s.KernelDrop() = %v, want %v", got, got.KernelDrop(), c.isDrop)
			}
		})
	}

	// A kernel older than 5.4 sends no tcpi_snd_wnd: its zero is not a
	// zero window, and probes there are keepalive's.
	old := record(0, 3, 5*time.Second, 5*time.Second, ms, 5, 4, 0)
	old.Info.Len = 192
	if got := audit.HowEnded(&old, audit.EndHints{}); got != audit.EndKeepalive {
		t.Errorf("HowEnded(old kernel, 3 probes) = %s, want keepalive", got)
	}
}

// TestEndNames: the names records and metric labels use, one per End.
func TestEndNames(t *testing.T) {
	want := map[audit.End]string{
		audit.EndUnknown: "unknown", audit.EndClosed: "closed", audit.EndKeepalive: "keepalive",
		audit.EndRetransmit: "retransmit", audit.EndUserTimeout: "user_timeout",
		audit.EndConnectTimeout: "connect_timeout", audit.EndDestroyed: "destroyed", 99: "unknown",
	}
	for e, name := range want {
		if e.String() != name {
			t.Errorf("End(%d).String() = %q, want %q", e, e.String(), name)
		}
	}
}
