package probe

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/tcpkeep/tcpkeep/internal/testnet"
)

// readBusy reads what the server sends c until it closes (within 3 s), and
// reports whether that was exactly one busy frame.
func readBusy(t *testing.T, c net.Conn) bool {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("the server kept the connection open past 3 s (read %d bytes)", len(b))
		}
	}
	if len(b) != FrameSize {
		return false
	}
	f, err := Decode(b)
	return err == nil && f == Frame{Type: TypeBusy}
}

// TestServerHandshakeDeadline: connections that send nothing, or less than a
// frame, lose their slot at the handshake deadline, long before the read timeout,
// and the slots serve the next client without evicting anyone.
func TestServerHandshakeDeadline(t *testing.T) {
	noLeak(t)
	ns := testnet.NewNS(t).NetNS()
	srv := &Server{MaxClients: 3, ReadTimeout: time.Hour, HandshakeTimeout: 700 * time.Millisecond}
	addr := serve(t, ns, "127.0.0.1:7077", srv)

	start := time.Now()
	silent := dial(t, ns, addr)
	partial := dial(t, ns, addr)
	partial.Write(Frame{Type: TypePing, Seq: 1}.Append(nil)[:FrameSize-1])
	spoke := dial(t, ns, addr)
	if _, err := NewPinger(spoke).Ping(context.Background(), time.Second); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the server serves all three", 3*time.Second, func() bool { return srv.Stats().Active == 3 })
	waitFor(t, "the two that never sent a whole frame are dropped", 5*time.Second, func() bool { return srv.Stats().Active == 1 })
	took := time.Since(start)
	t.Logf("dropped %v after connecting (handshake timeout %v)", took, srv.HandshakeTimeout)
	if took < srv.HandshakeTimeout/2 {
		t.Fatalf("dropped after %v: sooner than the handshake timeout %v", took, srv.HandshakeTimeout)
	}
	for name, c := range map[string]net.Conn{"silent": silent, "partial": partial} {
		if n, closed := drain(c, time.Second); n != 0 || !closed {
			t.Fatalf("%s client: got %d bytes, closed %v; want nothing and closed", name, n, closed)
		}
	}
	// The one that spoke keeps its slot: the handshake deadline was for its
	// first frame only.
	p := NewPinger(spoke)
	if _, err := p.Ping(context.Background(), time.Second); err != nil {
		t.Fatalf("the client that spoke lost its slot: %v", err)
	}
	for i := 0; i < 2; i++ {
		if _, err := NewPinger(dial(t, ns, addr)).Ping(context.Background(), time.Second); err != nil {
			t.Fatalf("a freed slot does not serve a new client: %v", err)
		}
	}
	if st := srv.Stats(); st.TimedOut != 2 || st.Evicted != 0 || st.Rejected != 0 {
		t.Fatalf("stats %+v: want 2 timed out, none evicted or rejected", st)
	}
}

// TestServerFullAnswersBusy: a server whose every slot holds a client beating
// recently answers a new one with a busy frame, which the client reports as
// ErrBusy, and Run as an error, not as a dead peer.
func TestServerFullAnswersBusy(t *testing.T) {
	noLeak(t)
	ns := testnet.NewNS(t).NetNS()
	srv := &Server{MaxClients: 2, ReadTimeout: time.Hour}
	addr := serve(t, ns, "127.0.0.1:7077", srv)
	for i := 0; i < 2; i++ {
		if _, err := NewPinger(dial(t, ns, addr)).Ping(context.Background(), time.Second); err != nil {
			t.Fatal(err)
		}
	}
	_, err := NewPinger(dial(t, ns, addr)).Ping(context.Background(), time.Second)
	if !errors.Is(err, ErrBusy) {
		t.Fatalf("a client of a full server: %v; want ErrBusy", err)
	}
	raw := dial(t, ns, addr)
	if !readBusy(t, raw) {
		t.Fatal("a connection refused before it sent anything did not get exactly one busy frame")
	}
	v, err := Run(context.Background(), dial(t, ns, addr), Config{Interval: 100 * time.Millisecond, Count: 3}, nil)
	if !errors.Is(err, ErrBusy) || !v.Alive {
		t.Fatalf("Run on a full server: %+v, %v; want ErrBusy and no dead verdict", v, err)
	}
	if st := srv.Stats(); st.Rejected != 3 || st.Evicted != 0 || st.Active != 2 {
		t.Fatalf("stats %+v: want 3 rejected, none evicted, 2 active", st)
	}
}

// TestServerEvicts: a full server makes room for a new client by closing, with a
// busy frame, first the oldest connection that never sent a whole frame, then the
// client silent longest once it has been silent for EvictAfter; a client that
// beats keeps its slot.
func TestServerEvicts(t *testing.T) {
	noLeak(t)
	ns := testnet.NewNS(t).NetNS()
	srv := &Server{MaxClients: 3, ReadTimeout: time.Hour, HandshakeTimeout: time.Hour, EvictAfter: 400 * time.Millisecond}
	addr := serve(t, ns, "127.0.0.1:7077", srv)
	ctx := context.Background()

	quiet := NewPinger(dial(t, ns, addr))
	if _, err := quiet.Ping(ctx, time.Second); err != nil {
		t.Fatal(err)
	}
	quietAt := time.Now()
	beating := NewPinger(dial(t, ns, addr))
	if _, err := beating.Ping(ctx, time.Second); err != nil {
		t.Fatal(err)
	}
	older := dial(t, ns, addr) // never speaks
	waitFor(t, "three served", 3*time.Second, func() bool { return srv.Stats().Active == 3 })

	// Full: the newcomer takes the never-spoke connection's place, although
	// the quiet client has been silent longer.
	if _, err := NewPinger(dial(t, ns, addr)).Ping(ctx, time.Second); err != nil {
		t.Fatalf("the newcomer was not served: %v", err)
	}
	if !readBusy(t, older) {
		t.Fatal("the connection that never spoke was not closed with a busy frame")
	}
	// Full of clients that spoke, none silent for EvictAfter yet: busy.
	if _, err := NewPinger(dial(t, ns, addr)).Ping(ctx, time.Second); !errors.Is(err, ErrBusy) {
		t.Fatalf("with no client silent for EvictAfter the newcomer got %v; want ErrBusy", err)
	}
	// Once the quiet one has been silent for EvictAfter, the next newcomer
	// takes its place; the one that kept beating stays.
	for time.Since(quietAt) < srv.EvictAfter {
		if _, err := beating.Ping(ctx, time.Second); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond) // the beat's interval
	}
	if _, err := beating.Ping(ctx, time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := NewPinger(dial(t, ns, addr)).Ping(ctx, time.Second); err != nil {
		t.Fatalf("with a client silent past EvictAfter the newcomer was not served: %v", err)
	}
	if _, err := quiet.Ping(ctx, time.Second); !errors.Is(err, ErrBusy) {
		t.Fatalf("the evicted quiet client's next ping: %v; want ErrBusy", err)
	}
	if _, err := beating.Ping(ctx, time.Second); err != nil {
		t.Fatalf("the beating client lost its slot: %v", err)
	}
	if st := srv.Stats(); st.Evicted != 2 || st.Rejected != 1 {
		t.Fatalf("stats %+v: want 2 evicted, 1 rejected", st)
	}
}

// attack holds connections to addr until ctx ends: silent ones that send
// nothing, and garbage ones that send 1 to 23 random bytes (nine in ten) or 24 to
// 64 (a malformed frame); each reconnects as soon as the server closes it.
func attack(ctx context.Context, ns Namespace, addr string, silent, garbage int) (wait func() (conns int)) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	total := 0
	one := func(junk bool) {
		defer wg.Done()
		buf := make([]byte, 64)
		for ctx.Err() == nil {
			c, err := Dial(ctx, ns, addr, SocketOptions{ConnectTimeout: 3 * time.Second})
			if err != nil {
				// The listen backlog overflows under the churn: try again.
				select {
				case <-ctx.Done():
				case <-time.After(10 * time.Millisecond):
				}
				continue
			}
			mu.Lock()
			total++
			mu.Unlock()
			stop := context.AfterFunc(ctx, func() { c.Close() })
			if junk {
				n := 1 + rand.IntN(23)
				if rand.IntN(10) == 0 {
					n = 24 + rand.IntN(41)
				}
				for i := range buf[:n] {
					buf[i] = byte(rand.Uint32())
				}
				c.Write(buf[:n])
			}
			io.Copy(io.Discard, c) // until the server closes it
			stop()
			c.Close()
		}
	}
	for i := 0; i < silent+garbage; i++ {
		wg.Add(1)
		go one(i >= silent)
	}
	return func() int {
		wg.Wait()
		return total
	}
}

// TestServerUnderSilentAndGarbageClients is the starvation attack of issue 14:
// with the default limits (1,024 slots), 200 silent clients and 1,000 garbage
// clients that reconnect whenever closed keep the server full, and a well-behaved
// client is still answered, in each of three runs. (Before the handshake deadline
// and eviction, the holders took every slot for the read timeout's 65 minutes and
// the client was closed unanswered.)
func TestServerUnderSilentAndGarbageClients(t *testing.T) {
	noLeak(t)
	ns := testnet.NewNS(t).NetNS()
	srv := &Server{}
	addr := serve(t, ns, "127.0.0.1:7077", srv)
	lim := srv.limits()
	for run := 1; run <= 3; run++ {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		wait := attack(ctx, ns, addr, 200, 1000)
		before := srv.Stats()
		// Full, and every slot's worth evicted once: the attack has gone on long
		// enough that, without eviction, holders would have every slot.
		waitFor(t, "the attackers fill the server and churn through it", 30*time.Second, func() bool {
			st := srv.Stats()
			return st.Active == int64(lim.maxClients) && st.Evicted >= before.Evicted+uint64(lim.maxClients)
		})
		start := time.Now()
		c, err := Dial(ctx, ns, addr, SocketOptions{ConnectTimeout: 5 * time.Second})
		if err != nil {
			cancel()
			wait()
			t.Fatalf("run %d: the good client cannot connect: %v", run, err)
		}
		p := NewPinger(c)
		var rtts []time.Duration
		for i := 0; i < 3 && err == nil; i++ {
			var rtt time.Duration
			rtt, err = p.Ping(ctx, 2*time.Second)
			rtts = append(rtts, rtt)
		}
		took := time.Since(start)
		c.Close()
		cancel()
		conns := wait()
		st := srv.Stats()
		t.Logf("run %d: %d attacking connections, %d evicted, %d timed out, %d malformed; the good client's 3 pings took %v (rtts %v)",
			run, conns, st.Evicted-before.Evicted, st.TimedOut-before.TimedOut, st.Malformed-before.Malformed, took, rtts)
		if err != nil {
			t.Fatalf("run %d: a well-behaved client under attack: %v", run, err)
		}
		waitFor(t, "the attackers' connections end", 10*time.Second, func() bool { return srv.Stats().Active == 0 })
	}
}
