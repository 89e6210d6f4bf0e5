package kill

import (
	"context"
	"iter"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/tcpkeep/tcpkeep/diag"
	"github.com/tcpkeep/tcpkeep/internal/audit"
)

// TestKeeperClosesIdlestSurplus: whatever order the dump hands a peer's
// connections out in, the second pass closes exactly the idlest beyond the
// limit, and nothing of peers within it.
func TestKeeperClosesIdlestSurplus(t *testing.T) {
	mk := func(remote string, port uint16, idle time.Duration, cookie uint64) diag.Socket {
		return diag.Socket{
			Family: diag.FamilyInet, State: diag.StateEstablished, Cookie: cookie,
			Local:  netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), port),
			Remote: netip.AddrPortFrom(netip.MustParseAddr(remote), 40000+uint16(cookie)),
			Info:   diag.TCPInfo{Len: 280, LastDataSent: idle, LastDataRecv: idle},
		}
	}
	for _, limit := range []int{1, 3, 7} {
		for seed := range uint64(20) {
			var socks []diag.Socket
			// Peer A: 10 connections to port 443, idle 1s..10s (cookie = idle
			// in s), half of them on IPv6 sockets with the IPv4-mapped address:
			// the same peer.
			for i := 1; i <= 10; i++ {
				if i%2 == 0 {
					a := mk("::ffff:192.0.2.7", 443, time.Duration(i)*time.Second, uint64(i))
					a.Family = diag.FamilyInet6
					socks = append(socks, a)
					continue
				}
				socks = append(socks, mk("192.0.2.7", 443, time.Duration(i)*time.Second, uint64(i)))
			}
			// Peer A on another port, and peer B on the same port: within the
			// limit, even though they are idler than all of A's.
			for i := 0; i < limit; i++ {
				socks = append(socks, mk("192.0.2.7", 80, time.Hour, uint64(100+i)))
				socks = append(socks, mk("192.0.2.8", 443, time.Hour, uint64(200+i)))
			}
			// Not connections: never counted.
			lis := mk("0.0.0.0", 443, 0, 999)
			lis.State = diag.StateListen
			socks = append(socks, lis)

			r := rand.New(rand.NewPCG(seed, 1))
			p := newPeerCounts(limit)
			r.Shuffle(len(socks), func(i, j int) { socks[i], socks[j] = socks[j], socks[i] })
			for i := range socks {
				p.count(&socks[i])
			}
			if !p.over() || len(p.groups) != 1 {
				t.Fatalf("limit %d: %d peers over the limit, want 1", limit, len(p.groups))
			}
			r.Shuffle(len(socks), func(i, j int) { socks[i], socks[j] = socks[j], socks[i] })
			var closed []uint64
			for i := range socks {
				if v := p.offer(&socks[i]); v != nil {
					closed = append(closed, v.Cookie)
				}
			}
			slices.Sort(closed)
			var want []uint64
			for i := limit + 1; i <= 10; i++ {
				want = append(want, uint64(i))
			}
			if !slices.Equal(closed, want) {
				t.Errorf("limit %d, seed %d: closed %v, want the idlest %v", limit, seed, closed, want)
			}
		}
	}
}

// dumps is a Dumper that hands out one prepared table per call.
type dumps [][]diag.Socket

func (d *dumps) Sockets(context.Context, *diag.Filter) iter.Seq2[*diag.Socket, error] {
	table := (*d)[0]
	*d = (*d)[1:]
	return func(yield func(*diag.Socket, error) bool) {
		for i := range table {
			if !yield(&table[i], nil) {
				return
			}
		}
	}
}

type noDestroy struct{}

func (noDestroy) Destroy(*diag.Socket) error { return nil }

// TestFindingBetweenTheDumps: with --finding and --max-per-peer, a socket a rule
// flags only in the second dump (it idled past the limit meanwhile) is closed
// for its finding; one flagged in both dumps is closed once.
func TestFindingBetweenTheDumps(t *testing.T) {
	mk := func(cookie uint64, idle time.Duration) diag.Socket {
		return diag.Socket{
			Family: diag.FamilyInet, State: diag.StateEstablished, Cookie: cookie, Timer: diag.TimerKeepalive,
			Local:  netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), 443),
			Remote: netip.AddrPortFrom(netip.MustParseAddr("192.0.2.7"), 40000+uint16(cookie)),
			Info:   diag.TCPInfo{Len: 280, LastDataSent: idle, LastDataRecv: idle},
		}
	}
	h := time.Hour
	first := []diag.Socket{mk(1, 2*h), mk(2, 30*time.Minute), mk(3, time.Second), mk(4, time.Second)}
	second := []diag.Socket{mk(1, 2*h), mk(2, 2*h), mk(3, time.Second), mk(4, time.Second)}
	d := &dumps{first, second}
	cfg := Config{
		Findings:   []audit.Code{audit.IdleOverlong},
		Audit:      audit.Config{IdleLimit: h},
		MaxPerPeer: 1,
	}
	closed := map[uint64]string{}
	_, err := run1(context.Background(), cfg, d, noDestroy{}, func(a *Action) {
		if prev, ok := closed[a.Socket.Cookie]; ok {
			t.Errorf("socket %d handled twice (%s, then %s)", a.Socket.Cookie, prev, a.Reason)
		}
		closed[a.Socket.Cookie] = a.Reason
	})
	if err != nil {
		t.Fatal(err)
	}
	if closed[1] != string(audit.IdleOverlong) || closed[2] != string(audit.IdleOverlong) {
		t.Errorf("closed %v: want sockets 1 and 2 for idle_overlong", closed)
	}
	if len(closed) != 3 {
		t.Errorf("closed %v: want 1 and 2 for idle_overlong and one of 3, 4 over the per-peer limit", closed)
	}
}
