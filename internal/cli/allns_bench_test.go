package cli

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tcpkeep/tcpkeep/internal/netns"
	"github.com/tcpkeep/tcpkeep/internal/testnet"
)

// isolated starts a process in a mount namespace of its own, where /run/netns
// names only names (the others are unmounted there, not on the host), and in
// a pid namespace of its own, so that /proc shows no other process: tcpkeep
// run there (the returned command prefix, nsenter into both) finds exactly
// these namespaces and the one it runs in, whatever other tests on the machine
// make meanwhile. The process is ended, by PID, when the benchmark ends.
func isolated(b *testing.B, names []string) []string {
	b.Helper()
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "--pid", "--kill-child", "--mount-proc", "sh", "-c",
		`for p in /run/netns/* /var/run/docker/netns/*; do case " $KEEP " in *" ${p##*/} "*) ;; *) umount "$p" 2>/dev/null;; esac; done; echo ready; exec sleep infinity`)
	cmd.Env = append(os.Environ(), "KEEP="+strings.Join(names, " "))
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		cmd.Process.Kill() // unshare: --kill-child ends its child, the pid namespace's init
		cmd.Wait()
	})
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "ready\n" {
		b.Fatalf("isolated namespaces: %q, %v", line, err)
	}
	// The pid namespace's init is unshare's child.
	c, err := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/task/" + strconv.Itoa(cmd.Process.Pid) + "/children")
	if err != nil || len(strings.Fields(string(c))) != 1 {
		b.Fatalf("the isolated init: %q, %v", c, err)
	}
	return []string{"nsenter", "--target", strings.Fields(string(c))[0], "--mount", "--pid", "--"}
}

// shellLoop is what an operator runs instead of --all-netns: ss in each
// namespace, one nsenter at a time (the namespace it runs in included).
func shellLoop(paths []string) []string {
	return append([]string{"sh", "-c", `for p in "$@"; do nsenter --net="$p" ss -tinoeH; done`, "sh", "/proc/self/ns/net"}, paths...)
}

// runTimed runs a command with stdout to /dev/null and returns its wall and CPU
// time (user + system, its children's included).
func runTimed(b *testing.B, devnull *os.File, argv ...string) (wall, cpu time.Duration) {
	b.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout = devnull
	var stderr strings.Builder
	cmd.Stderr = &stderr
	start := time.Now()
	err := cmd.Run()
	wall = time.Since(start)
	if err != nil {
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() > 2 { // audit: 1 and 2 are findings
			b.Fatalf("%v: %v: %s", argv, err, stderr.String())
		}
	}
	return wall, cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
}

// maxRSS runs a command under GNU time, and returns its peak RSS in KiB.
func maxRSS(b *testing.B, devnull *os.File, prefix []string, argv ...string) int64 {
	b.Helper()
	f := filepath.Join(b.TempDir(), "maxrss")
	runTimed(b, devnull, append(append(prefix, gnuTime, "-f", "%M", "-o", f), argv...)...)
	out, err := os.ReadFile(f)
	if err != nil {
		b.Fatal(err)
	}
	// The last line: before it, time says the command exited non-zero (audit's
	// findings).
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	kib, err := strconv.ParseInt(lines[len(lines)-1], 10, 64)
	if err != nil {
		b.Fatalf("%s: %q: %v", gnuTime, out, err)
	}
	return kib
}

// BenchmarkAllNetnsVsShellLoop times `tcpkeep --all-netns audit -o json >
// /dev/null` and a shell loop of `nsenter --net=NS ss -tinoeH` over the same
// namespaces, in turns in the same run, over the first 25, 50 and 100 of
// TCPKEEP_BENCH_NETNS (100) namespaces of TCPKEEP_BENCH_NETNS_CONNS (100)
// loopback connections each, and reports the ratio (DESIGN.md's target:
// <= 0.1x), the time per namespace (linear: flat), and tcpkeep's peak RSS;
// then tcpkeep's peak RSS over TCPKEEP_BENCH_NETNS_RSS (1000; 0 skips it)
// namespaces of 10 connections each (target: under 32 MiB).
func BenchmarkAllNetnsVsShellLoop(b *testing.B) {
	testnet.RequireRoot(b)
	for _, tool := range []string{"ss", "nsenter", "unshare", gnuTime} {
		if _, err := exec.LookPath(tool); err != nil {
			b.Fatalf("%s is needed: install iproute2, util-linux and time", tool)
		}
	}
	env := func(name string, def int) int {
		n, err := strconv.Atoi(os.Getenv(name))
		if err != nil {
			return def
		}
		return n
	}
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer devnull.Close()
	bin := tcpkeepBin
	n, conns := env("TCPKEEP_BENCH_NETNS", 100), env("TCPKEEP_BENCH_NETNS_CONNS", 100)
	nss, names, paths := make([]netns.NS, n), make([]string, n), make([]string, n)
	for i, ns := range testnet.NewNamespaces(b, n) {
		nss[i], names[i], paths[i] = ns.NetNS(), ns.Name, ns.NetNS().Path
	}
	sockets := testnet.Fill(b, nss, conns)
	for _, k := range []int{n / 4, n / 2, n} {
		b.Run("netns="+strconv.Itoa(k), func(b *testing.B) {
			in := isolated(b, names[:k])
			// Once, untimed: every namespace was audited, with every socket.
			out, err := exec.Command(in[0], append(in[1:], bin, "--all-netns", "audit", "-o", "json")...).Output()
			var doc struct{ Namespaces []map[string]any }
			if jerr := json.Unmarshal(out, &doc); jerr != nil || len(doc.Namespaces) != k+1 {
				b.Fatalf("tcpkeep --all-netns audit: %v, %v: %d namespaces, want %d and its own", err, jerr, len(doc.Namespaces), k)
			}
			for _, d := range doc.Namespaces[1:] {
				if s := d["summary"].(map[string]any)["sockets"]; s != float64(sockets) {
					b.Fatalf("netns %v: %v sockets audited, want %d", d["netns"], s, sockets)
				}
			}
			loop := shellLoop(paths[:k])
			tk := append(in, bin, "--all-netns", "audit", "-o", "json")
			var loopT, tkT, loopCPU, tkCPU time.Duration
			runs := 0
			for b.Loop() {
				w, c := runTimed(b, devnull, loop...)
				loopT, loopCPU = loopT+w, loopCPU+c
				w, c = runTimed(b, devnull, tk...)
				tkT, tkCPU = tkT+w, tkCPU+c
				runs++
			}
			b.StopTimer()
			rss := maxRSS(b, devnull, in, bin, "--all-netns", "audit", "-o", "json")
			b.ReportMetric(float64(loopT.Microseconds())/1000/float64(runs), "shell-loop-ms")
			b.ReportMetric(float64(tkT.Microseconds())/1000/float64(runs), "audit-ms")
			b.ReportMetric(float64(tkT)/float64(loopT), "x-shell-loop")
			b.ReportMetric(float64(tkCPU)/float64(loopCPU), "x-shell-loop-cpu")
			b.ReportMetric(float64(tkT.Microseconds())/1000/float64(runs)/float64(k+1), "audit-ms/netns")
			b.ReportMetric(float64(rss)/1024, "audit-peak-RSS-MiB")
		})
	}
	if big := env("TCPKEEP_BENCH_NETNS_RSS", 1000); big > 0 {
		b.Run("rss/netns="+strconv.Itoa(big), func(b *testing.B) {
			more := testnet.NewNamespaces(b, big)
			list, all := make([]netns.NS, big), make([]string, big)
			for i, ns := range more {
				list[i], all[i] = ns.NetNS(), ns.Name
			}
			testnet.Fill(b, list, 10)
			in := isolated(b, all)
			var rss int64
			var took time.Duration
			for b.Loop() {
				start := time.Now()
				rss = max(rss, maxRSS(b, devnull, in, bin, "--all-netns", "audit", "-o", "json"))
				took += time.Since(start)
			}
			b.ReportMetric(float64(rss)/1024, "audit-peak-RSS-MiB")
			b.ReportMetric(float64(took.Microseconds())/1000/float64(b.N)/float64(big+1), "audit-ms/netns")
		})
	}
}
