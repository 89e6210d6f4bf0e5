package cli

import (
	"encoding/json"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/tcpkeep/tcpkeep/internal/testnet"
)

// BenchmarkAuditVsSS times `ss -tinoeH > /dev/null` and `tcpkeep audit -o json >
// /dev/null` on the same namespace of N established sockets, in the same run,
// and reports their ratio and tcpkeep's peak RSS. DESIGN.md's targets: ratio
// <= 0.35, peak RSS <= 32 MiB and flat in N. TCPKEEP_BENCH_SOCKETS sets N
// (20000 by default; 200000 is DESIGN.md's figure).
func BenchmarkAuditVsSS(b *testing.B) {
	testnet.RequireRoot(b)
	if _, err := exec.LookPath("ss"); err != nil {
		b.Fatal("ss (iproute2) is the reference: install iproute2")
	}
	if _, err := os.Stat(gnuTime); err != nil {
		b.Fatalf("%s measures peak RSS: apt-get install time", gnuTime)
	}
	bin := buildTcpkeep(b, b.TempDir())
	for _, n := range benchSockets(b) {
		b.Run("sockets="+strconv.Itoa(n), func(b *testing.B) {
			ns := testnet.NewNS(b)
			made := testnet.Many(b, ns, n)
			// Tuned, so the namespace itself is not a finding.
			ns.Sysctl("net/ipv4/tcp_keepalive_time", "300")
			devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
			if err != nil {
				b.Fatal(err)
			}
			defer devnull.Close()

			// Once, untimed: the audit saw every socket (and the listeners).
			out, err := exec.Command(bin, "--netns", ns.Name, "audit", "-o", "json").Output()
			if err != nil {
				b.Fatalf("tcpkeep audit: %v: %s", err, out)
			}
			var doc struct {
				Summary struct {
					Sockets int            `json:"sockets"`
					Worst   string         `json:"worst"`
					ByState map[string]int `json:"by_state"`
				} `json:"summary"`
			}
			if err := json.Unmarshal(out, &doc); err != nil {
				b.Fatal(err)
			}
			if doc.Summary.ByState["ESTABLISHED"] != made || doc.Summary.Worst != "none" {
				b.Fatalf("audit saw %v (worst %s), want %d ESTABLISHED and nothing found", doc.Summary.ByState, doc.Summary.Worst, made)
			}

			var ssT, tkT, ssCPU, tkCPU time.Duration
			runs := 0
			for b.Loop() {
				w, c := timed(b, ns, devnull, "ss", "-tinoeH")
				ssT, ssCPU = ssT+w, ssCPU+c
				w, c = timed(b, ns, devnull, bin, "--netns", ns.Name, "audit", "-o", "json")
				tkT, tkCPU = tkT+w, tkCPU+c
				runs++
			}
			b.StopTimer()
			var rss int64
			for range 3 {
				rss = max(rss, peakRSS(b, ns, devnull, bin, "--netns", ns.Name, "audit", "-o", "json"))
			}
			b.ReportMetric(float64(made), "sockets")
			b.ReportMetric(float64(ssT.Microseconds())/1000/float64(runs), "ss-ms")
			b.ReportMetric(float64(tkT.Microseconds())/1000/float64(runs), "audit-ms")
			b.ReportMetric(float64(tkT)/float64(ssT), "audit/ss")
			b.ReportMetric(float64(tkCPU)/float64(ssCPU), "audit/ss-cpu")
			b.ReportMetric(float64(rss)/1024, "audit-peak-RSS-MiB")
			b.ReportMetric(float64(tkT.Nanoseconds())/float64(runs)/float64(made), "audit-ns/socket")
		})
	}
}
