package watch

// The engine's bookkeeping, over namespaces in memory (kernel.Fake): which
// events come, once each, however many rounds see a finding. What the kernel
// does is the subject of net_test.go and of internal/cli's watch tests.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tcpkeep/tcpkeep/diag"
	"github.com/tcpkeep/tcpkeep/internal/audit"
	"github.com/tcpkeep/tcpkeep/internal/kernel"
	"github.com/tcpkeep/tcpkeep/internal/netns"
	"github.com/tcpkeep/tcpkeep/sysctl"
)

// tunables writes a namespace's tunables as files under a /proc/sys copy.
func tunables(t *testing.T, keepaliveTime string) sysctl.ProcSys {
	t.Helper()
	root := t.TempDir()
	for name, v := range map[string]string{sysctl.FileTime: keepaliveTime, sysctl.FileIntvl: "75", sysctl.FileProbes: "9", sysctl.FileRetries2: "15"} {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return sysctl.ProcSys(root)
}

// Sockets in the conditions the tests need, each with its own cookie.
func halfOpen(cookie uint64) diag.Socket {
	s := established(cookie)
	s.Timer, s.TimerRetrans, s.TimerExpires = diag.TimerKeepalive, 2, time.Second
	s.Info.LastDataRecv, s.Info.LastAckRecv, s.Info.LastDataSent = 10*time.Second, 10*time.Second, 10*time.Second
	return s
}

func idle(cookie uint64) diag.Socket {
	s := established(cookie)
	s.Info.LastDataRecv, s.Info.LastDataSent = time.Hour, time.Hour
	return s
}

func established(cookie uint64) diag.Socket {
	return diag.Socket{Family: diag.FamilyInet, State: diag.StateEstablished, Cookie: cookie, Inode: uint32(cookie),
		Local:  netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), uint16(10000+cookie)),
		Remote: netip.MustParseAddrPort("10.0.0.2:443"),
		Info:   diag.TCPInfo{Len: 232, RTT: time.Millisecond, SndWnd: 65535, BytesAcked: 1, LastDataRecv: time.Second, LastDataSent: time.Second}}
}

// freed is the kernel's last record of a socket: CLOSE, with probes or
// retransmissions left as they were when the kernel gave up.
func freed(s diag.Socket, probes, retrans uint8) diag.Socket {
	s.State, s.Timer, s.TimerRetrans, s.Inode = diag.StateClose, diag.TimerOff, 0, 0
	s.Info.Probes, s.Info.Retransmits = probes, retrans
	return s
}

// recorder keeps the events and the metrics calls.
type recorder struct {
	mu     sync.Mutex
	events []string
	counts map[string]int
}

func (r *recorder) emit(ev *Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var s string
	switch ev.Kind {
	case Opened:
		s = fmt.Sprintf("%s opened %s %d", ev.NetNS, ev.Finding.Code, cookieOf(ev.Finding))
	case Resolved:
		s = fmt.Sprintf("%s resolved %s %d %s %s", ev.NetNS, ev.Finding.Code, cookieOf(ev.Finding), ev.How, ev.End)
	case Acted:
		s = fmt.Sprintf("%s acted %s %d %s", ev.NetNS, ev.Action.Reason, ev.Action.Socket.Cookie, ev.Action.Result)
	}
	r.events = append(r.events, s)
	return nil
}

func cookieOf(f *audit.Finding) uint64 {
	if f.Socket == nil {
		return 0
	}
	return f.Socket.Cookie
}

// take returns the events since the last take.
func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	ev := r.events
	r.events = nil
	return ev
}

func (r *recorder) count(what string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.counts[what]
}

func (r *recorder) inc(what string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.counts == nil {
		r.counts = map[string]int{}
	}
	r.counts[what]++
}

func (r *recorder) Watching(ns string) { r.inc("watching " + ns) }
func (r *recorder) Audited(ns string, _ time.Time, _ *sysctl.Tunables, sum *audit.Summary) {
	r.inc(fmt.Sprintf("audited %s %v", ns, sum != nil))
}
func (r *recorder) Forget(ns string)                                 { r.inc("forget " + ns) }
func (r *recorder) Opened(ns string, c audit.Code, _ audit.Severity) { r.inc("opened " + string(c)) }
func (r *recorder) Resolved(ns string, c audit.Code, how string) {
	r.inc("resolved " + string(c) + " " + how)
}
func (r *recorder) Ended(ns string, end audit.End) { r.inc("ended " + ns + " " + end.String()) }
func (r *recorder) Lost(ns string, n int)          { r.inc(fmt.Sprintf("lost %s %d", ns, n)) }

// fakeSub is a subscription the test feeds.
type fakeSub struct {
	ch     chan diag.Socket
	errs   chan error
	once   sync.Once
	closed chan struct{}
}

func newFakeSub() *fakeSub {
	return &fakeSub{ch: make(chan diag.Socket), errs: make(chan error), closed: make(chan struct{})}
}

func (f *fakeSub) Sockets(ctx context.Context) iter.Seq2[*diag.Socket, error] {
	return func(yield func(*diag.Socket, error) bool) {
		for {
			select {
			case s := <-f.ch:
				if !yield(&s, nil) {
					return
				}
			case err := <-f.errs:
				if !yield(nil, err) {
					return
				}
			case <-ctx.Done():
				return
			case <-f.closed:
				return
			}
		}
	}
}

func (f *fakeSub) Close() error { f.once.Do(func() { close(f.closed) }); return nil }

// Lost: the test's overrun lost 7.
func (f *fakeSub) Lost() (uint64, error) { return 7, nil }

// world is namespaces in memory and an engine over them.
type world struct {
	t     *testing.T
	e     *Engine
	rec   *recorder
	fakes map[string]*kernel.Fake
	subs  map[string]*fakeSub
	list  []netns.Namespace
	log   bytes.Buffer
	logMu sync.Mutex
}

func (w *world) Write(b []byte) (int, error) {
	w.logMu.Lock()
	defer w.logMu.Unlock()
	return w.log.Write(b)
}

func (w *world) logged() string {
	w.logMu.Lock()
	defer w.logMu.Unlock()
	return w.log.String()
}

// newWorld makes namespaces named names (each with the 7200 s default
// keepalive time unless it says otherwise), with subscriptions when subs.
func newWorld(t *testing.T, subs bool, cfg Config, names ...string) *world {
	w := &world{t: t, rec: &recorder{}, fakes: map[string]*kernel.Fake{}, subs: map[string]*fakeSub{}}
	for i, n := range names {
		w.fakes[n] = kernel.NewFake(n, tunables(t, "60"))
		w.list = append(w.list, netns.Namespace{NS: netns.NS{Spec: n, Path: "/nonexistent/" + n}, Name: n, Ino: uint64(i + 1)})
		if subs {
			w.subs[n] = newFakeSub()
		}
	}
	cfg.Interval = time.Second
	cfg.Namespaces = func() ([]netns.Namespace, error) { return w.list, nil }
	cfg.Kernel = func(ns netns.NS) kernel.NS { return w.fakes[ns.Spec] }
	cfg.Subscribe = func(ns netns.NS) (Destroyed, error) {
		if s := w.subs[ns.Spec]; s != nil {
			return s, nil
		}
		return nil, errors.New("no broadcasts here")
	}
	if cfg.Audit.MaxIdle == 0 {
		cfg.Audit = audit.DefaultConfig(sysctl.Tunables{})
	}
	cfg.Emit, cfg.Metrics = w.rec.emit, w.rec
	cfg.Log = slog.New(slog.NewJSONHandler(w, nil))
	w.e = New(cfg)
	t.Cleanup(w.e.shutdown)
	return w
}

// round runs one round and returns its events.
func (w *world) round() []string {
	w.t.Helper()
	w.e.runRound(context.Background())
	if err := w.e.emitErr(); err != nil {
		w.t.Fatal(err)
	}
	return w.rec.take()
}

// ended hands the engine a freed socket of namespace ns, as its
// subscription's reader does.
func (w *world) ended(ns string, s diag.Socket) []string {
	w.t.Helper()
	w.e.mu.Lock()
	st := w.e.states[nsKey{ino: w.ino(ns)}]
	w.e.mu.Unlock()
	w.e.ended(st, &s)
	return w.rec.take()
}

func (w *world) ino(ns string) uint64 {
	for _, n := range w.list {
		if n.Name == ns {
			return n.Ino
		}
	}
	w.t.Fatalf("no namespace %s", ns)
	return 0
}

func same(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	g, wnt := strings.Join(sorted(got), "\n"), strings.Join(sorted(want), "\n")
	if g != wnt {
		t.Errorf("%s:\n got: %q\nwant: %q", what, sorted(got), sorted(want))
	}
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// TestOpenedOnceResolvedOnce: a finding is opened by the first audit that
// sees it and by no other; it resolves once, cleared when the socket lives
// on, closed when it is gone (with no broadcast, the End is unknown); the
// tunables' findings the same, by code.
func TestOpenedOnceResolvedOnce(t *testing.T) {
	w := newWorld(t, false, Config{}, "a")
	f := w.fakes["a"]
	f.Sys = tunables(t, "7200")
	f.Set(halfOpen(1), idle(2), established(3))
	same(t, "round 1", w.round(),
		"a opened half_open_keepalive 1", "a opened idle_no_keepalive 2", "a opened sysctl_keepalive_default 0")
	for i := range 3 {
		same(t, fmt.Sprintf("round %d, nothing changed", i+2), w.round())
	}
	// 2 is used again; 1 is gone; the tunable is fixed.
	f.Set(established(2), established(3))
	f.Sys = tunables(t, "60")
	same(t, "after the changes", w.round(),
		"a resolved half_open_keepalive 1 closed unknown", "a resolved idle_no_keepalive 2 cleared unknown",
		"a resolved sysctl_keepalive_default 0 cleared unknown")
	same(t, "a round later", w.round())
	if n := w.rec.count("opened half_open_keepalive"); n != 1 {
		t.Errorf("tcpkeep_findings_opened_total{code=half_open_keepalive} counted %d, want 1", n)
	}
	if n := w.rec.count("resolved idle_no_keepalive cleared"); n != 1 {
		t.Errorf("resolved counted %d for idle_no_keepalive cleared, want 1", n)
	}
	// It idles again: a new finding, opened anew.
	f.Set(idle(2))
	same(t, "idle again", w.round(), "a opened idle_no_keepalive 2")
}

// TestBroadcastSaysHowItEnded: a flagged socket the kernel dropped leaves the
// dump before its broadcast comes (its owner still holds it): the engine
// waits an audit, and the broadcast resolves it with how it ended. Without a
// broadcast by the next audit, it resolves closed, how unknown. Every
// broadcast counts toward kernel drops by cause, flagged or not.
func TestBroadcastSaysHowItEnded(t *testing.T) {
	w := newWorld(t, true, Config{}, "a")
	f := w.fakes["a"]
	f.Set(halfOpen(1), halfOpen(2), established(3))
	same(t, "round 1", w.round(), "a opened half_open_keepalive 1", "a opened half_open_keepalive 2")
	f.Set(established(3)) // both dropped by the kernel
	same(t, "gone from the dump, no broadcast yet", w.round())
	same(t, "1's owner closes it", w.ended("a", freed(halfOpen(1), 3, 0)), "a resolved half_open_keepalive 1 closed keepalive")
	same(t, "2's broadcast never comes", w.round(), "a resolved half_open_keepalive 2 closed unknown")
	same(t, "3 closed by its owner", w.ended("a", freed(established(3), 0, 0)))
	same(t, "1's broadcast again (it cannot be: a cookie is freed once)", w.ended("a", freed(halfOpen(1), 3, 0)))
	if n, m := w.rec.count("ended a keepalive"), w.rec.count("ended a closed"); n != 2 || m != 1 {
		t.Errorf("ends counted: keepalive %d, closed %d; want 2 and 1", n, m)
	}
}

// TestOverrunFallsBackToTheAudit: after broadcasts were lost, a socket gone
// from the dump resolves at the next audit instead of waiting for a
// broadcast that may be lost; the overrun is counted.
func TestOverrunFallsBackToTheAudit(t *testing.T) {
	w := newWorld(t, true, Config{}, "a")
	f := w.fakes["a"]
	f.Set(halfOpen(1))
	same(t, "round 1", w.round(), "a opened half_open_keepalive 1")
	w.subs["a"].errs <- fmt.Errorf("receive: %w", diag.ErrOverrun)
	waitFor(t, func() bool { return w.rec.count("lost a 7") == 1 })
	f.Set()
	same(t, "gone, broadcasts lost", w.round(), "a resolved half_open_keepalive 1 closed unknown")
	if !strings.Contains(w.logged(), "destroy broadcasts lost") {
		t.Errorf("the overrun is not logged: %s", w.logged())
	}
}

// TestBroadcastThroughTheSubscription: the reader of a namespace's
// subscription resolves a flagged socket the moment its broadcast comes.
func TestBroadcastThroughTheSubscription(t *testing.T) {
	w := newWorld(t, true, Config{}, "a")
	w.fakes["a"].Set(halfOpen(1))
	same(t, "round 1", w.round(), "a opened half_open_keepalive 1")
	w.subs["a"].ch <- freed(halfOpen(1), 3, 0)
	waitFor(t, func() bool { return w.rec.count("resolved half_open_keepalive closed") == 1 })
	same(t, "events", w.rec.take(), "a resolved half_open_keepalive 1 closed keepalive")
}

// TestFreedWhileAuditing: sockets freed while an audit runs, after the dump
// handed them out: an open finding resolves once, by its broadcast, and is
// not opened again by the audit that still saw it; a socket flagged for the
// first time by that audit is opened and resolved at once.
func TestFreedWhileAuditing(t *testing.T) {
	w := newWorld(t, true, Config{}, "a")
	f := w.fakes["a"]
	f.Set(halfOpen(1))
	same(t, "round 1", w.round(), "a opened half_open_keepalive 1")
	f.Set(halfOpen(1), halfOpen(2))
	var during []string
	f.Pace = func(n int) {
		if n == 1 { // the dump has handed out 1 and copied the table
			during = append(during, w.ended("a", freed(halfOpen(1), 3, 0))...)
			during = append(during, w.ended("a", freed(halfOpen(2), 3, 0))...)
		}
	}
	after := w.round()
	f.Pace = nil
	same(t, "during the audit", during, "a resolved half_open_keepalive 1 closed keepalive")
	same(t, "at its end", after, "a opened half_open_keepalive 2", "a resolved half_open_keepalive 2 closed keepalive")
	f.Set()
	same(t, "next round", w.round())
}

// TestKillResolvesAsKilled: --kill closes what it flags, at most KillMax a
// round; each closed socket is an action and its findings resolve as killed;
// its broadcast is then no kernel drop. A dry run reports a socket once.
func TestKillResolvesAsKilled(t *testing.T) {
	w := newWorld(t, true, Config{Kill: []audit.Code{audit.HalfOpenKeepalive}, KillMax: 1}, "a")
	f := w.fakes["a"]
	f.Set(halfOpen(1), halfOpen(2), idle(3))
	ev := w.round()
	killed := uint64(0)
	for _, s := range ev {
		if strings.Contains(s, "acted") {
			fmt.Sscanf(s, "a acted half_open_keepalive %d closed", &killed)
		}
	}
	other := 3 - killed
	same(t, "round 1", ev, "a opened half_open_keepalive 1", "a opened half_open_keepalive 2", "a opened idle_no_keepalive 3",
		fmt.Sprintf("a acted half_open_keepalive %d closed", killed), fmt.Sprintf("a resolved half_open_keepalive %d killed destroyed", killed))
	same(t, "its broadcast", w.ended("a", freed(halfOpen(killed), 2, 0)))
	if n := w.rec.count("ended a keepalive"); n != 0 {
		t.Errorf("a socket tcpkeep destroyed counted as %d kernel drops", n)
	}
	same(t, "round 2: the budget is new", w.round(),
		fmt.Sprintf("a acted half_open_keepalive %d closed", other), fmt.Sprintf("a resolved half_open_keepalive %d killed destroyed", other))
	if d := f.Destroyed(); len(d) != 2 {
		t.Errorf("destroyed %v, want both half-open sockets", d)
	}

	dry := newWorld(t, false, Config{Kill: []audit.Code{audit.HalfOpenKeepalive}, KillMax: 5, DryRun: true}, "b")
	dry.fakes["b"].Set(halfOpen(1))
	same(t, "dry run, round 1", dry.round(), "b opened half_open_keepalive 1", "b acted half_open_keepalive 1 would_close")
	same(t, "dry run, round 2", dry.round())
	if d := dry.fakes["b"].Destroyed(); len(d) != 0 {
		t.Errorf("a dry run destroyed %v", d)
	}
}

// failing is a namespace whose tunables cannot be read.
type failing struct {
	kernel.NS
	err error
}

func (f failing) Tunables() (sysctl.Tunables, error) { return sysctl.Tunables{}, f.err }

// TestFailingNamespaceSkipped: a namespace whose audit fails is logged and
// skipped, the others audited; one that is gone stops being watched, its
// findings resolved as closed and its series forgotten; a namespace that
// leaves the list the same.
func TestFailingNamespaceSkipped(t *testing.T) {
	w := newWorld(t, false, Config{}, "a", "b", "c")
	for _, n := range []string{"a", "b", "c"} {
		w.fakes[n].Set(halfOpen(1))
	}
	same(t, "round 1", w.round(), "a opened half_open_keepalive 1", "b opened half_open_keepalive 1", "c opened half_open_keepalive 1")
	kern := w.e.cfg.Kernel
	w.e.cfg.Kernel = func(ns netns.NS) kernel.NS {
		switch ns.Spec {
		case "a":
			return failing{kern(ns), errors.New("permission denied")}
		case "b":
			return failing{kern(ns), fmt.Errorf("netns b: %w", netns.ErrNotExist)}
		}
		return kern(ns)
	}
	w.fakes["c"].Set()
	same(t, "round 2", w.round(), "b resolved half_open_keepalive 1 closed unknown", "c resolved half_open_keepalive 1 closed unknown")
	log := w.logged()
	for _, want := range []string{`"msg":"audit failed: namespace skipped this round","netns":"a","err":"permission denied"`, `"msg":"namespace is gone: skipped","netns":"b"`} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %s:\n%s", want, log)
		}
	}
	if w.rec.count("audited a false") != 1 || w.rec.count("forget b") != 1 {
		t.Errorf("metrics: a's failed audit %d, b forgotten %d; want 1 and 1", w.rec.count("audited a false"), w.rec.count("forget b"))
	}
	w.list = w.list[2:] // a leaves the list
	same(t, "round 3", w.round(), "a resolved half_open_keepalive 1 closed unknown")
	if len(w.e.states) != 1 {
		t.Errorf("%d namespaces watched, want c alone", len(w.e.states))
	}
}

// TestStateIsTheFindings: the engine holds the open findings, not the socket
// table: thousands of healthy sockets leave nothing behind.
func TestStateIsTheFindings(t *testing.T) {
	w := newWorld(t, true, Config{}, "a")
	socks := []diag.Socket{halfOpen(1), idle(2)}
	for c := range uint64(20000) {
		socks = append(socks, established(100+c))
	}
	w.fakes["a"].Set(socks...)
	for range 3 {
		w.round()
		for i := range 100 { // closes, none flagged
			w.ended("a", freed(established(100+uint64(i)), 0, 0))
		}
	}
	st := w.e.states[nsKey{ino: 1}]
	if len(st.open) != 2 || len(st.killed) != 0 || st.during != nil {
		t.Errorf("state: %d open, %d killed, during %v; want the 2 findings only", len(st.open), len(st.killed), st.during)
	}
}

func waitFor(t *testing.T, done func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !done() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(time.Millisecond)
	}
}

// errSink is what a failing Emit returns.
var errSink = errors.New("stdout is gone")

// TestEmitErrorEndsRun: when events cannot be written, Run returns why.
func TestEmitErrorEndsRun(t *testing.T) {
	w := newWorld(t, false, Config{}, "a")
	w.fakes["a"].Set(halfOpen(1))
	w.e.cfg.Emit = func(*Event) error { return errSink }
	if err := w.e.Run(context.Background()); !errors.Is(err, errSink) {
		t.Fatalf("Run: %v, want %v", err, errSink)
	}
}

// TestRunStopsWhenTheContextEnds: Run returns nil once its context ends.
func TestRunStopsWhenTheContextEnds(t *testing.T) {
	w := newWorld(t, true, Config{}, "a")
	ctx, cancel := context.WithCancel(context.Background())
	rounds := 0
	w.e.cfg.Rounds = func(r Round) {
		rounds++
		if r.N == 2 {
			cancel()
		}
	}
	w.e.cfg.Interval = time.Millisecond
	if err := w.e.Run(ctx); err != nil || rounds != 2 {
		t.Fatalf("Run: %v after %d rounds, want nil after 2", err, rounds)
	}
	if w.e.Healthy() != nil {
		t.Errorf("healthy after rounds: %v", w.e.Healthy())
	}
}

// BenchmarkEnded is the engine's work for one freed socket that had no
// finding, the common case under churn.
func BenchmarkEnded(b *testing.B) {
	e := New(Config{Interval: time.Second, Emit: func(*Event) error { return nil }})
	st := &nsState{name: "a", open: map[key]*entry{}, killed: map[uint64]int{}}
	s := freed(established(1), 0, 0)
	b.ReportAllocs()
	for b.Loop() {
		s.Cookie++
		e.ended(st, &s)
	}
}
