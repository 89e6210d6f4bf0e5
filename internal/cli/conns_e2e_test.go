package cli

import (
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpkeep/tcpkeep/internal/testnet"
)

// connsRecords splits conns' ndjson output into its socket records and its
// summary, which must come last.
func connsRecords(t *testing.T, out string) (sockets []map[string]any, summary map[string]any) {
	t.Helper()
	for _, m := range records(t, out, "") {
		switch m["type"] {
		case "socket":
			if summary != nil {
				t.Fatalf("socket record after the summary: %v", m)
			}
			sockets = append(sockets, m)
		case "conns_summary":
			summary = m
		default:
			t.Fatalf("unexpected record type: %v", m)
		}
	}
	if summary == nil {
		t.Fatalf("no summary line in:\n%s", out)
	}
	return sockets, summary
}

func byLocal(socks []map[string]any, local string) map[string]any {
	for _, s := range socks {
		if s["local"] == local {
			return s
		}
	}
	return nil
}

func localOf(c net.Conn) string { return c.LocalAddr().(*net.TCPAddr).AddrPort().String() }

// ssCount counts the TCP sockets ss sees in the namespace, in all states.
func ssCount(t *testing.T, ns string) int {
	out, err := exec.Command("ip", "netns", "exec", ns, "ss", "-tanH").Output()
	if err != nil {
		t.Fatalf("ss: %v", err)
	}
	return strings.Count(string(out), "\n")
}

// TestConnsEndToEnd builds tcpkeep, puts known sockets in a namespace and reads
// them back through `tcpkeep --netns NAME conns`.
func TestConnsEndToEnd(t *testing.T) {
	p := testnet.NewPair(t)
	l4 := p.B.Listen("10.77.0.2:7070")
	l6 := p.B.Listen("[fd77::2]:7070")
	go acceptAll(l4)
	go acceptAll(l6)
	ka := p.A.Dial("10.77.0.2:7070", testnet.Keepalive(3*time.Second, time.Second, 5))
	plain := p.A.Dial("10.77.0.2:7070")
	ka6 := p.A.Dial("[fd77::2]:7070", testnet.Keepalive(20*time.Second, 2*time.Second, 4),
		testnet.Control(func(fd int) error { return unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, 7000) }))
	cookie := testnet.Cookie(t, ka)

	// The pending timer settles to keepalive once the handshake's ACKs are done.
	var socks []map[string]any
	var summary map[string]any
	var r result
	if !testnet.Poll(5*time.Second, func() bool {
		r = runBin(t, "--netns", p.A.Name, "conns", "-o", "ndjson", "-p", "--sockopts")
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		socks, summary = connsRecords(t, r.stdout)
		s := byLocal(socks, localOf(ka))
		return s != nil && s["timer"] == "keepalive"
	}) {
		t.Fatalf("no keepalive timer on %s in:\n%s", localOf(ka), r.stdout)
	}
	if len(socks) != 3 || summary["sockets"] != 3.0 {
		t.Fatalf("%d socket records, summary %v; want the 3 connections", len(socks), summary)
	}
	if bs, _ := summary["by_state"].(map[string]any); bs["ESTABLISHED"] != 3.0 {
		t.Errorf("by_state %v, want 3 ESTABLISHED", summary["by_state"])
	}
	pid := float64(os.Getpid())
	comm, _ := os.ReadFile("/proc/self/comm")
	for _, tc := range []struct {
		name   string
		c      net.Conn
		remote string
		family string
		ka     bool
		opts   map[string]float64
	}{
		{"keepalive", ka, "10.77.0.2:7070", "inet", true, map[string]float64{"keepidle_s": 3, "keepintvl_s": 1, "keepcnt": 5, "user_timeout_ms": 0}},
		{"no keepalive", plain, "10.77.0.2:7070", "inet", false, nil},
		{"keepalive ipv6 user timeout", ka6, "[fd77::2]:7070", "inet6", true, map[string]float64{"keepidle_s": 20, "keepintvl_s": 2, "keepcnt": 4, "user_timeout_ms": 7000}},
	} {
		s := byLocal(socks, localOf(tc.c))
		if s == nil {
			t.Errorf("%s: no record for %s", tc.name, localOf(tc.c))
			continue
		}
		if s["state"] != "ESTABLISHED" || s["remote"] != tc.remote || s["family"] != tc.family || s["netns"] != p.A.Name {
			t.Errorf("%s: state %v remote %v family %v netns %v", tc.name, s["state"], s["remote"], s["family"], s["netns"])
		}
		if s["pid"] != pid || s["comm"] != strings.TrimSpace(string(comm)) {
			t.Errorf("%s: pid %v comm %v, want %v %q", tc.name, s["pid"], s["comm"], pid, comm)
		}
		if s["so_keepalive"] != tc.ka {
			t.Errorf("%s: so_keepalive %v, want %v", tc.name, s["so_keepalive"], tc.ka)
		}
		for k, v := range tc.opts {
			if s[k] != v {
				t.Errorf("%s: %s = %v, want %v", tc.name, k, s[k], v)
			}
		}
		if idle, ok := s["idle_ms"].(float64); !ok || idle < 0 || idle > 60000 {
			t.Errorf("%s: idle_ms %v", tc.name, s["idle_ms"])
		}
	}
	if s := byLocal(socks, localOf(ka)); s["keepalive"] != true || s["cookie"] != sprintf16(cookie) {
		t.Errorf("keepalive socket: keepalive %v cookie %v, want true %s", s["keepalive"], s["cookie"], sprintf16(cookie))
	}
	if s := byLocal(socks, localOf(plain)); s["timer"] == "off" && s["keepalive"] != false {
		t.Errorf("socket without keepalive, timer off: keepalive %v, want false", s["keepalive"])
	}

	t.Run("all states match ss", func(t *testing.T) {
		r := runBin(t, "--netns", p.B.Name, "conns", "--state", "all", "-o", "ndjson")
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		socks, _ := connsRecords(t, r.stdout)
		if n := ssCount(t, p.B.Name); len(socks) != n || n != 5 {
			t.Errorf("%d records, ss sees %d; want 5 (2 listeners, 3 accepted)", len(socks), n)
		}
	})
	t.Run("filters", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			want int
		}{
			{[]string{"-4"}, 2},
			{[]string{"-6"}, 1},
			{[]string{"--dport", "7070"}, 3},
			{[]string{"--dport", "1-7069"}, 0},
			{[]string{"--dst", "fd77::/64"}, 1},
			{[]string{"--src", "10.77.0.1"}, 2},
			{[]string{"--state", "listening"}, 0},
			{[]string{"--sport", localPortOf(plain)}, 1},
		} {
			args := append([]string{"--netns", p.A.Name, "conns", "-o", "ndjson"}, tc.args...)
			r := runBin(t, args...)
			if r.code != 0 {
				t.Fatalf("%v: exit %d: %s", tc.args, r.code, r.stderr)
			}
			if socks, _ := connsRecords(t, r.stdout); len(socks) != tc.want {
				t.Errorf("%v: %d records, want %d", tc.args, len(socks), tc.want)
			}
		}
	})
	t.Run("json document", func(t *testing.T) {
		r := runBin(t, "--netns", p.A.Name, "conns", "-o", "json")
		var doc struct {
			Type    string           `json:"type"`
			Sockets []map[string]any `json:"sockets"`
			Summary map[string]any   `json:"summary"`
		}
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &doc) != nil || doc.Type != "conns" || len(doc.Sockets) != 3 || doc.Summary["sockets"] != 3.0 {
			t.Errorf("exit %d, stderr %q, document:\n%s", r.code, r.stderr, r.stdout)
		}
	})
	t.Run("table", func(t *testing.T) {
		r := runBin(t, "--netns", p.A.Name, "conns", "-p")
		out := r.stdout
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if r.code != 0 || len(lines) != 6 || !strings.HasPrefix(lines[0], "STATE") || !strings.Contains(out, "3 sockets: 3 ESTABLISHED") {
			t.Fatalf("exit %d, table:\n%s", r.code, out)
		}
		var kaLine string
		for _, l := range lines {
			if strings.Contains(l, localOf(ka)+" ") {
				kaLine = l
			}
		}
		if !strings.Contains(kaLine, " yes ") || !strings.Contains(kaLine, " in ") {
			t.Errorf("keepalive connection's row does not say keepalive yes and the next probe:\n%s", kaLine)
		}
	})
}

func localPortOf(c net.Conn) string {
	_, port, _ := net.SplitHostPort(c.LocalAddr().String())
	return port
}

func sprintf16(v uint64) string {
	const hex = "0123456789abcdef"
	b := make([]byte, 16)
	for i := 15; i >= 0; i-- {
		b[i] = hex[v&0xf]
		v >>= 4
	}
	return string(b)
}

// acceptAll accepts until the listener closes and keeps the connections open.
func acceptAll(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
	}
}

// TestConnsVanishedPeer: keepalive probes to a peer whose link went down go
// unanswered; conns shows them counting up, and the table says which probe comes
// next out of how many.
func TestConnsVanishedPeer(t *testing.T) {
	p := testnet.NewPair(t)
	l := p.B.Listen("10.77.0.2:7071")
	go acceptAll(l)
	c := p.A.Dial("10.77.0.2:7071", testnet.Keepalive(time.Second, time.Second, 30))
	p.B.LinkDown()

	var s map[string]any
	var r result
	if !testnet.Poll(10*time.Second, func() bool {
		r = runBin(t, "--netns", p.A.Name, "conns", "-o", "ndjson", "--sockopts", "--dport", "7071")
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		socks, _ := connsRecords(t, r.stdout)
		s = byLocal(socks, localOf(c))
		return s != nil && s["timer"] == "keepalive" && s["timer_retrans"].(float64) >= 2
	}) {
		t.Fatalf("no unanswered keepalive probes after 10s:\n%s", r.stdout)
	}
	if s["keepalive"] != true || s["so_keepalive"] != true || s["keepcnt"] != 30.0 || s["probes"].(float64) < 1 {
		t.Errorf("record: keepalive %v so_keepalive %v keepcnt %v probes %v", s["keepalive"], s["so_keepalive"], s["keepcnt"], s["probes"])
	}
	r = runBin(t, "--netns", p.A.Name, "conns", "--sockopts", "--dport", "7071")
	if r.code != 0 || !strings.Contains(r.stdout, " of 30)") || !strings.Contains(r.stdout, "(probe ") {
		t.Errorf("the table does not say which probe comes next of 30:\n%s", r.stdout)
	}
}
