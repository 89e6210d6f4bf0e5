package diag

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tcpkeep/tcpkeep/internal/testnet"
)

// ssSocket is what `ss -atinoeH` prints about one socket. Fields ss leaves out
// when they are zero are zero here too.
type ssSocket struct {
	line                 string
	state                State
	recvQ, sendQ         uint32
	local, remote        netip.AddrPort
	timer                string // ss's names: on (retransmit), keepalive, timewait, persist, unknown; "" = off
	expires              time.Duration
	retrans              uint8
	uid, inode           uint32
	cookie               uint64
	hasInfo              bool
	rto, rtt, rttvar     float64 // ms
	ato                  float64
	mss, rcvmss, pmtu    uint32
	cwnd                 uint32
	sndWscale, rcvWscale int
	hasWscale            bool
	lastsnd, lastrcv     uint32 // ms
	lastack              uint32
	unacked              uint32
	retransOut           uint32 // retrans:A/B: A is tcpi_retrans
	totalRetrans         uint32 // B is tcpi_total_retrans
	lost                 uint32
	backoff              uint32
	bytesAcked           uint64
	bytesReceived        uint64
}

var ssStates = map[string]State{
	"ESTAB": StateEstablished, "SYN-SENT": StateSynSent, "SYN-RECV": StateSynRecv,
	"FIN-WAIT-1": StateFinWait1, "FIN-WAIT-2": StateFinWait2, "TIME-WAIT": StateTimeWait,
	"UNCONN": StateClose, "CLOSE-WAIT": StateCloseWait, "LAST-ACK": StateLastAck,
	"LISTEN": StateListen, "CLOSING": StateClosing,
}

// runSS runs ss inside ns (a process forked from a thread in ns starts in ns).
func runSS(t testing.TB, ns *testnet.NS, args ...string) []byte {
	t.Helper()
	var out []byte
	ns.Do(func() (err error) {
		out, err = exec.Command("ss", args...).Output()
		return err
	})
	return out
}

// parseSS reads `ss -atinoeH` output: a line per socket, then, for sockets
// with tcp_info, a line that starts with a tab.
func parseSS(t testing.TB, out []byte) map[uint64]*ssSocket {
	t.Helper()
	socks := map[uint64]*ssSocket{}
	var cur *ssSocket
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		if line[0] == '\t' || line[0] == ' ' {
			if cur == nil {
				t.Fatalf("ss: info line before any socket: %q", line)
			}
			cur.line += "\n" + line
			cur.hasInfo = true
			parseSSInfo(t, cur, strings.Fields(line))
			continue
		}
		cur = parseSSLine(t, line)
		socks[cur.cookie] = cur
	}
	return socks
}

func parseSSLine(t testing.TB, line string) *ssSocket {
	t.Helper()
	f := strings.Fields(line)
	if len(f) < 5 {
		t.Fatalf("ss: short line %q", line)
	}
	s := &ssSocket{line: line}
	var ok bool
	if s.state, ok = ssStates[f[0]]; !ok {
		t.Fatalf("ss: unknown state in %q", line)
	}
	s.recvQ = uint32(mustUint(t, f[1]))
	s.sendQ = uint32(mustUint(t, f[2]))
	s.local = parseSSAddr(t, f[3])
	s.remote = parseSSAddr(t, f[4])
	for _, tok := range f[5:] {
		k, v, _ := strings.Cut(tok, ":")
		switch k {
		case "timer":
			// timer:(NAME,EXPIRES,RETRANS)
			parts := strings.Split(strings.Trim(v, "()"), ",")
			if len(parts) != 3 {
				t.Fatalf("ss: bad timer %q", tok)
			}
			s.timer = parts[0]
			s.expires = parseSSTimer(t, parts[1])
			s.retrans = uint8(mustUint(t, parts[2]))
		case "uid":
			s.uid = uint32(mustUint(t, v))
		case "ino":
			s.inode = uint32(mustUint(t, v))
		case "sk":
			c, err := strconv.ParseUint(v, 16, 64)
			if err != nil {
				t.Fatalf("ss: bad cookie %q", tok)
			}
			s.cookie = c
		}
	}
	return s
}

func parseSSInfo(t testing.TB, s *ssSocket, f []string) {
	t.Helper()
	ms := func(v string) float64 {
		x, err := strconv.ParseFloat(v, 64)
		if err != nil {
			t.Fatalf("ss: bad number %q in %q", v, s.line)
		}
		return x
	}
	for _, tok := range f {
		k, v, _ := strings.Cut(tok, ":")
		switch k {
		case "rto":
			s.rto = ms(v)
		case "ato":
			s.ato = ms(v)
		case "rtt":
			a, b, _ := strings.Cut(v, "/")
			s.rtt, s.rttvar = ms(a), ms(b)
		case "mss":
			s.mss = uint32(mustUint(t, v))
		case "rcvmss":
			s.rcvmss = uint32(mustUint(t, v))
		case "pmtu":
			s.pmtu = uint32(mustUint(t, v))
		case "cwnd":
			s.cwnd = uint32(mustUint(t, v))
		case "wscale":
			a, b, _ := strings.Cut(v, ",")
			s.sndWscale, s.rcvWscale, s.hasWscale = int(mustUint(t, a)), int(mustUint(t, b)), true
		case "lastsnd":
			s.lastsnd = uint32(mustUint(t, v))
		case "lastrcv":
			s.lastrcv = uint32(mustUint(t, v))
		case "lastack":
			s.lastack = uint32(mustUint(t, v))
		case "unacked":
			s.unacked = uint32(mustUint(t, v))
		case "retrans":
			a, b, _ := strings.Cut(v, "/")
			s.retransOut, s.totalRetrans = uint32(mustUint(t, a)), uint32(mustUint(t, b))
		case "lost":
			s.lost = uint32(mustUint(t, v))
		case "backoff":
			s.backoff = uint32(mustUint(t, v))
		case "bytes_acked":
			s.bytesAcked = mustUint(t, v)
		case "bytes_received":
			s.bytesReceived = mustUint(t, v)
		}
	}
}

func mustUint(t testing.TB, s string) uint64 {
	t.Helper()
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		t.Fatalf("ss: %q is not a number", s)
	}
	return n
}

// parseSSAddr reads "10.0.0.1:80", "[fd77::1]:80", "0.0.0.0:*", "[::]:*", with
// an optional "%ifname" after the address.
func parseSSAddr(t testing.TB, s string) netip.AddrPort {
	t.Helper()
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		t.Fatalf("ss: bad address %q", s)
	}
	host, port := s[:i], s[i+1:]
	host = strings.Trim(host, "[]")
	if j := strings.IndexByte(host, '%'); j >= 0 {
		host = host[:j]
	}
	host = strings.Trim(host, "[]")
	if host == "*" {
		host = "0.0.0.0"
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		t.Fatalf("ss: bad address %q: %v", s, err)
	}
	var p uint64
	if port != "*" {
		p = mustUint(t, port)
	}
	return netip.AddrPortFrom(a, uint16(p))
}

// parseSSTimer reads ss's print_ms_timer format: "1min30sec", "15sec",
// "1.500ms" (1 s 500 ms), "200ms", or "" for 0.
func parseSSTimer(t testing.TB, s string) time.Duration {
	t.Helper()
	var d time.Duration
	num := func(v string) time.Duration {
		if v == "" {
			return 0
		}
		return time.Duration(mustUint(t, v))
	}
	if m, rest, ok := strings.Cut(s, "min"); ok {
		d += num(m) * time.Minute
		s = rest
	}
	if sec, rest, ok := strings.Cut(s, "sec"); ok {
		d += num(sec) * time.Second
		s = rest
	} else if sec, rest, ok := strings.Cut(s, "."); ok {
		d += num(sec) * time.Second
		s = rest
	}
	if m, ok := strings.CutSuffix(s, "ms"); ok {
		d += num(m) * time.Millisecond
	} else if s != "" {
		t.Fatalf("ss: bad timer expiry %q", s)
	}
	return d
}

// ssTimerName is how ss names a timer: it calls retransmit "on", knows no
// delack, and sees the FIN_WAIT2 timer as the keepalive timer it shares code
// with.
func ssTimerName(tm Timer) string {
	switch tm {
	case TimerOff:
		return ""
	case TimerRetransmit:
		return "on"
	case TimerKeepalive, TimerFinWait2:
		return "keepalive"
	case TimerTimeWait:
		return "timewait"
	case TimerPersist:
		return "persist"
	}
	return "unknown"
}

// ssRound drops the precision ss's print_ms_timer drops: the milliseconds
// from 10 s on, the seconds from 10 min on.
func ssRound(d time.Duration) time.Duration {
	ms := d.Milliseconds()
	secs, msecs := ms/1000, ms%1000
	mins := secs / 60
	secs %= 60
	if mins > 0 {
		msecs = 0
		if mins > 9 {
			secs = 0
		}
	}
	if secs > 9 {
		msecs = 0
	}
	return time.Duration(mins*60000+secs*1000+msecs) * time.Millisecond
}

// g is x as C's printf("%g") shows it: 6 significant digits.
func g(x float64) float64 {
	y, _ := strconv.ParseFloat(strconv.FormatFloat(x, 'g', 6, 64), 64)
	return y
}

// compareSS lists every difference between a diag socket and ss's view of it.
// Fields that count time (timer expiry, lastsnd, ...) may differ by as much as
// elapsed between the start of diag's dump and the end of ss's.
func compareSS(d *Socket, s *ssSocket, elapsed time.Duration) []string {
	slack := elapsed.Milliseconds() + 20
	var diffs []string
	diff := func(field string, got, want any) {
		diffs = append(diffs, fmt.Sprintf("%s: diag %v, ss %v", field, got, want))
	}
	near := func(field string, got, want int64, slack int64) {
		if got-want > slack || want-got > slack {
			diff(field, got, want)
		}
	}
	if d.State != s.state && !(d.State == StateNewSynRecv && s.state == StateSynRecv) {
		diff("state", d.State, s.state)
	}
	if d.Local != s.local {
		diff("local", d.Local, s.local)
	}
	if d.Remote != s.remote {
		diff("remote", d.Remote, s.remote)
	}
	if d.RecvQ != s.recvQ {
		diff("recv_q", d.RecvQ, s.recvQ)
	}
	if d.SendQ != s.sendQ {
		diff("send_q", d.SendQ, s.sendQ)
	}
	if ssTimerName(d.Timer) != s.timer {
		diff("timer", d.Timer, s.timer)
	}
	if s.timer != "" {
		// Truncated to seconds (or minutes), a value just past a boundary
		// may read one unit apart.
		unit := int64(0)
		switch {
		case s.expires >= 10*time.Minute:
			unit = 60000
		case s.expires >= 10*time.Second:
			unit = 1000
		}
		near("timer expires (ms)", ssRound(d.TimerExpires).Milliseconds(), s.expires.Milliseconds(), slack+unit)
		if d.TimerRetrans != s.retrans {
			diff("timer retrans", d.TimerRetrans, s.retrans)
		}
	}
	if d.UID != s.uid {
		diff("uid", d.UID, s.uid)
	}
	if d.Inode != s.inode {
		diff("inode", d.Inode, s.inode)
	}
	if (d.Info.Len > 0) != s.hasInfo {
		diff("has tcp_info", d.Info.Len > 0, s.hasInfo)
	}
	if !s.hasInfo {
		return diffs
	}
	i := &d.Info
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	// ss leaves rto out when it is 3 s (TCP_TIMEOUT_INIT) and rtt when it is 0.
	if rto := g(ms(i.RTO)); (s.rto != 0 || rto != 3000) && rto != s.rto {
		diff("rto (ms)", rto, s.rto)
	}
	// ss prints rtt with %g (6 digits), and not at all when it is 0.
	if g(ms(i.RTT)) != s.rtt || (s.rtt != 0 && g(ms(i.RTTVar)) != s.rttvar) {
		diff("rtt/rttvar (ms)", fmt.Sprint(ms(i.RTT), "/", ms(i.RTTVar)), fmt.Sprint(s.rtt, "/", s.rttvar))
	}
	if g(ms(i.ATO)) != s.ato {
		diff("ato (ms)", ms(i.ATO), s.ato)
	}
	if i.SndMSS != s.mss && s.mss != 0 {
		diff("mss", i.SndMSS, s.mss)
	}
	if i.RcvMSS != s.rcvmss && s.rcvmss != 0 {
		diff("rcvmss", i.RcvMSS, s.rcvmss)
	}
	if i.PMTU != s.pmtu && s.pmtu != 0 {
		diff("pmtu", i.PMTU, s.pmtu)
	}
	if i.SndCwnd != s.cwnd && s.cwnd != 0 {
		diff("cwnd", i.SndCwnd, s.cwnd)
	}
	if s.hasWscale && (int(i.SndWscale) != s.sndWscale || int(i.RcvWscale) != s.rcvWscale) {
		diff("wscale snd,rcv", fmt.Sprint(i.SndWscale, ",", i.RcvWscale), fmt.Sprint(s.sndWscale, ",", s.rcvWscale))
	}
	near("lastsnd (ms)", i.LastDataSent.Milliseconds(), int64(s.lastsnd), slack)
	near("lastrcv (ms)", i.LastDataRecv.Milliseconds(), int64(s.lastrcv), slack)
	near("lastack (ms)", i.LastAckRecv.Milliseconds(), int64(s.lastack), slack)
	if i.Unacked != s.unacked && d.State != StateListen { // LISTEN: ss prints no unacked
		diff("unacked", i.Unacked, s.unacked)
	}
	if i.Retrans != s.retransOut || i.TotalRetrans != s.totalRetrans {
		diff("retrans", fmt.Sprint(i.Retrans, "/", i.TotalRetrans), fmt.Sprint(s.retransOut, "/", s.totalRetrans))
	}
	if i.Lost != s.lost {
		diff("lost", i.Lost, s.lost)
	}
	// ss shows tcpi_retransmits as the retransmit timer's count.
	if d.Timer == TimerRetransmit && d.State != StateSynRecv && uint8(i.Retransmits) != s.retrans {
		diff("retransmits", i.Retransmits, s.retrans)
	}
	if uint32(i.Backoff) != s.backoff {
		diff("backoff", i.Backoff, s.backoff)
	}
	if i.BytesAcked != s.bytesAcked && s.bytesAcked != 0 {
		diff("bytes_acked", i.BytesAcked, s.bytesAcked)
	}
	if i.BytesRecv != s.bytesReceived {
		diff("bytes_received", i.BytesRecv, s.bytesReceived)
	}
	return diffs
}

// matchSS dumps ns with diag and with ss and compares every socket and every
// field both show. Sockets change between the two dumps (timers fire, probes
// go out), so a round with differences is tried again, for up to 2 s.
func matchSS(t *testing.T, ns *testnet.NS, c *Conn) (diagSocks []Socket, ss map[uint64]*ssSocket) {
	t.Helper()
	var problems []string
	if testnet.Poll(2*time.Second, func() bool {
		problems = problems[:0]
		start := time.Now()
		diagSocks = dumpAll(t, c, nil)
		ss = parseSS(t, runSS(t, ns, "-atinoeH"))
		elapsed := time.Since(start)
		if len(diagSocks) != len(ss) {
			problems = append(problems, fmt.Sprintf("diag has %d sockets, ss %d", len(diagSocks), len(ss)))
		}
		for i := range diagSocks {
			d := &diagSocks[i]
			s, ok := ss[d.Cookie]
			if !ok {
				problems = append(problems, fmt.Sprintf("%s (%s): not in ss", d.ID(), d.State))
				continue
			}
			for _, p := range compareSS(d, s, elapsed) {
				problems = append(problems, fmt.Sprintf("%s (%s): %s\n\tss: %s", d.ID(), d.State, p, s.line))
			}
		}
		return len(problems) == 0
	}) {
		return diagSocks, ss
	}
	t.Fatalf("diag and ss disagree in netns %s:\n%s", ns.Name, strings.Join(problems, "\n"))
	return nil, nil
}
