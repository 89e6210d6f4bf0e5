package kill_test

import (
	"context"
	"testing"
	"time"

	"github.com/tcpkeep/tcpkeep/diag"
	"github.com/tcpkeep/tcpkeep/internal/kernel"
	"github.com/tcpkeep/tcpkeep/internal/kill"
	"github.com/tcpkeep/tcpkeep/internal/proc"
	"github.com/tcpkeep/tcpkeep/internal/testnet"
)

// BenchmarkArm arms every established socket of a namespace whose sockets
// another process holds (testnet.Many): per socket, a pidfd_getfd, the identity
// checks (fstat, SO_PROTOCOL, SO_COOKIE), five getsockopt before, five
// setsockopt and five getsockopt after. The values alternate so that every
// iteration sets them.
func BenchmarkArm(b *testing.B) {
	ns := testnet.NewNS(b)
	n := testnet.Many(b, ns, 4000)
	k := kernel.Live(ns.NetNS())
	f := proc.NewFinder("/proc", 0)
	defer f.Close()
	cfg := kill.ArmConfig{Filter: &diag.Filter{States: diag.Of(diag.StateEstablished)}, All: true, Owners: f}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cfg.Keepalive = values(time.Duration(60+i%2)*time.Second, 10*time.Second, 5)
		sum, err := kill.Arm(context.Background(), k, cfg, func(*kill.ArmAction) {})
		if err != nil || sum.Armed != n {
			b.Fatalf("summary %+v %v, want %d armed", sum, err, n)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/socket")
}
