package testnet

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"testing"
	"time"

	vnl "github.com/vishvananda/netlink"
)

// Addresses of a Router topology: the client's network 10.78.1.0/24 and the
// server's 10.78.2.0/24, apart from Pair's 10.77.0.0/24.
var (
	RouterClientAddr      = netip.MustParseAddr("10.78.1.1") // Client's veth0
	RouterClientSideAddr  = netip.MustParseAddr("10.78.1.2") // Router's vclient, the client's gateway
	RouterServerSideAddr  = netip.MustParseAddr("10.78.2.1") // Router's vserver, the server's gateway
	RouterServerAddr      = netip.MustParseAddr("10.78.2.2") // Server's veth0
	routerPrefixBits      = 24
	routerForwardRulesets = `
table inet tcpkeep_fw {
	chain forward {
		type filter hook forward priority filter; policy drop;
		ct state established,related accept
		ct state new tcp flags & (fin|syn|rst|ack) == syn accept
	}
}
`
)

// Router is three namespaces in a line: Client (10.78.1.1 on veth0), Router
// (10.78.1.2 on vclient, 10.78.2.1 on vserver) and Server (10.78.2.2 on veth0).
// The router forwards through a stateful firewall, an nftables ruleset that
// accepts packets of flows conntrack knows and new SYNs, and drops the rest. Its
// conntrack forgets an established flow idle for IdleTimeout, and with
// nf_conntrack_tcp_loose=0 it never picks one up again from the middle: after
// that, the flow's packets are dropped, as a NAT gateway or firewall does.
type Router struct {
	Client, Router, Server *NS
	// IdleTimeout is the router's nf_conntrack_tcp_timeout_established.
	IdleTimeout time.Duration
}

// NewRouter builds the topology with the router forgetting flows idle for
// idleTimeout (whole seconds, at least 1).
func NewRouter(t testing.TB, idleTimeout time.Duration) *Router {
	t.Helper()
	RequireRoot(t)
	if idleTimeout < time.Second || idleTimeout%time.Second != 0 {
		t.Fatalf("router idle timeout %v: want whole seconds", idleTimeout)
	}
	if _, err := exec.LookPath("nft"); err != nil {
		t.Fatal("nft not found: the router's firewall needs it (apt-get install nftables, or make test-deps)")
	}
	r := &Router{Client: NewNS(t), Router: NewNS(t), Server: NewNS(t), IdleTimeout: idleTimeout}
	link(t, r.Client, "veth0", r.Router, "vclient")
	link(t, r.Server, "veth0", r.Router, "vserver")
	r.Client.addr("veth0", RouterClientAddr)
	r.Router.addr("vclient", RouterClientSideAddr)
	r.Router.addr("vserver", RouterServerSideAddr)
	r.Server.addr("veth0", RouterServerAddr)
	r.Client.defaultRoute(RouterClientSideAddr)
	r.Server.defaultRoute(RouterServerSideAddr)
	r.Router.Sysctl("net/ipv4/ip_forward", "1")

	cmd := exec.Command("ip", "netns", "exec", r.Router.Name, "nft", "-f", "-")
	cmd.Stdin = bytes.NewBufferString(routerForwardRulesets)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft ruleset in %s: %v: %s", r.Router.Name, err, out)
	}
	// The ruleset's ct expressions load nf_conntrack, and with it these files.
	r.Router.Sysctl("net/netfilter/nf_conntrack_tcp_loose", "0")
	r.Router.Sysctl("net/netfilter/nf_conntrack_tcp_timeout_established", fmt.Sprint(int(idleTimeout/time.Second)))
	return r
}

// ServerAddr is host:port on the server.
func (r *Router) ServerAddr(port int) string {
	return netip.AddrPortFrom(RouterServerAddr, uint16(port)).String()
}

// ServerDown sets the server's link down: its packets go nowhere and nothing
// answers for it, no reset, no ICMP. The server has vanished.
func (r *Router) ServerDown() { r.Server.LinkDown() }

// link joins a and b with a veth pair named nameA in a and nameB in b.
func link(t testing.TB, a *NS, nameA string, b *NS, nameB string) {
	t.Helper()
	ha := a.handle()
	tmp := fmt.Sprintf("tk%x", time.Now().UnixNano()&0xffffffff)
	veth := &vnl.Veth{
		LinkAttrs:     vnl.LinkAttrs{Name: nameA},
		PeerName:      tmp,
		PeerNamespace: vnl.NsFd(b.Fd()),
	}
	if err := ha.LinkAdd(veth); err != nil {
		t.Fatalf("add veth %s in %s: %v", nameA, a.Name, err)
	}
	hb := b.handle()
	// The peer is made in b under a name unique in any namespace, then renamed.
	lb, err := hb.LinkByName(tmp)
	if err != nil {
		t.Fatalf("find veth peer in %s: %v", b.Name, err)
	}
	if err := hb.LinkSetName(lb, nameB); err != nil {
		t.Fatalf("rename veth peer in %s: %v", b.Name, err)
	}
}

// addr gives an interface an IPv4 address in a /24 and sets it up.
func (ns *NS) addr(ifname string, a netip.Addr) {
	ns.t.Helper()
	h := ns.handle()
	l, err := h.LinkByName(ifname)
	if err != nil {
		ns.t.Fatalf("%s in %s: %v", ifname, ns.Name, err)
	}
	ipn := &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(routerPrefixBits, 32)}
	if err := h.AddrAdd(l, &vnl.Addr{IPNet: ipn}); err != nil {
		ns.t.Fatalf("add %s to %s in %s: %v", a, ifname, ns.Name, err)
	}
	if err := h.LinkSetUp(l); err != nil {
		ns.t.Fatalf("%s up in %s: %v", ifname, ns.Name, err)
	}
}

// defaultRoute routes everything through gw.
func (ns *NS) defaultRoute(gw netip.Addr) {
	ns.t.Helper()
	h := ns.handle()
	if err := h.RouteAdd(&vnl.Route{Gw: gw.AsSlice()}); err != nil {
		ns.t.Fatalf("default route via %s in %s: %v", gw, ns.Name, err)
	}
}

// LoadConntrack makes sure connection tracking runs in the namespace, so that
// its net/netfilter tunables exist: a ruleset with a ct expression loads
// nf_conntrack where it is a module, and registers the namespace's hooks. The
// rule accepts everything; it only looks at conntrack state.
func (ns *NS) LoadConntrack() {
	ns.t.Helper()
	if _, err := exec.LookPath("nft"); err != nil {
		ns.t.Fatal("nft not found: loading conntrack needs it (apt-get install nftables, or make test-deps)")
	}
	cmd := exec.Command("ip", "netns", "exec", ns.Name, "nft", "-f", "-")
	cmd.Stdin = bytes.NewBufferString("table inet tkct {\n\tchain in {\n\t\ttype filter hook input priority 0; policy accept;\n\t\tct state established accept\n\t}\n}\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		ns.t.Fatalf("nft ruleset in %s: %v: %s", ns.Name, err, out)
	}
	if v := ns.ReadSysctl("net/netfilter/nf_conntrack_tcp_timeout_established"); v == "" {
		ns.t.Fatalf("conntrack loaded in %s, but nf_conntrack_tcp_timeout_established is empty", ns.Name)
	}
}
