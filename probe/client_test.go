package probe

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/tcpkeep/tcpkeep/internal/proc"
	"github.com/tcpkeep/tcpkeep/internal/testnet"
	"github.com/tcpkeep/tcpkeep/sysctl"
)

// TestDialSetsSocketOptions: Dial's keepalive and TCP_USER_TIMEOUT are on the
// socket (getsockopt and ss agree), and without them keepalive is off, although
// Go would turn it on.
func TestDialSetsSocketOptions(t *testing.T) {
	noLeak(t)
	p := testnet.NewPair(t)
	addr := serve(t, p.B.NetNS(), "10.77.0.2:7077", &Server{})
	ctx := context.Background()

	c, err := Dial(ctx, p.A.NetNS(), addr, SocketOptions{Keepalive: &sysctl.Keepalive{Time: 7 * time.Second, Intvl: 3 * time.Second, Probes: 4}, UserTimeout: 1500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	o, err := proc.ReadOwn(c)
	if err != nil {
		t.Fatal(err)
	}
	if !o.KeepaliveOn || o.Keepalive != (sysctl.Keepalive{Time: 7 * time.Second, Intvl: 3 * time.Second, Probes: 4}) || o.UserTimeout != 1500*time.Millisecond {
		t.Fatalf("socket has keepalive %v %+v, user timeout %v; want 7s/3s/4 and 1.5s", o.KeepaliveOn, o.Keepalive, o.UserTimeout)
	}
	out, err := exec.Command("ip", "netns", "exec", p.A.Name, "ss", "-tinoeH", "state", "established", "dport", "7077").CombinedOutput()
	if err != nil {
		t.Fatalf("ss: %v: %s", err, out)
	}
	if !strings.Contains(string(out), "timer:(keepalive,") {
		t.Fatalf("ss shows no keepalive timer on the connection:\n%s", out)
	}

	off, err := Dial(ctx, p.A.NetNS(), addr, SocketOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer off.Close()
	if o, err := proc.ReadOwn(off); err != nil || o.KeepaliveOn || o.UserTimeout != 0 {
		t.Fatalf("default socket has keepalive %v, user timeout %v (%v); want off", o.KeepaliveOn, o.UserTimeout, err)
	}
	if _, err := Dial(ctx, p.A.NetNS(), addr, SocketOptions{Keepalive: &sysctl.Keepalive{Time: 1500 * time.Millisecond, Intvl: time.Second, Probes: 1}}); err == nil {
		t.Fatal("a fractional TCP_KEEPIDLE was accepted")
	}
}

// TestHeartbeatThroughFirewall: beating every second keeps a connection alive
// through a firewall that forgets flows idle for 2 s; when the server's link goes
// down, the client declares it dead within interval x misses + timeout.
func TestHeartbeatThroughFirewall(t *testing.T) {
	noLeak(t)
	r := testnet.NewRouter(t, 2*time.Second)
	addr := serve(t, r.Server.NetNS(), r.ServerAddr(7077), &Server{})
	cfg := Config{Interval: time.Second, Timeout: 500 * time.Millisecond, Misses: 2}

	c, err := Dial(context.Background(), r.Client.NetNS(), addr, SocketOptions{})
	if err != nil {
		t.Fatal(err)
	}
	beats := make(chan Beat, 100)
	type outcome struct {
		v   Verdict
		err error
	}
	done := make(chan outcome, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		v, err := Run(ctx, c, cfg, func(b Beat) { beats <- b })
		done <- outcome{v, err}
	}()

	// Past twice the firewall's timeout, every beat is answered.
	for i := 0; i < 5; i++ {
		select {
		case b := <-beats:
			if !b.OK {
				t.Fatalf("beat %d through the firewall missed: %v", b.Seq, b.Err)
			}
		case <-time.After(3 * time.Second):
			t.Fatal("no beat for 3 s")
		}
	}
	r.ServerDown()
	down := time.Now()
	var o outcome
	select {
	case o = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the client did not declare the vanished server dead within 10 s")
	}
	took := time.Since(down)
	bound := cfg.DetectWithin()
	t.Logf("declared dead %v after the link went down (bound %v): %+v", took, bound, o.v)
	if o.err != nil {
		t.Fatal(o.err)
	}
	if o.v.Alive || o.v.Sent-o.v.Received != cfg.Misses || o.v.Received < 5 {
		t.Fatalf("verdict %+v: want dead after %d misses, at least 5 received", o.v, cfg.Misses)
	}
	if took > bound+400*time.Millisecond {
		t.Fatalf("declared dead %v after the link went down, bound %v", took, bound)
	}
}

// TestRunEndsWithContext: an ended context ends a run with the verdict so far,
// alive, and Run closes its connection.
func TestRunEndsWithContext(t *testing.T) {
	noLeak(t)
	ns := testnet.NewNS(t).NetNS()
	addr := serve(t, ns, "127.0.0.1:7077", &Server{})
	c := dial(t, ns, addr)
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	v, err := Run(ctx, c, Config{Interval: 50 * time.Millisecond}, func(b Beat) {
		if n++; n == 3 {
			cancel()
		}
	})
	if err != nil || !v.Alive || v.Sent != 3 || v.Received != 3 || v.RTTMin <= 0 || v.RTTMin > v.RTTAvg || v.RTTAvg > v.RTTMax {
		t.Fatalf("Run = %+v, %v; want alive, 3 of 3, ordered RTTs", v, err)
	}
	if _, err := c.Write([]byte{0}); err == nil {
		t.Fatal("Run left its connection open")
	}
	if _, err := Run(context.Background(), dial(t, ns, addr), Config{Interval: time.Second, Timeout: 2 * time.Second}, nil); err == nil {
		t.Fatal("a timeout longer than the interval was accepted")
	}
}

// TestDiscoverIdleFindsRouterTimeout: probe idle measures a firewall that forgets
// flows idle for 3 s to within the resolution.
func TestDiscoverIdleFindsRouterTimeout(t *testing.T) {
	noLeak(t)
	r := testnet.NewRouter(t, 3*time.Second)
	addr := serve(t, r.Server.NetNS(), r.ServerAddr(7077), &Server{})
	cfg := IdleConfig{Addr: addr, NetNS: r.Client.NetNS(), Min: time.Second, Max: 8 * time.Second, Resolution: time.Second, Timeout: time.Second}
	start := time.Now()
	res, err := DiscoverIdle(context.Background(), cfg, func(tr Trial) { t.Logf("round %d: idle %v survived %v %s", tr.Round, tr.Idle, tr.Survived, tr.Reason) })
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v in %v", res, time.Since(start))
	if d := res.Estimate - r.IdleTimeout; d > cfg.Resolution || d < -cfg.Resolution {
		t.Fatalf("estimate %v, the router's timeout is %v: not within %v", res.Estimate, r.IdleTimeout, cfg.Resolution)
	}
	if res.Died == 0 || res.Died-res.Survived > cfg.Resolution || res.Survived > r.IdleTimeout || res.Died < r.IdleTimeout-cfg.Resolution/2 {
		t.Fatalf("survived %v, died %v: want them within %v around %v", res.Survived, res.Died, cfg.Resolution, r.IdleTimeout)
	}
}
