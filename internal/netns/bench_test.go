package netns_test

import (
	"context"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tcpkeep/tcpkeep/diag"
	"github.com/tcpkeep/tcpkeep/internal/netns"
	"github.com/tcpkeep/tcpkeep/internal/testnet"
)

// benchEnv reads a count from the environment, def if unset.
func benchEnv(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		b.Fatalf("%s=%q: want a positive count", name, v)
	}
	return n
}

// dumpTo is what a command does per namespace: dial sock_diag (by descriptor,
// or on the thread the walk entered), dump every socket and write a line for
// each, in 32 KiB writes.
func dumpTo(enter bool) func(ctx context.Context, v *netns.Visit) error {
	return func(ctx context.Context, v *netns.Visit) error {
		var ns diag.Namespace = v
		if enter {
			ns = nil // the thread is inside already
		}
		c, err := diag.Dial(ns)
		if err != nil {
			return err
		}
		defer c.Close()
		buf := make([]byte, 0, 32<<10)
		for s, err := range c.Sockets(ctx, nil) {
			if err != nil {
				return err
			}
			buf = append(buf, v.Name...)
			buf = append(buf, ' ')
			buf = strconv.AppendUint(buf, uint64(s.Inode), 10)
			buf = append(buf, ' ')
			buf = strconv.AppendUint(buf, s.Cookie, 16)
			buf = append(buf, '\n')
			if len(buf) > 31<<10 {
				if _, err := v.Out.Write(buf); err != nil {
					return err
				}
				buf = buf[:0]
			}
		}
		_, err = v.Out.Write(buf)
		return err
	}
}

// shellLoop is what an operator runs instead: ss in each namespace, one
// nsenter at a time.
func shellLoop(b *testing.B, paths []string) time.Duration {
	start := time.Now()
	cmd := exec.Command("sh", "-c", `for p in "$@"; do nsenter --net="$p" ss -tinoeH; done > /dev/null`, "sh")
	cmd.Args = append(cmd.Args, paths...)
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("shell loop: %v\n%s", err, out)
	}
	return time.Since(start)
}

// BenchmarkAllNetns: N namespaces x C connections (TCPKEEP_BENCH_NETNS, 100,
// and TCPKEEP_BENCH_NETNS_CONNS, 100, by default). enumerate is Enumerate
// alone; walk/enter is a walk over the first k namespaces dumping every socket
// (linear in k), dialled by descriptor or entered; walk/par is the whole walk
// at P at once; enumerate+walk is both over all N, with its time as a fraction
// of a shell loop of `nsenter --net=NS ss -tinoeH` over the same namespaces
// (x-shell-loop).
func BenchmarkAllNetns(b *testing.B) {
	n := benchEnv(b, "TCPKEEP_BENCH_NETNS", 100)
	conns := benchEnv(b, "TCPKEEP_BENCH_NETNS_CONNS", 100)
	nss := testnet.NewNamespaces(b, n)
	list := make([]netns.NS, n)
	var inodes []uint64
	var paths []string
	for i, ns := range nss {
		list[i] = ns.NetNS()
		inodes = append(inodes, inodeOf(b, ns.NetNS().Path))
		paths = append(paths, ns.NetNS().Path)
	}
	sockets := testnet.Fill(b, list, conns)
	mine := ours(b, enumerate(b), inodes...)
	ctx := context.Background()
	walk := func(b *testing.B, w *netns.Walker, list []netns.Namespace, enter bool) {
		res, err := w.Walk(ctx, list, io.Discard, dumpTo(enter))
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range res {
			if r.Err != nil {
				b.Fatal(r.Err)
			}
			if want := int64(sockets) * int64(len(r.Namespace.Name)+1+5+1+1); r.Wrote < want {
				b.Fatalf("%s: wrote %d bytes, want at least %d (%d sockets)", r.Namespace.Name, r.Wrote, want, sockets)
			}
		}
	}

	b.Run("enumerate", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := netns.Enumerate(); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, enter := range []bool{false, true} {
		for _, k := range []int{n / 4, n / 2, n} {
			if k == 0 {
				continue
			}
			b.Run("walk/enter="+strconv.FormatBool(enter)+"/netns="+strconv.Itoa(k), func(b *testing.B) {
				w := &netns.Walker{Enter: enter}
				b.ReportAllocs()
				for b.Loop() {
					walk(b, w, mine[:k], enter)
				}
				b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/float64(k), "us/netns")
			})
		}
	}
	for _, par := range []int{1, 2, 4, 8} {
		b.Run("walk/par="+strconv.Itoa(par)+"/netns="+strconv.Itoa(n), func(b *testing.B) {
			w := &netns.Walker{Enter: true, Parallel: par}
			b.ReportAllocs()
			for b.Loop() {
				walk(b, w, mine, true)
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/float64(n), "us/netns")
		})
	}
	b.Run("overhead/netns="+strconv.Itoa(n), func(b *testing.B) {
		// What the walk adds to the kernel's dumps: each iteration dumps every
		// namespace through sock_diag connections dialled beforehand, one after
		// the other, then walks them at Parallel 1 (open, check, enter, dial,
		// dump, write, leave), so both see the same load (x-raw-dump).
		conns := make([]*diag.Conn, len(mine))
		for i, ns := range mine {
			var err error
			conns[i], err = diag.Dial(ns.NS)
			if err != nil {
				b.Fatal(err)
			}
			defer conns[i].Close()
		}
		w := &netns.Walker{Enter: true, Parallel: 1}
		var raw, walked time.Duration
		b.ReportAllocs()
		for b.Loop() {
			start := time.Now()
			for _, c := range conns {
				for _, err := range c.Sockets(ctx, nil) {
					if err != nil {
						b.Fatal(err)
					}
				}
			}
			mid := time.Now()
			walk(b, w, mine, true)
			raw, walked = raw+mid.Sub(start), walked+time.Since(mid)
		}
		b.ReportMetric(float64(walked)/float64(raw), "x-raw-dump")
		b.ReportMetric(float64(raw.Microseconds())/float64(b.N)/float64(n), "raw-us/netns")
	})
	b.Run("enumerate+walk/netns="+strconv.Itoa(n), func(b *testing.B) {
		// The shell loop, best of three, as the yardstick.
		shell := shellLoop(b, paths)
		for range 2 {
			shell = min(shell, shellLoop(b, paths))
		}
		w := &netns.Walker{Enter: true}
		runtime.GC()
		stopPeak := samplePeakHeap()
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			f, err := netns.Enumerate()
			if err != nil {
				b.Fatal(err)
			}
			list := f.Namespaces[:0]
			for _, ns := range f.Namespaces {
				if strings.HasPrefix(ns.Name, "tk-") && containsIno(inodes, ns.Ino) {
					list = append(list, ns)
				}
			}
			if len(list) != n {
				b.Fatalf("found %d of %d namespaces", len(list), n)
			}
			walk(b, w, list, true)
		}
		per := b.Elapsed() / time.Duration(b.N)
		base, peak := stopPeak()
		b.ReportMetric(float64(peak-base)/(1<<20), "peak-heap-growth-MiB")
		b.ReportMetric(float64(per)/float64(shell), "x-shell-loop")
		b.ReportMetric(float64(shell.Microseconds())/1000, "shell-loop-ms")
	})
}

// samplePeakHeap samples the bytes in live and not yet swept heap objects
// every 100 us until stopped, and returns the first sample and the highest: how
// far the walk made the heap grow. Sampling can miss a short spike; garbage not
// yet collected counts.
func samplePeakHeap() (stop func() (base, peak uint64)) {
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() uint64 {
		metrics.Read(sample)
		return sample[0].Value.Uint64()
	}
	base := read()
	done := make(chan struct{})
	result := make(chan uint64)
	go func() {
		peak := base
		t := time.NewTicker(100 * time.Microsecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				result <- peak
				return
			case <-t.C:
				peak = max(peak, read())
			}
		}
	}()
	return func() (uint64, uint64) {
		close(done)
		return base, <-result
	}
}

func containsIno(inodes []uint64, ino uint64) bool {
	for _, i := range inodes {
		if i == ino {
			return true
		}
	}
	return false
}
