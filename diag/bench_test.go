package diag

import (
	"context"
	"os/exec"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/tcpkeep/tcpkeep/internal/testnet"
)

// benchNamespaces runs fn as a sub-benchmark for each socket count of
// TCPKEEP_BENCH_SOCKETS (testnet.BenchSockets), on a namespace holding that many
// established sockets.
func benchNamespaces(b *testing.B, fn func(b *testing.B, ns *testnet.NS, sockets int)) {
	for _, n := range testnet.BenchSockets(b) {
		b.Run("sockets="+strconv.Itoa(n), func(b *testing.B) {
			ns := testnet.NewNS(b)
			fn(b, ns, testnet.Many(b, ns, n))
		})
	}
}

// dumpCount runs one full dump and counts the sockets.
func dumpCount(b *testing.B, c *Conn) int {
	n := 0
	for _, err := range c.Sockets(context.Background(), nil) {
		if err != nil {
			b.Fatal(err)
		}
		n++
	}
	return n
}

// BenchmarkDump is the dump and decode of every socket of a namespace holding
// TCPKEEP_BENCH_SOCKETS established sockets: one op is one whole dump.
// (netlink.Conn.ReceiveIter, which the receiver replaced, made 0.22 allocations
// per socket and took 2.6 times as long: docs/performance.md.)
func BenchmarkDump(b *testing.B) {
	benchNamespaces(b, func(b *testing.B, ns *testnet.NS, n int) { benchDump(b, dialNS(b, ns), n) })
}

func benchDump(b *testing.B, c *Conn, n int) {
	if got := dumpCount(b, c); got < n {
		b.Fatalf("dumped %d sockets, want at least %d", got, n)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ReportAllocs()
	b.ResetTimer()
	ops := 0
	for b.Loop() {
		dumpCount(b, c)
		ops++
	}
	b.StopTimer()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(ops*n), "ns/socket")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(ops*n), "allocs/socket")
	b.ReportMetric(float64(n), "sockets")
}

// BenchmarkDumpVsSS times, in the same run and on the same namespace,
// `ss -tinoeH > /dev/null` and the diag dump (dump and decode of every socket),
// and reports their ratio. DESIGN.md's target: dump/ss <= 0.35.
func BenchmarkDumpVsSS(b *testing.B) {
	benchNamespaces(b, func(b *testing.B, ns *testnet.NS, n int) {
		c := dialNS(b, ns)
		var ssTime, dumpTime time.Duration
		ops := 0
		for b.Loop() {
			t0 := time.Now()
			ns.Do(func() error {
				// Forked from a thread inside ns, ss runs inside ns; its output
				// goes to /dev/null (a nil Stdout).
				return exec.Command("ss", "-tinoeH").Run()
			})
			t1 := time.Now()
			if got := dumpCount(b, c); got < n {
				b.Fatalf("dumped %d sockets, want at least %d", got, n)
			}
			t2 := time.Now()
			ssTime += t1.Sub(t0)
			dumpTime += t2.Sub(t1)
			ops++
		}
		b.ReportMetric(float64(dumpTime)/float64(ssTime), "dump/ss")
		b.ReportMetric(float64(ssTime.Microseconds())/1000/float64(ops), "ss-ms")
		b.ReportMetric(float64(dumpTime.Microseconds())/1000/float64(ops), "dump-ms")
		b.ReportMetric(float64(n), "sockets")
	})
}
