package testnet

import (
	"bytes"
	"os/exec"
)

// Vanish makes the namespace's host vanish from the network without a word: an
// nftables table drops every IPv4 and IPv6 packet it would receive or send,
// ahead of any other rule. No reset, no ICMP, and unlike LinkDown its links stay
// up, so the peer's kernel sees nothing but silence: its probes and
// retransmissions really go out (a veth whose peer is down drops them locally,
// and the kernel then counts them as local congestion and retries on other
// timers). The table goes with the namespace; back removes it sooner, and the
// host is back.
func (ns *NS) Vanish() (back func()) {
	ns.t.Helper()
	if _, err := exec.LookPath("nft"); err != nil {
		ns.t.Fatal("nft not found: Vanish needs it (apt-get install nftables, or make test-deps)")
	}
	ns.nft("table inet tkvanish {\n" +
		"\tchain in { type filter hook input priority -400; policy drop; }\n" +
		"\tchain out { type filter hook output priority -400; policy drop; }\n" +
		"}\n")
	return func() { ns.nft("delete table inet tkvanish\n") }
}

func (ns *NS) nft(rules string) {
	ns.t.Helper()
	cmd := exec.Command("ip", "netns", "exec", ns.Name, "nft", "-f", "-")
	cmd.Stdin = bytes.NewBufferString(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		ns.t.Fatalf("nft in %s: %v: %s", ns.Name, err, out)
	}
}
