package diag

import (
	"encoding/binary"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mdlayher/netlink"

	"github.com/tcpkeep/tcpkeep/internal/testnet"
)

var capture = flag.Bool("capture", false, "capture sock_diag dumps of the test scenario from this kernel into testdata/")

// Fixtures: the netlink messages (struct nlmsghdr and its payload) of real
// SOCK_DIAG_BY_FAMILY dumps of buildScenario's namespaces, as this kernel sent
// them, one after the other. Regenerate with
//
//	go test ./diag -run TestCaptureFixtures -capture
var fixtures = []string{"testdata/scenario-ipv4.nl", "testdata/scenario-ipv6.nl"}

// TestCaptureFixtures writes the fixtures (only with -capture).
func TestCaptureFixtures(t *testing.T) {
	if !*capture {
		t.Skip("run with -capture to write testdata/ from this kernel")
	}
	for i, v6 := range []bool{false, true} {
		sc := buildScenario(t, v6)
		var out []byte
		for _, ns := range []*testnet.NS{sc.Live.A, sc.Live.B, sc.Gone.A} {
			c := dialNS(t, ns)
			if ns == sc.Gone.A {
				waitSocket(t, c, "a retransmission", func(s *Socket) bool { return s.Timer == TimerRetransmit && s.TimerRetrans >= 1 })
			} else if ns == sc.Live.A {
				waitSocket(t, c, "a persist timer", func(s *Socket) bool { return s.Timer == TimerPersist })
				waitSocket(t, c, "FIN_WAIT2", func(s *Socket) bool { return s.State == StateFinWait2 })
				waitSocket(t, c, "an armed keepalive timer", func(s *Socket) bool {
					return s.State == StateEstablished && s.Timer == TimerKeepalive
				})
			}
			fam := FamilyInet
			if v6 {
				fam = FamilyInet6
			}
			typ, data := request(fam, StatesAll, nil)
			if _, err := c.nl.Send(netlink.Message{
				Header: netlink.Header{Type: typ, Flags: netlink.Request | netlink.Dump},
				Data:   data,
			}); err != nil {
				t.Fatal(err)
			}
			for m, err := range c.nl.ReceiveIter() {
				if err != nil {
					t.Fatal(err)
				}
				b, err := m.MarshalBinary()
				if err != nil {
					t.Fatal(err)
				}
				out = append(out, b...)
			}
		}
		if err := os.MkdirAll(filepath.Dir(fixtures[i]), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(fixtures[i], out, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// fixtureMessages returns the payloads of a fixture's netlink messages.
func fixtureMessages(t testing.TB, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var msgs [][]byte
	for len(b) > 0 {
		n := int(binary.NativeEndian.Uint32(b))
		if n < 16 || n > len(b) {
			t.Fatalf("%s: bad netlink message length %d", path, n)
		}
		msgs = append(msgs, b[16:n])
		b = b[(n+3)&^3:]
	}
	return msgs
}

// decodeFixture decodes every message of a fixture, keyed by the port that
// says which scenario socket it is (the local port for LISTEN and for the
// server's end, else the remote port).
func decodeFixture(t testing.TB, path string) map[string]Socket {
	t.Helper()
	out := map[string]Socket{}
	for _, m := range fixtureMessages(t, path) {
		var s Socket
		if err := decode(m, &s); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		end := "client"
		if s.Local.Port() >= portKeepalive && s.Local.Port() <= portSynSent {
			end = "server"
		}
		if s.State == StateListen {
			end = "listen"
		}
		out[end+" "+s.State.String()+" "+s.Timer.String()] = s
	}
	return out
}

// TestDecodeFixtures reads real dumps of this kernel, and shows what each kind
// of socket looks like to diag.
func TestDecodeFixtures(t *testing.T) {
	for _, path := range fixtures {
		t.Run(filepath.Base(path), func(t *testing.T) {
			socks := decodeFixture(t, path)
			get := func(key string) Socket {
				t.Helper()
				s, ok := socks[key]
				if !ok {
					keys := make([]string, 0, len(socks))
					for k := range socks {
						keys = append(keys, k)
					}
					t.Fatalf("no %q in the fixture; it has %q", key, keys)
				}
				return s
			}

			// A listener: its queues are the accept queue and the backlog.
			l := get("listen LISTEN off")
			if l.SendQ != 4096 || l.RecvQ != 0 || !l.Remote.Addr().IsUnspecified() || l.Remote.Port() != 0 {
				t.Errorf("listener: %s recv_q %d send_q %d, want an unconnected socket with backlog 4096", l.ID(), l.RecvQ, l.SendQ)
			}
			// Keepalive armed on an idle ESTABLISHED socket: the timer says so.
			ka := get("client ESTABLISHED keepalive")
			if armed, known := ka.KeepaliveArmed(); !armed || !known || ka.Remote.Port() != portKeepalive {
				t.Errorf("keepalive socket %s: armed %v known %v", ka.ID(), armed, known)
			}
			if ka.TimerExpires <= 0 || ka.TimerExpires > time.Second {
				t.Errorf("keepalive 1 s: expires in %v", ka.TimerExpires)
			}
			// An orphaned FIN_WAIT2 socket with its own timeout.
			fw := get("client FIN_WAIT2 fin_wait2")
			if fw.Inode != 0 || fw.Remote.Port() != portCloseWait {
				t.Errorf("FIN_WAIT2 %s: inode %d, want 0 (orphaned)", fw.ID(), fw.Inode)
			}
			// Go turns keepalive on for the connections a listener accepts (15 s).
			get("server CLOSE_WAIT keepalive")
			// A timewait minisocket has no tcp_info.
			tw := get("client TIME_WAIT timewait")
			if tw.Info.Len != 0 || tw.Info.RTT != 0 || tw.TimerExpires < 50*time.Second {
				t.Errorf("TIME_WAIT %s: tcp_info %d bytes, expires %v", tw.ID(), tw.Info.Len, tw.TimerExpires)
			}
			// A SYN to nobody, made by uid 1000.
			ss := get("client SYN_SENT retransmit")
			if ss.UID != 1000 || ss.Info.Unacked != 1 {
				t.Errorf("SYN_SENT %s: uid %d unacked %d", ss.ID(), ss.UID, ss.Info.Unacked)
			}
			// The peer's window is shut: the persist timer probes it.
			p := get("client ESTABLISHED persist")
			if p.SendQ == 0 || p.Info.SndWscale == p.Info.RcvWscale {
				t.Errorf("persist %s: send_q %d, wscale %d,%d (the tiny receive buffer scales less)", p.ID(), p.SendQ, p.Info.SndWscale, p.Info.RcvWscale)
			}
			// Data in flight to a vanished peer.
			r := get("client ESTABLISHED retransmit")
			if r.TimerRetrans < 1 || r.Info.Unacked == 0 || r.Info.Retransmits < 1 || r.Info.Backoff < 1 {
				t.Errorf("retransmitting %s: timer retrans %d, unacked %d, retransmits %d", r.ID(), r.TimerRetrans, r.Info.Unacked, r.Info.Retransmits)
			}
			// This kernel sends all of struct tcp_info.
			if r.Info.Len != 280 || r.Info.RTT == 0 || r.Info.SndMSS == 0 {
				t.Errorf("tcp_info: %d bytes, rtt %v, mss %d", r.Info.Len, r.Info.RTT, r.Info.SndMSS)
			}
		})
	}
}

// TestShortTCPInfo cuts a fixture's tcp_info to what an older kernel sends
// (104 bytes: up to tcpi_total_retrans) and checks the fields beyond it are zero
// and the ones within it unchanged.
func TestShortTCPInfo(t *testing.T) {
	for _, m := range fixtureMessages(t, fixtures[0]) {
		var full Socket
		if err := decode(m, &full); err != nil {
			t.Fatal(err)
		}
		if full.Info.Len == 0 || full.Info.BytesAcked == 0 || full.Info.SndWnd == 0 {
			continue
		}
		short := shortenInfo(t, m, 104)
		var s Socket
		if err := decode(short, &s); err != nil {
			t.Fatal(err)
		}
		want := full.Info
		want.Len = 104
		want.BytesAcked, want.BytesRecv, want.SndWnd, want.RcvWnd = 0, 0, 0, 0
		if s.Info != want {
			t.Fatalf("short tcp_info:\n got %+v\nwant %+v", s.Info, want)
		}
		if s.Cookie != full.Cookie || s.State != full.State {
			t.Fatal("shortening tcp_info changed the message")
		}
		// Cut inside a field: the field is unknown, not garbage.
		s2 := Socket{}
		if err := decode(shortenInfo(t, m, tiRTT+2), &s2); err != nil {
			t.Fatal(err)
		}
		if s2.Info.RTT != 0 || s2.Info.PMTU != full.Info.PMTU {
			t.Fatalf("cut inside tcpi_rtt: rtt %v pmtu %d", s2.Info.RTT, s2.Info.PMTU)
		}
		return
	}
	t.Fatal("no socket with a full tcp_info in the fixture")
}

// shortenInfo rewrites message m with its INET_DIAG_INFO attribute cut to n
// bytes.
func shortenInfo(t testing.TB, m []byte, n int) []byte {
	t.Helper()
	out := append([]byte(nil), m[:msgLen]...)
	b := m[msgLen:]
	for len(b) >= 4 {
		l := int(binary.NativeEndian.Uint16(b))
		typ := binary.NativeEndian.Uint16(b[2:])
		pad := min((l+3)&^3, len(b))
		if typ == attrInfo {
			a := make([]byte, 4+n, (4+n+3)&^3)
			binary.NativeEndian.PutUint16(a, uint16(4+n))
			binary.NativeEndian.PutUint16(a[2:], attrInfo)
			copy(a[4:], b[4:4+n])
			out = append(out, a[:cap(a)]...)
		} else {
			out = append(out, b[:pad]...)
		}
		b = b[pad:]
	}
	return out
}

// TestDecodeMalformed checks that broken messages are errors, never panics or
// silently half-read sockets.
func TestDecodeMalformed(t *testing.T) {
	good := fixtureMessages(t, fixtures[0])[0]
	cases := map[string][]byte{
		"empty":                 {},
		"short inet_diag_msg":   good[:msgLen-1],
		"unknown family":        append([]byte{99}, good[1:]...),
		"attribute overrun":     append(append([]byte(nil), good[:msgLen]...), 0xff, 0x00, 2, 0, 1, 2, 3, 4),
		"attribute length < 4":  append(append([]byte(nil), good[:msgLen]...), 2, 0, 2, 0),
		"trailing partial attr": append(append([]byte(nil), good...), 1, 2),
	}
	for name, b := range cases {
		var s Socket
		if err := decode(b, &s); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// FuzzDecode: any bytes decode to a socket or an error, never a panic.
func FuzzDecode(f *testing.F) {
	for _, path := range fixtures {
		b, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		for len(b) >= 16 {
			n := int(binary.NativeEndian.Uint32(b))
			if n < 16 || n > len(b) {
				break
			}
			f.Add(b[16:n])
			b = b[(n+3)&^3:]
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var s Socket
		if err := decode(b, &s); err != nil {
			return
		}
		if s.Family != FamilyInet && s.Family != FamilyInet6 {
			t.Fatalf("decoded family %d", s.Family)
		}
		if s.Info.Len < 0 || s.Info.Len > len(b) {
			t.Fatalf("tcp_info length %d of a %d-byte message", s.Info.Len, len(b))
		}
		_ = s.ID()
	})
}

// BenchmarkDecode decodes the fixture's messages: no allocation per socket.
func BenchmarkDecode(b *testing.B) {
	msgs := fixtureMessages(b, fixtures[0])
	var s Socket
	b.ReportAllocs()
	for b.Loop() {
		for _, m := range msgs {
			if err := decode(m, &s); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(msgs)), "ns/socket")
}
