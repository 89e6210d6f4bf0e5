package report

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/tcpkeep/tcpkeep/diag"
	"github.com/tcpkeep/tcpkeep/internal/proc"
	"github.com/tcpkeep/tcpkeep/sysctl"
)

// Before the handshake and on a listener, tcp_info's last_* times count from
// nothing (a 2 s old SYN_SENT shows 59m): the record leaves them out and the
// table shows none, as README says of values the kernel does not know.
func TestNoInventedIdle(t *testing.T) {
	for _, st := range []diag.State{diag.StateSynSent, diag.StateSynRecv, diag.StateListen} {
		s := established()
		s.State, s.Timer = st, diag.TimerRetransmit
		s.Info.LastDataSent, s.Info.LastDataRecv, s.Info.LastAckRecv = 59*time.Minute, 59*time.Minute, 59*time.Minute
		m, _ := keysOf(t, AppendSocketRecord(nil, testMeta, s, nil, nil))
		for _, k := range []string{"idle_ms", "last_data_recv_ms", "last_data_sent_ms", "last_ack_recv_ms"} {
			if v, ok := m[k]; ok {
				t.Errorf("%s record has %s %v: an invented time", st, k, v)
			}
		}
		if _, ok := m["rtt_us"]; !ok {
			t.Errorf("%s record lost rtt_us, which the kernel knows", st)
		}
		var out bytes.Buffer
		sw, _ := NewSocketWriter(&out, Table, testMeta, TableOptions{})
		sw.Socket(s, nil, nil)
		sw.Finish(&ConnsSummary{})
		if strings.Contains(out.String(), "59m") {
			t.Errorf("%s row shows the invented idle:\n%s", st, out.String())
		}
	}
	m, _ := keysOf(t, AppendSocketRecord(nil, testMeta, established(), nil, nil))
	if m["idle_ms"] == nil {
		t.Error("an ESTABLISHED record lost idle_ms")
	}
}

// With TCP_USER_TIMEOUT the kernel probes past TCP_KEEPCNT: no "probe 7 of 2".
func TestNextProbeWithUserTimeout(t *testing.T) {
	s := established()
	s.TimerRetrans = 6
	x := &proc.SockOpts{KeepaliveOn: true, Keepalive: sysctl.Keepalive{Time: 2 * time.Second, Intvl: 2 * time.Second, Probes: 2}, UserTimeout: 20 * time.Second}
	if got := string(appendNextProbe(nil, s, x)); strings.Contains(got, " of ") || !strings.Contains(got, "probe 7") {
		t.Errorf("next probe %q, want probe 7 without a count it passed", got)
	}
	x.UserTimeout = 0
	s.TimerRetrans = 1
	if got := string(appendNextProbe(nil, s, x)); !strings.Contains(got, "probe 2 of 2") {
		t.Errorf("next probe %q, want probe 2 of 2", got)
	}
}
