package diag

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

func TestParseStates(t *testing.T) {
	cases := []struct {
		in   string
		want StateSet
	}{
		{"established", Of(StateEstablished)},
		{"ESTABLISHED", Of(StateEstablished)},
		{"Established,listening", Of(StateEstablished) | Of(StateListen)},
		{"LISTEN", Of(StateListen)},
		{"syn-recv", 1<<StateSynRecv | 1<<StateNewSynRecv},
		{"SYN_RECV", 1<<StateSynRecv | 1<<StateNewSynRecv},
		{"fin-wait-2, FIN_WAIT1", Of(StateFinWait2) | Of(StateFinWait1)},
		{"time-wait,closed,close-wait,last-ack,closing,syn-sent", Of(StateTimeWait) | Of(StateClose) | Of(StateCloseWait) | Of(StateLastAck) | Of(StateClosing) | Of(StateSynSent)},
		{"all", StatesAll},
		{"connected", StatesAll &^ (1<<StateListen | 1<<StateClose)},
		{"synchronized", StatesAll &^ (1<<StateListen | 1<<StateClose | 1<<StateSynSent)},
		{"bucket", 1<<StateSynRecv | 1<<StateNewSynRecv | 1<<StateTimeWait},
		{"big", StatesAll &^ (1<<StateSynRecv | 1<<StateNewSynRecv | 1<<StateTimeWait)},
	}
	for _, c := range cases {
		got, err := ParseStates(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseStates(%q) = %#x, %v; want %#x", c.in, uint32(got), err, uint32(c.want))
		}
	}
	for _, bad := range []string{"", "estab lished", "open", "established,", "all;"} {
		_, err := ParseStates(bad)
		if err == nil {
			t.Errorf("ParseStates(%q): no error", bad)
			continue
		}
		if !strings.Contains(err.Error(), "listening") || !strings.Contains(err.Error(), "CLOSE_WAIT") {
			t.Errorf("ParseStates(%q): %v does not name the accepted states", bad, err)
		}
	}
}

func FuzzParseStates(f *testing.F) {
	for _, s := range []string{"all", "established,LISTEN", "syn-recv", "", ",", "big,bucket"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		set, err := ParseStates(s)
		if err == nil && (set == 0 || set&^StatesAll != 0) {
			t.Fatalf("ParseStates(%q) = %#x", s, uint32(set))
		}
	})
}

func TestNames(t *testing.T) {
	states := map[State]string{
		StateEstablished: "ESTABLISHED", StateSynSent: "SYN_SENT", StateSynRecv: "SYN_RECV",
		StateFinWait1: "FIN_WAIT1", StateFinWait2: "FIN_WAIT2", StateTimeWait: "TIME_WAIT",
		StateClose: "CLOSE", StateCloseWait: "CLOSE_WAIT", StateLastAck: "LAST_ACK",
		StateListen: "LISTEN", StateClosing: "CLOSING", StateNewSynRecv: "SYN_RECV", 0: "UNKNOWN_0", 200: "UNKNOWN_200",
	}
	for st, want := range states {
		if st.String() != want {
			t.Errorf("State(%d) = %q, want %q", st, st.String(), want)
		}
		// Every name State prints is one ParseStates reads back.
		if !strings.HasPrefix(want, "UNKNOWN") {
			set, err := ParseStates(want)
			if err != nil || !set.Has(st) {
				t.Errorf("ParseStates(%q) = %#x, %v: misses state %d", want, uint32(set), err, st)
			}
		}
	}
	timers := map[Timer]string{
		TimerOff: "off", TimerRetransmit: "retransmit", TimerKeepalive: "keepalive", TimerTimeWait: "timewait",
		TimerPersist: "persist", TimerDelack: "delack", TimerFinWait2: "fin_wait2", 9: "unknown_9",
	}
	for tm, want := range timers {
		if tm.String() != want {
			t.Errorf("Timer(%d) = %q, want %q", tm, tm.String(), want)
		}
	}
}

func TestSocketHelpers(t *testing.T) {
	s := Socket{
		Local:  netip.MustParseAddrPort("10.0.0.1:5000"),
		Remote: netip.MustParseAddrPort("[fd77::2]:80"),
		Cookie: 0x2a,
		State:  StateEstablished,
		Info:   TCPInfo{Len: 280, LastDataSent: 3 * time.Second, LastDataRecv: 5 * time.Second},
	}
	if got := s.ID(); got != "10.0.0.1:5000 -> [fd77::2]:80 cookie 0x2a" {
		t.Errorf("ID = %q", got)
	}
	if s.Idle() != 3*time.Second {
		t.Errorf("Idle = %v, want the lesser of last sent and received (3s)", s.Idle())
	}
	for _, c := range []struct {
		state        State
		timer        Timer
		armed, known bool
	}{
		{StateEstablished, TimerKeepalive, true, true},
		{StateEstablished, TimerOff, false, true},
		{StateEstablished, TimerRetransmit, false, false},
		{StateEstablished, TimerPersist, false, false},
		{StateCloseWait, TimerKeepalive, false, false},
		{StateFinWait2, TimerFinWait2, false, false},
	} {
		s.State, s.Timer = c.state, c.timer
		if armed, known := s.KeepaliveArmed(); armed != c.armed || known != c.known {
			t.Errorf("%s with timer %s: armed %v known %v, want %v %v", c.state, c.timer, armed, known, c.armed, c.known)
		}
	}
	s.Info = TCPInfo{}
	if s.Idle() != 0 {
		t.Errorf("Idle without tcp_info = %v, want 0", s.Idle())
	}
}

// TestBytecode checks the encoding of a filter against the layout of
// include/uapi/linux/inet_diag.h, op by op.
func TestBytecode(t *testing.T) {
	f := &Filter{
		SPort: PortRange{80, 90},
		DPort: PortRange{1024, 65535},
		Src:   netip.MustParsePrefix("10.1.2.3/16"),
		Dst:   netip.MustParsePrefix("fd00::/8"),
	}
	b := f.bytecode()
	// S_GE 80, S_LE 90, D_GE 1024 (no D_LE: 65535 is no bound), S_COND v4, D_COND v6.
	wantLen := 8 + 8 + 8 + (4 + 8 + 4) + (4 + 8 + 16)
	if len(b) != wantLen {
		t.Fatalf("bytecode is %d bytes, want %d", len(b), wantLen)
	}
	type op struct {
		code, yes byte
		no        uint16
	}
	at := func(off int) op {
		return op{b[off], b[off+1], binary.NativeEndian.Uint16(b[off+2:])}
	}
	rest := len(b)
	off := 0
	for _, want := range []struct {
		code byte
		size int
		port uint16
	}{{bcSGE, 8, 80}, {bcSLE, 8, 90}, {bcDGE, 8, 1024}, {bcSCond, 16, 0}, {bcDCond, 28, 0}} {
		got := at(off)
		// True: on to the next op. False: past the end, which rejects.
		if got.code != want.code || int(got.yes) != want.size || int(got.no) != rest+4 {
			t.Fatalf("op at %d = %+v, want code %d yes %d no %d", off, got, want.code, want.size, rest+4)
		}
		if want.size == 8 && binary.NativeEndian.Uint16(b[off+6:]) != want.port {
			t.Fatalf("op at %d compares port %d, want %d", off, binary.NativeEndian.Uint16(b[off+6:]), want.port)
		}
		off += want.size
		rest -= want.size
	}
	// struct inet_diag_hostcond: family, prefix_len, port -1, the masked address.
	src := b[24:40]
	if src[4] != 2 || src[5] != 16 || int32(binary.NativeEndian.Uint32(src[8:])) != -1 || netip.AddrFrom4([4]byte(src[12:16])) != netip.MustParseAddr("10.1.0.0") {
		t.Fatalf("S_COND = % x", src)
	}
	dst := b[40:]
	if dst[4] != 10 || dst[5] != 8 || netip.AddrFrom16([16]byte(dst[12:28])) != netip.MustParseAddr("fd00::") {
		t.Fatalf("D_COND = % x", dst)
	}
	if (&Filter{}).bytecode() != nil || (*Filter)(nil).bytecode() != nil || (&Filter{SPort: PortRange{0, 65535}}).bytecode() != nil {
		t.Fatal("a filter without port or address conditions compiles to bytecode")
	}
}

func TestFilterCheck(t *testing.T) {
	for name, f := range map[string]*Filter{
		"empty port range": {SPort: PortRange{90, 80}},
		"odd family":       {Family: 7},
		"unknown states":   {States: 1 << 20},
	} {
		if err := f.Check(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	for name, f := range map[string]*Filter{
		"nil":        nil,
		"zero":       {},
		"one port":   {DPort: PortRange{443, 443}},
		"all states": {States: StatesAll, Family: FamilyInet6},
	} {
		if err := f.Check(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestTCPInfoOffsets checks the offsets decodeTCPInfo reads against
// golang.org/x/sys/unix.TCPInfo, generated from the kernel's struct tcp_info
// (which leaves out the window-scale bit-field byte, at 6).
func TestTCPInfoOffsets(t *testing.T) {
	var ti unix.TCPInfo
	for _, c := range []struct {
		name string
		ours int
		x    uintptr
	}{
		{"state", tiState, unsafe.Offsetof(ti.State)},
		{"ca_state", tiCAState, unsafe.Offsetof(ti.Ca_state)},
		{"retransmits", tiRetransmits, unsafe.Offsetof(ti.Retransmits)},
		{"probes", tiProbes, unsafe.Offsetof(ti.Probes)},
		{"backoff", tiBackoff, unsafe.Offsetof(ti.Backoff)},
		{"options", tiOptions, unsafe.Offsetof(ti.Options)},
		{"rto", tiRTO, unsafe.Offsetof(ti.Rto)},
		{"ato", tiATO, unsafe.Offsetof(ti.Ato)},
		{"snd_mss", tiSndMSS, unsafe.Offsetof(ti.Snd_mss)},
		{"rcv_mss", tiRcvMSS, unsafe.Offsetof(ti.Rcv_mss)},
		{"unacked", tiUnacked, unsafe.Offsetof(ti.Unacked)},
		{"sacked", tiSacked, unsafe.Offsetof(ti.Sacked)},
		{"lost", tiLost, unsafe.Offsetof(ti.Lost)},
		{"retrans", tiRetrans, unsafe.Offsetof(ti.Retrans)},
		{"last_data_sent", tiLastDataSent, unsafe.Offsetof(ti.Last_data_sent)},
		{"last_ack_sent", tiLastAckSent, unsafe.Offsetof(ti.Last_ack_sent)},
		{"last_data_recv", tiLastDataRecv, unsafe.Offsetof(ti.Last_data_recv)},
		{"last_ack_recv", tiLastAckRecv, unsafe.Offsetof(ti.Last_ack_recv)},
		{"pmtu", tiPMTU, unsafe.Offsetof(ti.Pmtu)},
		{"rtt", tiRTT, unsafe.Offsetof(ti.Rtt)},
		{"rttvar", tiRTTVar, unsafe.Offsetof(ti.Rttvar)},
		{"snd_cwnd", tiSndCwnd, unsafe.Offsetof(ti.Snd_cwnd)},
		{"total_retrans", tiTotalRetrans, unsafe.Offsetof(ti.Total_retrans)},
		{"bytes_acked", tiBytesAcked, unsafe.Offsetof(ti.Bytes_acked)},
		{"bytes_received", tiBytesRecv, unsafe.Offsetof(ti.Bytes_received)},
		{"snd_wnd", tiSndWnd, unsafe.Offsetof(ti.Snd_wnd)},
		{"rcv_wnd", tiRcvWnd, unsafe.Offsetof(ti.Rcv_wnd)},
	} {
		if uintptr(c.ours) != c.x {
			t.Errorf("tcpi_%s at %d, x/sys/unix says %d", c.name, c.ours, c.x)
		}
	}
	if s := unsafe.Sizeof(ti); s != 280 {
		t.Errorf("unix.TCPInfo is %d bytes; this kernel sends 280", s)
	}
}

// TestDestroyErrors maps the errors SOCK_DESTROY answers with, as the netlink
// package returns them; EOPNOTSUPP (a kernel without CONFIG_INET_DIAG_DESTROY)
// cannot be provoked on this kernel.
func TestDestroyErrors(t *testing.T) {
	s := &Socket{Local: netip.MustParseAddrPort("10.0.0.1:1"), Remote: netip.MustParseAddrPort("10.0.0.2:2"), Cookie: 7}
	for _, c := range []struct {
		errno unix.Errno
		is    error
		says  string
	}{
		{unix.ENOENT, ErrNotFound, "already closed"},
		{unix.EOPNOTSUPP, ErrDestroyUnsupported, "CONFIG_INET_DIAG_DESTROY"},
		{unix.EPERM, unix.EPERM, "operation not permitted"},
		{unix.EACCES, unix.EACCES, "permission denied"},
		{unix.EINVAL, unix.EINVAL, "invalid argument"},
	} {
		err := destroyError(s, &netlink.OpError{Op: "receive", Err: c.errno})
		if !errors.Is(err, c.is) || !strings.Contains(err.Error(), c.says) || !strings.Contains(err.Error(), "cookie 0x7") {
			t.Errorf("%v: %v", c.errno, err)
		}
	}
	if destroyError(s, nil) != nil {
		t.Error("success is an error")
	}
}
