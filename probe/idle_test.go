package probe

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tcpkeep/tcpkeep/internal/testnet"
)

func TestBetween(t *testing.T) {
	s := time.Second
	for _, tc := range []struct {
		name        string
		lo, hi, res time.Duration
		n           int
		want        []time.Duration
	}{
		{"one step", 2 * s, 4 * s, s, 16, []time.Duration{3 * s}},
		{"to the resolution", 0, 5 * s, s, 16, []time.Duration{s, 2 * s, 3 * s, 4 * s}},
		{"capped by parallel", 0, 100 * s, s, 3, []time.Duration{25 * s, 50 * s, 75 * s}},
		{"within resolution", 2 * s, 3 * s, s, 16, nil},
		{"finer than resolution", 2 * s, 2500 * time.Millisecond, s, 16, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := between(tc.lo, tc.hi, tc.res, tc.n); !slices.Equal(got, tc.want) {
				t.Fatalf("between(%v, %v, %v, %d) = %v, want %v", tc.lo, tc.hi, tc.res, tc.n, got, tc.want)
			}
		})
	}
}

// TestDiscoverIdleNothingForgets: on a path that keeps idle flows (a namespace's
// loopback), every period survives and nothing died: no estimate, Max is only
// a lower bound of the path's timeout.
func TestDiscoverIdleNothingForgets(t *testing.T) {
	noLeak(t)
	ns := testnet.NewNS(t).NetNS()
	addr := serve(t, ns, "127.0.0.1:7077", &Server{})
	var trials []Trial
	res, err := DiscoverIdle(context.Background(), IdleConfig{Addr: addr, NetNS: ns, Min: 100 * time.Millisecond, Max: 500 * time.Millisecond, Resolution: 100 * time.Millisecond, Timeout: time.Second},
		func(tr Trial) { trials = append(trials, tr) })
	if err != nil {
		t.Fatal(err)
	}
	if res.Died != 0 || res.Survived != 500*time.Millisecond || res.Estimate != 0 || res.Trials != 4 || len(trials) != 4 {
		t.Fatalf("%+v after %v: want all 4 periods (100ms to 500ms) survived", res, trials)
	}
	// No server: an error, not a measurement.
	if _, err := DiscoverIdle(context.Background(), IdleConfig{Addr: "127.0.0.1:7078", NetNS: ns, Min: 100 * time.Millisecond, Max: 200 * time.Millisecond}, nil); err == nil {
		t.Fatal("DiscoverIdle without a server returned no error")
	}
	// An ended context ends it at once.
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	if _, err := DiscoverIdle(ctx, IdleConfig{Addr: addr, NetNS: ns, Min: time.Minute, Max: time.Hour}, nil); err == nil || time.Since(start) > 2*time.Second {
		t.Fatalf("DiscoverIdle with an ended context: %v after %v", err, time.Since(start))
	}
}

// A server that closes idle clients (its read timeout) is not a path that
// forgets them: DiscoverIdle says so instead of measuring the server.
func TestDiscoverIdleServerClosing(t *testing.T) {
	noLeak(t)
	ns := testnet.NewNS(t).NetNS()
	addr := serve(t, ns, "127.0.0.1:7077", &Server{ReadTimeout: 300 * time.Millisecond})
	_, err := DiscoverIdle(context.Background(), IdleConfig{Addr: addr, NetNS: ns, Min: 100 * time.Millisecond, Max: 800 * time.Millisecond, Resolution: 100 * time.Millisecond, Timeout: time.Second}, nil)
	if err == nil || !strings.Contains(err.Error(), "measures the server, not the path") {
		t.Fatalf("DiscoverIdle against a server that closes idle clients: %v, want an error saying the server closed", err)
	}
}
