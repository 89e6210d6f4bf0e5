package testnet

import (
	"bytes"
	"os/exec"
)

// Vanish makes the namespace's host vanish from the network without a word: an
// nftables table drops every IPv4 and IPv6 packet it would receive or send,
// ahead of any other rule. No reset, no ICMP, and unlike LinkDown its links stay
// up, so the peer's kernel sees nothing but silence (no local "no route"
// errors). The table goes with the namespace.
func (ns *NS) Vanish() {
	ns.t.Helper()
	if _, err := exec.LookPath("nft"); err != nil {
		ns.t.Fatal("nft not found: Vanish needs it (apt-get install nftables, or make test-deps)")
	}
	cmd := exec.Command("ip", "netns", "exec", ns.Name, "nft", "-f", "-")
	cmd.Stdin = bytes.NewBufferString("table inet tkvanish {\n" +
		"\tchain in { type filter hook input priority -400; policy drop; }\n" +
		"\tchain out { type filter hook output priority -400; policy drop; }\n" +
		"}\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		ns.t.Fatalf("nft drop-all table in %s: %v: %s", ns.Name, err, out)
	}
}
