package cli

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/tcpkeep/tcpkeep/diag"
)

// The socket filters conns, audit and kill share (DESIGN.md, Command line). The
// kernel applies them: states as the dump's state mask, ports and addresses as
// inet_diag bytecode.

// defaultStates is what ss shows without a state filter, and so what conns shows:
// every connected state but the minisocket ones (TIME_WAIT, SYN_RECV). LISTEN and
// CLOSE take --state listening or --state all.
const defaultStates = diag.StatesConnected &^ diag.StatesBucket

// filterHelp is the filters' part of a command's help.
const filterHelp = `Filters (the kernel applies them; all must match):
  --state LIST     states, comma-separated, in ss's or the kernel's spelling:
                   established, syn-sent, syn-recv, fin-wait-1, fin-wait-2,
                   time-wait, closed, close-wait, last-ack, listening, closing,
                   or ESTABLISHED, CLOSE_WAIT, ...; groups: all, connected (all
                   but listening and closed), synchronized (connected but
                   syn-sent), bucket (time-wait, syn-recv), big (all but bucket)
  --sport P|LO-HI  local port, or an inclusive range (8000-8999)
  --dport P|LO-HI  remote port, or a range
  --src ADDR[/BITS]  local address or prefix (10.0.0.0/8, fd00::/8, 10.1.2.3)
  --dst ADDR[/BITS]  remote address or prefix; an IPv4 prefix also matches
                   IPv4-mapped addresses on IPv6 sockets
  -4, -6           IPv4 or IPv6 sockets only
`

// filterFlags holds the filter flags as parsed.
type filterFlags struct {
	states       stateFlag
	sport, dport portFlag
	src, dst     prefixFlag
	v4, v6       bool
}

// addFilterFlags adds the shared filter flags to fs.
func addFilterFlags(fs *pflag.FlagSet, f *filterFlags) {
	fs.Var(&f.states, "state", "states or groups to show, comma-separated (default: ss's, connected but time-wait and syn-recv)")
	fs.Var(&f.sport, "sport", "local port P or range LO-HI")
	fs.Var(&f.dport, "dport", "remote port P or range LO-HI")
	fs.Var(&f.src, "src", "local address or prefix ADDR[/BITS]")
	fs.Var(&f.dst, "dst", "remote address or prefix ADDR[/BITS]")
	fs.BoolVarP(&f.v4, "ipv4", "4", false, "IPv4 sockets only")
	fs.BoolVarP(&f.v6, "ipv6", "6", false, "IPv6 sockets only")
}

// filter builds the diag filter, with def as the states when --state is not
// given, and refuses combinations no socket can match.
func (f *filterFlags) filter(def diag.StateSet) (*diag.Filter, error) {
	df := &diag.Filter{States: def, SPort: f.sport.r, DPort: f.dport.r, Src: f.src.p, Dst: f.dst.p}
	if f.states.set {
		df.States = f.states.s
	}
	switch {
	case f.v4 && f.v6:
		// Both: what no flag means.
	case f.v4:
		df.Family = diag.FamilyInet
	case f.v6:
		df.Family = diag.FamilyInet6
	}
	for _, p := range []struct {
		flag string
		p    netip.Prefix
	}{{"--src", f.src.p}, {"--dst", f.dst.p}} {
		// An IPv4 prefix still matches IPv4-mapped addresses of IPv6 sockets.
		if p.p.IsValid() && p.p.Addr().Is6() && df.Family == diag.FamilyInet {
			return nil, usagef("%s %s is IPv6 but -4 asks for IPv4 sockets only", p.flag, p.p)
		}
	}
	if err := df.Check(); err != nil {
		return nil, usagef("%v", err)
	}
	return df, nil
}

// stateFlag is --state: diag.ParseStates's spellings.
type stateFlag struct {
	s   diag.StateSet
	v   string
	set bool
}

func (f *stateFlag) String() string { return f.v }
func (f *stateFlag) Type() string   { return "list" }
func (f *stateFlag) Set(v string) error {
	s, err := diag.ParseStates(v)
	if err != nil {
		return err
	}
	f.s, f.v, f.set = s, v, true
	return nil
}

// portFlag is --sport/--dport: parsePortRange's spellings.
type portFlag struct {
	r diag.PortRange
	v string
}

func (f *portFlag) String() string { return f.v }
func (f *portFlag) Type() string   { return "port" }
func (f *portFlag) Set(v string) error {
	r, err := parsePortRange(v)
	if err != nil {
		return err
	}
	f.r, f.v = r, v
	return nil
}

// prefixFlag is --src/--dst: parsePrefix's spellings.
type prefixFlag struct {
	p netip.Prefix
	v string
}

func (f *prefixFlag) String() string { return f.v }
func (f *prefixFlag) Type() string   { return "prefix" }
func (f *prefixFlag) Set(v string) error {
	p, err := parsePrefix(v)
	if err != nil {
		return err
	}
	f.p, f.v = p, v
	return nil
}

// parsePortRange reads a port (1 to 65535) or an inclusive range LO-HI
// (0 <= LO <= HI <= 65535). Port 0 alone is refused: only listeners have it, as
// their remote port, and --state listening says that.
func parsePortRange(s string) (diag.PortRange, error) {
	const want = "want a port from 1 to 65535 or a range LO-HI such as 8000-8999"
	lo, hi, isRange := strings.Cut(s, "-")
	a, ok := parsePort(lo)
	if !ok {
		return diag.PortRange{}, fmt.Errorf("%q: %s", s, want)
	}
	if !isRange {
		if a == 0 {
			return diag.PortRange{}, fmt.Errorf("%q: port 0 is no socket's local or remote port (listeners: --state listening); %s", s, want)
		}
		return diag.PortRange{Lo: a, Hi: a}, nil
	}
	b, ok := parsePort(hi)
	switch {
	case !ok:
		return diag.PortRange{}, fmt.Errorf("%q: %s", s, want)
	case b < a:
		return diag.PortRange{}, fmt.Errorf("%q: the range is empty (%d > %d): %s", s, a, b, want)
	case b == 0:
		return diag.PortRange{}, fmt.Errorf("%q: port 0 is no socket's local or remote port; %s", s, want)
	}
	return diag.PortRange{Lo: a, Hi: b}, nil
}

// parsePort reads decimal digits only, 0 to 65535.
func parsePort(s string) (uint16, bool) {
	if !isDigits(s) || len(s) > 5 {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 16)
	return uint16(n), err == nil
}

// parsePrefix reads an address (a host: /32 or /128) or ADDR/BITS. Host bits
// below the prefix are allowed and ignored (10.1.2.3/8 means 10.0.0.0/8); an
// IPv6 address may come in brackets; zones are refused (sock_diag filters do not
// have them).
func parsePrefix(s string) (netip.Prefix, error) {
	const want = "want an address or ADDR/BITS, such as 10.0.0.5, 10.0.0.0/8 or fd00::/8"
	addr, bits, hasBits := strings.Cut(s, "/")
	if strings.HasPrefix(addr, "[") && strings.HasSuffix(addr, "]") {
		addr = addr[1 : len(addr)-1]
	}
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an address: %s", s, want)
	}
	if a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q: zones (%%%s) cannot be filtered on: %s", s, a.Zone(), want)
	}
	n := a.BitLen()
	if hasBits {
		if !isDigits(bits) || len(bits) > 3 {
			return netip.Prefix{}, fmt.Errorf("%q: prefix length %q is not a number: %s", s, bits, want)
		}
		n, _ = strconv.Atoi(bits)
		if n > a.BitLen() {
			return netip.Prefix{}, fmt.Errorf("%q: prefix length %d exceeds %d bits: %s", s, n, a.BitLen(), want)
		}
	}
	if a.Is4In6() && n >= 96 {
		// ::ffff:10.0.0.0/104 means 10.0.0.0/8, which also matches mapped addresses.
		a, n = a.Unmap(), n-96
	}
	return netip.PrefixFrom(a, n).Masked(), nil
}
