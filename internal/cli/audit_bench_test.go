package cli

import (
	"encoding/json"
	"os"
	"os/exec"
	"testing"

	"github.com/tcpkeep/tcpkeep/internal/testnet"
)

// BenchmarkAuditVsSS times `ss -tinoeH > /dev/null` and `tcpkeep audit -o json >
// /dev/null` on the same namespace of N established sockets, in the same run,
// and reports their ratio and tcpkeep's peak RSS. DESIGN.md's targets: ratio
// <= 0.35, peak RSS <= 32 MiB and flat in N. TCPKEEP_BENCH_SOCKETS sets N
// (20000 by default; 200000 is DESIGN.md's figure).
func BenchmarkAuditVsSS(b *testing.B) {
	benchNamespaces(b, func(b *testing.B, bin string, ns *testnet.NS, made int, devnull *os.File) {
		// Tuned, so the namespace itself is not a finding.
		ns.Sysctl("net/ipv4/tcp_keepalive_time", "300")

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

		compareWithSS(b, ns, devnull, made, "audit", bin, "--netns", ns.Name, "audit", "-o", "json")
	})
}
