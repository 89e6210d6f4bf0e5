package cli

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpkeep/tcpkeep/internal/testnet"
)

// The agent's budget (DESIGN.md, Performance): watching 200,000 sockets with a
// 30 s interval costs under 1% of one core on average and under 48 MiB of
// RSS, flat over a long run with 1,000 connections a second of churn.
//
//	TCPKEEP_BENCH_SOCKETS         the namespaces' sizes (default 20000)
//	TCPKEEP_BENCH_WATCH_INTERVAL  watch's --interval (default 30s)
//	TCPKEEP_BENCH_WATCH_FOR       how long each size is watched (default 2m30s: 5 rounds)
//	TCPKEEP_BENCH_SOAK            how long the soak runs, on the largest size, with
//	                              1,000 connections a second opened and closed (default 3m;
//	                              0 skips it)

// envDuration reads a duration from the environment.
func envDuration(b *testing.B, name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		b.Fatalf("%s=%q: want a duration, as 10m", name, v)
	}
	return d
}

// procUsage is a process's CPU time so far (utime + stime, /proc/PID/stat) and
// its resident memory now and at its peak (VmRSS, VmHWM), in KiB.
type procUsage struct {
	cpu, user time.Duration
	rss, hwm  int64
	switches  int64 // context switches of its threads, voluntary or not
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's times: 100 on every
// Linux architecture tcpkeep builds for (sysconf(_SC_CLK_TCK)).
const clockTicks = 100

func usageOf(b *testing.B, pid int) procUsage {
	b.Helper()
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// The fields after the command, which is in parentheses and may hold spaces.
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64) // field 14 of proc(5)
	stime, _ := strconv.ParseInt(f[12], 10, 64) // field 15
	u := procUsage{cpu: time.Duration(utime+stime) * time.Second / clockTicks, user: time.Duration(utime) * time.Second / clockTicks}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(string(status), "\n") {
		k, v, _ := strings.Cut(l, ":")
		n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			u.rss = n
		case "VmHWM":
			u.hwm = n
		}
	}
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, task := range tasks {
		st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, task.Name()))
		for _, l := range strings.Split(string(st), "\n") {
			if k, v, _ := strings.Cut(l, ":"); strings.HasSuffix(k, "ctxt_switches") {
				n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				u.switches += n
			}
		}
	}
	return u
}

// BenchmarkWatch watches a namespace of N established sockets for
// TCPKEEP_BENCH_WATCH_FOR and reports the agent's average CPU over the run (as
// % of one core, from its start), its RSS after the first round and at the
// end, and its peak. Then, on the largest namespace, the soak: as long again
// as TCPKEEP_BENCH_SOAK says, with 1,000 connections a second opened and
// closed in the namespace (each end's close is a destroy broadcast the agent
// reads).
//
// The held sockets idle without keepalive: with watch's default --max-idle
// every one would be an idle_no_keepalive finding after 10 minutes, which is
// not the steady state being measured; --max-idle 24h keeps them unflagged.
func BenchmarkWatch(b *testing.B) {
	testnet.RequireRoot(b)
	interval := envDuration(b, "TCPKEEP_BENCH_WATCH_INTERVAL", 30*time.Second)
	watchFor := envDuration(b, "TCPKEEP_BENCH_WATCH_FOR", 5*interval)
	soak := envDuration(b, "TCPKEEP_BENCH_SOAK", 3*time.Minute)
	sizes := testnet.BenchSockets(b)
	for i, n := range sizes {
		b.Run("sockets="+strconv.Itoa(n), func(b *testing.B) {
			ns := testnet.NewNS(b)
			made := testnet.Many(b, ns, n)
			for b.Loop() {
				watchRun(b, ns, made, interval, watchFor, 0, "")
			}
			if i == len(sizes)-1 && soak > 0 {
				watchRun(b, ns, made, interval, soak, 1000, "soak-")
			}
		})
	}
}

// watchRun runs the agent on ns for d, with churn connections a second, and
// reports what it cost under names starting with prefix.
func watchRun(b *testing.B, ns *testnet.NS, sockets int, interval, d time.Duration, churn int, prefix string) {
	b.Helper()
	a := startAgent(b, "--netns", ns.Name, "watch", "--interval", interval.String(), "--max-idle", "24h", "--listen", "127.0.0.1:0")
	start := time.Now()
	testnet.Wait(b, 2*time.Minute, "the first round", func() bool {
		return strings.Contains(a.logs(), "serving") && len(a.records()) > 0 // the 7200 s default, flagged
	})
	first := usageOf(b, a.pid())
	var made atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	if churn > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := churnIn(ns, churn, stop, &made); err != nil {
				b.Error(err)
			}
		}()
	}
	// RSS every tenth of the run: flat, or growing?
	var rss []string
	for range 10 {
		time.Sleep(d / 10)
		rss = append(rss, fmt.Sprintf("%.1f", float64(usageOf(b, a.pid()).rss)/1024))
	}
	end := usageOf(b, a.pid())
	elapsed := time.Since(start)
	close(stop)
	wg.Wait()
	if code := a.stop(syscall.SIGTERM); code != 0 {
		b.Fatalf("tcpkeep watch: exit %d:\n%s", code, a.logs())
	}
	if strings.Contains(a.logs(), `"level":"WARN"`) {
		b.Errorf("the agent warned:\n%s", a.logs())
	}
	b.ReportMetric(float64(sockets), "sockets")
	b.ReportMetric(100*end.cpu.Seconds()/elapsed.Seconds(), prefix+"cpu-%")
	b.ReportMetric(float64(first.rss)/1024, prefix+"rss-start-MiB")
	b.ReportMetric(float64(end.rss)/1024, prefix+"rss-end-MiB")
	b.ReportMetric(float64(end.hwm)/1024, prefix+"rss-peak-MiB")
	if churn > 0 {
		b.ReportMetric(float64(made.Load())/d.Seconds(), prefix+"conns/s")
	}
	b.Logf("%swatched %d sockets for %s (interval %s): CPU %.2f%% of a core (%s, %s of it user), %.0f context switches/s, RSS %.1f MiB after the first round, %.1f at the end, peak %.1f; %d records",
		prefix, sockets, elapsed.Round(time.Second), interval, 100*end.cpu.Seconds()/elapsed.Seconds(), end.cpu, end.user, float64(end.switches-first.switches)/d.Seconds(),
		float64(first.rss)/1024, float64(end.rss)/1024, float64(end.hwm)/1024, len(a.records()))
	b.Logf("%sRSS (MiB) every %s: %s", prefix, (d / 10).Round(time.Second), strings.Join(rss, " "))
	if churn > 0 {
		b.Logf("%s%d connections opened and closed (%.0f/s)", prefix, made.Load(), float64(made.Load())/d.Seconds())
	}
}

// churnIn opens and closes rate connections a second inside ns until stop:
// the server closes first (its end goes to TIME_WAIT, as a server's does),
// the client reads the end and closes. Four listeners spread the 4-tuples.
func churnIn(ns *testnet.NS, rate int, stop <-chan struct{}, made *atomic.Int64) error {
	return ns.NetNS().Do(func() error {
		var addrs []string
		for i := range 4 {
			l, err := net.Listen("tcp4", fmt.Sprintf("127.99.0.%d:7300", i+1))
			if err != nil {
				return err
			}
			defer l.Close()
			addrs = append(addrs, l.Addr().String())
			go func() {
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					c.Close()
				}
			}()
		}
		const batch = 50
		tick := time.NewTicker(time.Second * batch / time.Duration(rate))
		defer tick.Stop()
		for n := 0; ; {
			select {
			case <-stop:
				return nil
			case <-tick.C:
			}
			for range batch {
				// socket(2) runs here, on the thread inside ns.
				fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
				if err != nil {
					return err
				}
				f := os.NewFile(uintptr(fd), "churn")
				sa := &unix.SockaddrInet4{Port: 7300, Addr: [4]byte{127, 99, 0, byte(n%4 + 1)}}
				n++
				if err := unix.Connect(fd, sa); err != nil {
					f.Close()
					return fmt.Errorf("connect %d to %v: %w", n, addrs[n%4], err)
				}
				go func() {
					io.Copy(io.Discard, f) // until the server's FIN
					f.Close()
				}()
				made.Add(1)
			}
		}
	})
}
