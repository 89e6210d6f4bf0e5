package report

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tcpkeep/tcpkeep/diag"
	"github.com/tcpkeep/tcpkeep/internal/proc"
	"github.com/tcpkeep/tcpkeep/sysctl"
)

var testMeta = Meta{TS: time.Date(2026, 11, 23, 4, 0, 0, 0, time.UTC), Host: "web-1", NetNS: "tk-test"}

// established is a keepalive connection as the kernel reports one.
func established() *diag.Socket {
	return &diag.Socket{
		Family:       diag.FamilyInet,
		State:        diag.StateEstablished,
		Local:        netip.MustParseAddrPort("10.77.0.1:40000"),
		Remote:       netip.MustParseAddrPort("10.77.0.2:7070"),
		Cookie:       0x1f2e,
		Timer:        diag.TimerKeepalive,
		TimerExpires: 14200 * time.Millisecond,
		RecvQ:        0,
		SendQ:        12,
		UID:          1000,
		Inode:        123456,
		Info: diag.TCPInfo{
			Len: 280, Retransmits: 0, Probes: 0, Backoff: 0, Unacked: 1,
			RTO: 204 * time.Millisecond, RTT: 1234 * time.Microsecond,
			LastDataSent: 900 * time.Millisecond, LastDataRecv: 3 * time.Second, LastAckRecv: 800 * time.Millisecond,
		},
	}
}

var socketKeys = []string{
	"type", "ts", "host", "netns",
	"family", "state", "local", "remote", "timer", "timer_expires_ms", "timer_retrans",
	"recv_q", "send_q", "uid", "inode", "cookie", "idle_ms", "last_data_recv_ms",
	"last_data_sent_ms", "last_ack_recv_ms", "rtt_us", "rto_ms", "retransmits", "probes",
	"backoff", "unacked", "keepalive",
	"pid", "comm",
	"so_keepalive", "keepidle_s", "keepintvl_s", "keepcnt", "user_timeout_ms",
}

func keysOf(t *testing.T, line []byte) (map[string]any, []string) {
	t.Helper()
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, line)
	}
	// The order as written, which is docs/output.md's.
	var order []string
	dec = json.NewDecoder(bytes.NewReader(line))
	dec.Token()
	for dec.More() {
		k, _ := dec.Token()
		order = append(order, k.(string))
		var v json.RawMessage
		dec.Decode(&v)
	}
	return m, order
}

// TestSocketRecord: a full record has exactly docs/output.md's keys, in its order, with
// values that mean what the socket holds.
func TestSocketRecord(t *testing.T) {
	o := &proc.Owner{PID: 4242, Comm: "ng\"inx\x01"}
	opts := &proc.SockOpts{KeepaliveOn: true, Keepalive: sysctl.Keepalive{Time: 15 * time.Second, Intvl: 5 * time.Second, Probes: 3}, UserTimeout: 1500 * time.Millisecond}
	line := AppendSocketRecord(nil, testMeta, established(), o, opts)
	if line[len(line)-1] != '\n' || bytes.Count(line, []byte{'\n'}) != 1 {
		t.Fatalf("not one line: %q", line)
	}
	m, order := keysOf(t, line)
	if !slices.Equal(order, socketKeys) {
		t.Fatalf("keys\n got %v\nwant %v", order, socketKeys)
	}
	want := map[string]string{
		"type": "socket", "ts": "2026-11-23T04:00:00Z", "host": "web-1", "netns": "tk-test",
		"family": "inet", "state": "ESTABLISHED", "local": "10.77.0.1:40000", "remote": "10.77.0.2:7070",
		"timer": "keepalive", "timer_expires_ms": "14200", "timer_retrans": "0", "recv_q": "0", "send_q": "12",
		"uid": "1000", "inode": "123456", "cookie": "0000000000001f2e", "idle_ms": "900",
		"last_data_recv_ms": "3000", "last_data_sent_ms": "900", "last_ack_recv_ms": "800",
		"rtt_us": "1234", "rto_ms": "204", "retransmits": "0", "probes": "0", "backoff": "0", "unacked": "1",
		"keepalive": "true", "pid": "4242", "comm": "ng\"inx\x01",
		"so_keepalive": "true", "keepidle_s": "15", "keepintvl_s": "5", "keepcnt": "3", "user_timeout_ms": "1500",
	}
	for k, v := range want {
		if got := toString(m[k]); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
}

func toString(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case json.Number:
		return v.String()
	case bool:
		if v {
			return "true"
		}
		return "false"
	}
	return "?"
}

// TestSocketRecordPartial: what is unknown is absent, never zero: keepalive while
// a retransmit timer hides it, tcp_info for a TIME_WAIT socket, process and
// options without -p and --sockopts. IPv6 addresses are bracketed.
func TestSocketRecordPartial(t *testing.T) {
	s := established()
	s.Family = diag.FamilyInet6
	s.Local = netip.MustParseAddrPort("[fd77::1]:40000")
	s.Remote = netip.MustParseAddrPort("[fd77::2]:7070")
	s.Timer = diag.TimerRetransmit
	s.TimerRetrans = 3
	m, _ := keysOf(t, AppendSocketRecord(nil, testMeta, s, nil, nil))
	if _, ok := m["keepalive"]; ok {
		t.Errorf("keepalive present while a retransmit timer is pending: %v", m["keepalive"])
	}
	for _, k := range []string{"pid", "comm", "so_keepalive", "keepidle_s"} {
		if _, ok := m[k]; ok {
			t.Errorf("%s present without -p/--sockopts", k)
		}
	}
	if m["local"] != "[fd77::1]:40000" || m["remote"] != "[fd77::2]:7070" || m["family"] != "inet6" {
		t.Errorf("IPv6 record: local %v remote %v family %v", m["local"], m["remote"], m["family"])
	}

	tw := &diag.Socket{Family: diag.FamilyInet, State: diag.StateTimeWait, Timer: diag.TimerTimeWait,
		Local: netip.MustParseAddrPort("10.0.0.1:80"), Remote: netip.MustParseAddrPort("10.0.0.2:5555"),
		TimerExpires: 59 * time.Second, Cookie: 1 << 63}
	m, _ = keysOf(t, AppendSocketRecord(nil, testMeta, tw, nil, nil))
	for _, k := range []string{"idle_ms", "rtt_us", "unacked", "last_ack_recv_ms"} {
		if _, ok := m[k]; ok {
			t.Errorf("TIME_WAIT without tcp_info has %s", k)
		}
	}
	if m["cookie"] != "8000000000000000" || m["timer"] != "timewait" {
		t.Errorf("cookie %v timer %v", m["cookie"], m["timer"])
	}
	// The embeddable object is the same keys without the header.
	obj := appendSocket(nil, tw, nil, nil)
	m2, order := keysOf(t, obj)
	if order[0] != "family" || len(m2) != len(m)-4 {
		t.Errorf("AppendSocket keys %v", order)
	}
}

// TestSocketRecordAllocs: once the buffer has room, writing a record allocates
// nothing.
func TestSocketRecordAllocs(t *testing.T) {
	s := established()
	o, opts := &proc.Owner{PID: 1, Comm: "sshd"}, &proc.SockOpts{KeepaliveOn: true}
	buf := make([]byte, 0, 4096)
	n := testing.AllocsPerRun(1000, func() {
		buf = AppendSocketRecord(buf[:0], testMeta, s, o, opts)
	})
	if n != 0 {
		t.Errorf("AppendSocketRecord: %v allocations per socket, want 0", n)
	}
	for _, f := range []Format{Table, JSON, NDJSON} {
		var out countWriter
		sw, err := NewSocketWriter(&out, f, testMeta, TableOptions{Processes: true, SockOpts: true})
		if err != nil {
			t.Fatal(err)
		}
		for range 2 * windowRows { // past the table's window, whose buffer grows once
			sw.Socket(s, o, opts)
		}
		if n := testing.AllocsPerRun(1000, func() { sw.Socket(s, o, opts) }); n != 0 {
			t.Errorf("-o %s: %v allocations per socket, want 0", f, n)
		}
	}
}

func BenchmarkAppendSocketRecord(b *testing.B) {
	s := established()
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendSocketRecord(buf[:0], testMeta, s, nil, nil)
	}
	b.SetBytes(int64(len(buf)))
}

// BenchmarkSocketWriter is the cost of one socket in each format conns writes,
// with -p and --sockopts: 0 allocations per socket.
func BenchmarkSocketWriter(b *testing.B) {
	s := established()
	o, opts := &proc.Owner{PID: 812, Comm: "nginx"}, &proc.SockOpts{KeepaliveOn: true, Keepalive: sysctl.Keepalive{Time: time.Minute, Intvl: 10 * time.Second, Probes: 5}}
	for _, f := range []Format{NDJSON, JSON, Table} {
		b.Run(string(f), func(b *testing.B) {
			var out countWriter
			sw, err := NewSocketWriter(&out, f, testMeta, TableOptions{Processes: true, SockOpts: true})
			if err != nil {
				b.Fatal(err)
			}
			var sum ConnsSummary
			b.ReportAllocs()
			for b.Loop() {
				sum.Add(s)
				sw.Socket(s, o, opts)
			}
			sw.Finish(&sum)
		})
	}
}

type countWriter struct{ n int }

func (w *countWriter) Write(p []byte) (int, error) { w.n += len(p); return len(p), nil }

func sockets() []*diag.Socket {
	a := established()
	l := &diag.Socket{Family: diag.FamilyInet6, State: diag.StateListen, Local: netip.MustParseAddrPort("[::]:7070"),
		Remote: netip.MustParseAddrPort("[::]:0"), SendQ: 128, Info: diag.TCPInfo{Len: 280}}
	r := established()
	r.Timer, r.TimerRetrans, r.TimerExpires = diag.TimerRetransmit, 4, 3200*time.Millisecond
	r.Info.Retransmits, r.Info.Backoff = 4, 4
	p := established()
	p.TimerRetrans, p.Info.Probes, p.TimerExpires = 2, 2, time.Second
	return []*diag.Socket{a, l, r, p}
}

// TestJSONDocument: -o json is one valid document, sockets then summary.
func TestJSONDocument(t *testing.T) {
	for _, n := range []int{0, 4} {
		var out bytes.Buffer
		sw, err := NewSocketWriter(&out, JSON, testMeta, TableOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var sum ConnsSummary
		for _, s := range sockets()[:n] {
			sum.Add(s)
			if err := sw.Socket(s, nil, nil); err != nil {
				t.Fatal(err)
			}
		}
		sum.Duration = 12 * time.Millisecond
		if err := sw.Finish(&sum); err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Netns   string           `json:"netns"`
			Sockets []map[string]any `json:"sockets"`
			Summary struct {
				Sockets    int            `json:"sockets"`
				ByState    map[string]int `json:"by_state"`
				DurationMS int64          `json:"duration_ms"`
			} `json:"summary"`
		}
		if err := json.Unmarshal(out.Bytes(), &doc); err != nil {
			t.Fatalf("%d sockets: not one JSON document: %v\n%s", n, err, out.Bytes())
		}
		if len(doc.Sockets) != n || doc.Summary.Sockets != n || doc.Summary.DurationMS != 12 || doc.Netns != "tk-test" {
			t.Errorf("%d sockets: got %d sockets, summary %+v", n, len(doc.Sockets), doc.Summary)
		}
		if n == 4 && (doc.Summary.ByState["ESTABLISHED"] != 3 || doc.Summary.ByState["LISTEN"] != 1) {
			t.Errorf("by_state %v", doc.Summary.ByState)
		}
	}
}

// TestNDJSONStream: one record per line, the summary last.
func TestNDJSONStream(t *testing.T) {
	var out bytes.Buffer
	sw, _ := NewSocketWriter(&out, NDJSON, testMeta, TableOptions{})
	var sum ConnsSummary
	for _, s := range sockets() {
		sum.Add(s)
		sw.Socket(s, nil, nil)
	}
	sw.Finish(&sum)
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 5 {
		t.Fatalf("%d lines, want 5:\n%s", len(lines), out.String())
	}
	for i, l := range lines {
		m, _ := keysOf(t, []byte(l))
		want := "socket"
		if i == 4 {
			want = "conns_summary"
		}
		if m["type"] != want || m["netns"] != "tk-test" || m["host"] != "web-1" {
			t.Errorf("line %d: type %v, want %s", i, m["type"], want)
		}
	}
	m, order := keysOf(t, []byte(lines[4]))
	if !slices.Equal(order, []string{"type", "ts", "host", "netns", "sockets", "by_state", "duration_ms", "interrupted"}) {
		t.Errorf("summary keys %v", order)
	}
	if toString(m["sockets"]) != "4" {
		t.Errorf("summary sockets %v", m["sockets"])
	}
}

// TestTable: the table says what ss leaves to work out.
func TestTable(t *testing.T) {
	var out bytes.Buffer
	sw, _ := NewSocketWriter(&out, Table, testMeta, TableOptions{Processes: true, SockOpts: true})
	var sum ConnsSummary
	o := &proc.Owner{PID: 77, Comm: "app"}
	opts := &proc.SockOpts{KeepaliveOn: true, Keepalive: sysctl.Keepalive{Time: 20 * time.Second, Intvl: time.Second, Probes: 5}}
	for i, s := range sockets() {
		sum.Add(s)
		if i == 3 {
			sw.Socket(s, o, opts)
		} else {
			sw.Socket(s, nil, nil)
		}
	}
	sum.Duration = 3 * time.Millisecond
	sw.Finish(&sum)
	lines := strings.Split(out.String(), "\n")
	for i, want := range [][]string{
		{"STATE", "LOCAL", "REMOTE", "IDLE", "TIMER", "KEEPALIVE", "NEXT-PROBE", "RETRANS/PROBES", "RECV-Q/SEND-Q", "PROCESS", "KEEPIDLE/INTVL/CNT", "USER-TIMEOUT"},
		{"ESTABLISHED", "10.77.0.1:40000", "10.77.0.2:7070", "900ms", "keepalive 14s", "yes", "in 14s", "0/0", "0/12", "-", "-", "-"},
		{"LISTEN", "[::]:7070", "[::]:*", "-", "off", "?", "-", "0/0", "0/128", "-", "-", "-"},
		{"ESTABLISHED", "10.77.0.1:40000", "10.77.0.2:7070", "900ms", "retransmit 3.2s", "?", "-", "4/0", "0/12", "-", "-", "-"},
		{"ESTABLISHED", "10.77.0.1:40000", "10.77.0.2:7070", "900ms", "keepalive 1s", "yes", "in 1s (probe 3 of 5)", "0/2", "0/12", "77/app", "20s/1s/5", "default"},
	} {
		if got := cells(lines[0], lines[i]); !slices.Equal(got, want) {
			t.Errorf("line %d:\n%s\ncells %q\nwant  %q", i, lines[i], got, want)
		}
	}
	if !strings.Contains(out.String(), "4 sockets: 3 ESTABLISHED, 1 LISTEN (3ms)") {
		t.Errorf("summary missing:\n%s", out.String())
	}
	noTrailingSpace(t, out.String())
}

// cells splits a table line at its header's column starts, checking that each
// cell starts exactly there and is padded with spaces up to the next.
func cells(header, line string) []string {
	var starts []int
	for i := range header {
		if header[i] != ' ' && (i == 0 || header[i-1] == ' ') {
			starts = append(starts, i)
		}
	}
	r := []rune(line)
	var out []string
	for i, st := range starts {
		if st > len(r) || (st > 0 && r[st-1] != ' ') {
			return append(out, "misaligned at column "+strconv.Itoa(i))
		}
		end := len(r)
		if i+1 < len(starts) && starts[i+1] < end {
			end = starts[i+1]
		}
		out = append(out, strings.TrimRight(string(r[st:end]), " "))
	}
	return out
}

func noTrailingSpace(t *testing.T, s string) {
	t.Helper()
	for i, l := range strings.Split(s, "\n") {
		if strings.HasSuffix(l, " ") {
			t.Errorf("line %d ends in spaces: %q", i, l)
		}
	}
}

// TestTableAligns: whatever the contents, every row lines up under its
// header: the widest cells of the first rows size the columns, and a wider
// one later (past the window) prints the header again above itself.
func TestTableAligns(t *testing.T) {
	var out bytes.Buffer
	sw, _ := NewSocketWriter(&out, Table, testMeta, TableOptions{Processes: true})
	wide := established()
	wide.Family = diag.FamilyInet6
	wide.Local = netip.MustParseAddrPort("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535")
	wide.Remote = netip.MustParseAddrPort("[::ffff:127.0.0.1]:57034")
	wide.Info.LastDataSent, wide.Info.LastDataRecv = 49*24*time.Hour+17*time.Hour, 49*24*time.Hour+17*time.Hour
	wide.TimerExpires = 23 * time.Hour
	wide.RecvQ, wide.SendQ = 1<<32-1, 1<<32-1
	narrow := established()
	o := &proc.Owner{PID: 4194304, Comm: "ünïcode-\x01name"}
	var sum ConnsSummary
	n := 0
	for _, s := range []*diag.Socket{narrow, wide} { // wide in the window
		sw.Socket(s, o, nil)
		n++
	}
	for range windowRows {
		sw.Socket(narrow, nil, nil)
		n++
	}
	later := *wide
	later.TimerRetrans, later.Timer = 200, diag.TimerKeepalive // wider than anything in the window
	sw.Socket(&later, &proc.Owner{PID: 1, Comm: "a-much-longer-process-name"}, nil)
	sw.Finish(&sum)
	text := out.String()
	noTrailingSpace(t, text)
	var header string
	headers := 0
	for i, l := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		switch {
		case strings.HasPrefix(l, "STATE"):
			header = l
			headers++
		case l == "" || strings.Contains(l, "sockets"):
		default:
			if c := cells(header, l); len(c) != 10 || strings.HasPrefix(c[len(c)-1], "misaligned") {
				t.Fatalf("line %d does not line up under its header:\n%s\n%s\n%q", i, header, l, c)
			}
		}
	}
	if headers != 2 {
		t.Errorf("%d headers, want 2: the first, and again above the row that widened", headers)
	}
	if !strings.Contains(text, "4194304/ünïcode-?name") {
		t.Errorf("the process name is not printed safely:\n%s", text)
	}
}

func TestDuration(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{-time.Second, "0s"}, {0, "0s"}, {450 * time.Millisecond, "450ms"}, {999600 * time.Microsecond, "1s"},
		{time.Second, "1s"}, {1500 * time.Millisecond, "1.5s"}, {9960 * time.Millisecond, "10s"},
		{42 * time.Second, "42s"}, {75 * time.Second, "1m15s"}, {4*time.Minute + 12*time.Second, "4m12s"}, {5 * time.Minute, "5m"},
		{2*time.Hour + 11*time.Minute + 15*time.Second, "2h11m15s"}, {2*time.Hour + 11*time.Minute, "2h11m"},
		{time.Hour + time.Second, "1h0m1s"}, {76 * time.Hour, "3d4h"}, {5 * 24 * time.Hour, "5d"},
		{(1<<32 - 1) * time.Millisecond, "49d17h2m47s"},
	} {
		if got := Duration(tc.d); got != tc.want {
			t.Errorf("%v: %q, want %q", tc.d, got, tc.want)
		}
	}
	buf := make([]byte, 0, 32)
	if n := testing.AllocsPerRun(100, func() { buf = AppendDuration(buf[:0], 2*time.Hour+time.Second) }); n != 0 {
		t.Errorf("AppendDuration: %v allocations", n)
	}
}

// FuzzAppendString: any bytes become a JSON string that decodes to what
// encoding/json would make of them.
func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "nginx", "a\"b\\c", "\x00\x1f\x7f", "\xff\xfe", "\u2028x\u2029", "héllo"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b := appendString(nil, s)
		var got string
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%q -> %s: %v", s, b, err)
		}
		ref, _ := json.Marshal(s)
		var want string
		json.Unmarshal(ref, &want)
		if got != want {
			t.Fatalf("%q -> %q, encoding/json gives %q", s, got, want)
		}
	})
}
