package cli

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/tcpkeep/tcpkeep/internal/testnet"
)

// BenchmarkKill measures tcpkeep kill on a namespace of N established sockets
// (TCPKEEP_BENCH_SOCKETS): dry runs that select every socket (one dump) and the
// surplus over --max-per-peer 100 (two dumps), with their peak RSS; then, once,
// a real kill of every socket, against ss -K on a second namespace of the same
// size.
func BenchmarkKill(b *testing.B) {
	benchNamespaces(b, func(b *testing.B, bin string, ns *testnet.NS, made int, devnull *os.File) {
		all := []string{"--netns", ns.Name, "kill", "--state", "established", "-o", "ndjson"}
		perPeer := []string{"--netns", ns.Name, "kill", "--max-per-peer", "100", "-o", "ndjson", "--dry-run"}

		var dryT, peerT time.Duration
		runs := 0
		for b.Loop() {
			w, _ := timed(b, ns, devnull, bin, append(all, "--dry-run")...)
			dryT += w
			w, _ = timed(b, ns, devnull, bin, perPeer...)
			peerT += w
			runs++
		}
		b.StopTimer()
		dryRSS := peakRSS(b, ns, devnull, bin, append(all, "--dry-run")...)
		peerRSS := peakRSS(b, ns, devnull, bin, perPeer...)

		killT, _ := timed(b, ns, devnull, bin, all...)
		if left := established(b, ns); left != 0 {
			b.Fatalf("%d ESTABLISHED sockets left after tcpkeep kill, want 0", left)
		}

		ns2 := testnet.NewNS(b)
		if made2 := testnet.Many(b, ns2, made); made2 != made {
			b.Fatalf("second namespace: %d sockets, want %d", made2, made)
		}
		ssT, _ := timed(b, ns2, devnull, "ss", "-K", "-tanH", "state", "established")
		if left := established(b, ns2); left != 0 {
			b.Fatalf("%d ESTABLISHED sockets left after ss -K, want 0", left)
		}

		b.ReportMetric(float64(made), "sockets")
		b.ReportMetric(float64(dryT.Microseconds())/1000/float64(runs), "dry-run-all-ms")
		b.ReportMetric(float64(peerT.Microseconds())/1000/float64(runs), "dry-run-per-peer-ms")
		b.ReportMetric(float64(dryRSS)/1024, "dry-run-all-peak-RSS-MiB")
		b.ReportMetric(float64(peerRSS)/1024, "per-peer-peak-RSS-MiB")
		b.ReportMetric(float64(killT.Microseconds())/1000, "kill-all-ms")
		b.ReportMetric(float64(ssT.Microseconds())/1000, "ss-K-ms")
	})
}

// established counts the ESTABLISHED sockets in ns, as ss sees them.
func established(b *testing.B, ns *testnet.NS) int {
	b.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns.Name, "ss", "-tanH", "state", "established").Output()
	if err != nil {
		b.Fatalf("ss: %v", err)
	}
	return strings.Count(string(out), "\n")
}
