package cli

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tcpkeep/tcpkeep/internal/testnet"
)

// timed runs a command with stdout to /dev/null, started from a thread inside
// ns (ss has no --netns; tcpkeep is given --netns as well), and returns its wall
// time and its CPU time (user + system), which other work on the machine
// disturbs less.
func timed(b *testing.B, ns *testnet.NS, devnull *os.File, name string, args ...string) (wall, cpu time.Duration) {
	b.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stdout = devnull
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	ns.Do(cmd.Start)
	err := cmd.Wait()
	d := time.Since(start)
	if err != nil {
		b.Fatalf("%s %v: %v: %s", name, args, err, stderr.Bytes())
	}
	return d, cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
}

// peakRSS runs a command as timed does, under GNU time, and returns its peak RSS
// in KiB: ru_maxrss from time's wait4. The Go test's own wait4 cannot tell it:
// os/exec starts children with vfork (CLONE_VM), and exec charges the parent's
// peak RSS, the test binary's, to the child's ru_maxrss.
func peakRSS(b *testing.B, ns *testnet.NS, devnull *os.File, name string, args ...string) int64 {
	b.Helper()
	f := filepath.Join(b.TempDir(), "maxrss")
	_, _ = timed(b, ns, devnull, gnuTime, append([]string{"-f", "%M", "-o", f, name}, args...)...)
	out, err := os.ReadFile(f)
	if err != nil {
		b.Fatal(err)
	}
	kib, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		b.Fatalf("%s: %q: %v", gnuTime, out, err)
	}
	return kib
}

const gnuTime = "/usr/bin/time"

// BenchmarkConnsVsSS times `ss -tinoeH > /dev/null` and `tcpkeep conns -o ndjson
// > /dev/null` on the same namespace of N established sockets, in the same run,
// and reports their ratio and tcpkeep's peak RSS. DESIGN.md's targets: ratio
// <= 0.7, peak RSS <= 32 MiB and flat in N.
func BenchmarkConnsVsSS(b *testing.B) {
	benchNamespaces(b, func(b *testing.B, bin string, ns *testnet.NS, made int, devnull *os.File) {

		// Once, untimed: tcpkeep prints every socket and a summary.
		out, err := exec.Command(bin, "--netns", ns.Name, "conns", "-o", "ndjson").Output()
		if err != nil {
			b.Fatalf("tcpkeep conns: %v", err)
		}
		lines := 0
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			lines++
		}
		if lines != made+1 {
			b.Fatalf("tcpkeep conns printed %d lines, want %d sockets and a summary", lines, made)
		}
		out = nil

		compareWithSS(b, ns, devnull, made, "conns", bin, "--netns", ns.Name, "conns", "-o", "ndjson")
		// -p keeps one map entry per socket inode on the host.
		pRSS := peakRSS(b, ns, devnull, bin, "--netns", ns.Name, "conns", "-o", "ndjson", "-p")
		b.ReportMetric(float64(pRSS)/1024, "conns-p-peak-RSS-MiB")
	})
}

// compareWithSS times `ss -tinoeH > /dev/null` and the tcpkeep command line (bin,
// args) in turns, in the same run, and reports their wall and CPU ratios, peak
// RSS (the worse of 3 runs) and time per socket, each metric named for what.
func compareWithSS(b *testing.B, ns *testnet.NS, devnull *os.File, sockets int, what, bin string, args ...string) {
	b.Helper()
	var ssT, tkT, ssCPU, tkCPU time.Duration
	runs := 0
	for b.Loop() {
		w, c := timed(b, ns, devnull, "ss", "-tinoeH")
		ssT, ssCPU = ssT+w, ssCPU+c
		w, c = timed(b, ns, devnull, bin, args...)
		tkT, tkCPU = tkT+w, tkCPU+c
		runs++
	}
	b.StopTimer()
	var rss, ssRSS int64
	for range 3 {
		rss = max(rss, peakRSS(b, ns, devnull, bin, args...))
		ssRSS = max(ssRSS, peakRSS(b, ns, devnull, "ss", "-tinoeH"))
	}
	b.ReportMetric(float64(sockets), "sockets")
	b.ReportMetric(float64(ssT.Microseconds())/1000/float64(runs), "ss-ms")
	b.ReportMetric(float64(tkT.Microseconds())/1000/float64(runs), what+"-ms")
	b.ReportMetric(float64(tkT)/float64(ssT), what+"/ss")
	b.ReportMetric(float64(tkCPU)/float64(ssCPU), what+"/ss-cpu")
	b.ReportMetric(float64(rss)/1024, what+"-peak-RSS-MiB")
	b.ReportMetric(float64(ssRSS)/1024, "ss-peak-RSS-MiB")
	b.ReportMetric(float64(tkT.Nanoseconds())/float64(runs)/float64(sockets), what+"-ns/socket")
}

// benchNamespaces builds tcpkeep, then for each socket count of benchSockets runs
// fn as a sub-benchmark on a fresh namespace holding that many established
// sockets (testnet.Many), with /dev/null open for the commands' output.
func benchNamespaces(b *testing.B, fn func(b *testing.B, bin string, ns *testnet.NS, sockets int, devnull *os.File)) {
	testnet.RequireRoot(b)
	if _, err := exec.LookPath("ss"); err != nil {
		b.Fatal("ss (iproute2) is the reference: install iproute2")
	}
	if _, err := os.Stat(gnuTime); err != nil {
		b.Fatalf("%s measures peak RSS: apt-get install time", gnuTime)
	}
	bin := tcpkeepBin
	for _, n := range testnet.BenchSockets(b) {
		b.Run("sockets="+strconv.Itoa(n), func(b *testing.B) {
			ns := testnet.NewNS(b)
			made := testnet.Many(b, ns, n)
			devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
			if err != nil {
				b.Fatal(err)
			}
			defer devnull.Close()
			fn(b, bin, ns, made, devnull)
		})
	}
}
