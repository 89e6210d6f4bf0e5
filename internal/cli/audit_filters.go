package cli

// Temporary: the shared filter flags until branch conns's internal/cli/filters.go
// is merged; then audit uses those and this file goes.

import (
	"net/netip"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/tcpkeep/tcpkeep/diag"
)

type auditFilterFlags struct {
	states, sport, dport, src, dst string
	v4, v6                         bool
}

func addFilterFlags(fs *pflag.FlagSet) *auditFilterFlags {
	f := &auditFilterFlags{}
	fs.StringVar(&f.states, "state", "", "only sockets in these states (comma-separated: established, close-wait, listen, ...)")
	fs.StringVar(&f.sport, "sport", "", "only sockets with this local port, P or LO-HI")
	fs.StringVar(&f.dport, "dport", "", "only sockets with this remote port, P or LO-HI")
	fs.StringVar(&f.src, "src", "", "only sockets with a local address in ADDR[/BITS]")
	fs.StringVar(&f.dst, "dst", "", "only sockets with a remote address in ADDR[/BITS]")
	fs.BoolVarP(&f.v4, "ipv4", "4", false, "only IPv4 sockets")
	fs.BoolVarP(&f.v6, "ipv6", "6", false, "only IPv6 sockets")
	return f
}

func (f *auditFilterFlags) filter() (*diag.Filter, error) {
	var d diag.Filter
	var err error
	if f.states != "" {
		if d.States, err = diag.ParseStates(f.states); err != nil {
			return nil, usagef("--state: %v", err)
		}
	}
	if d.SPort, err = parsePorts("sport", f.sport); err != nil {
		return nil, err
	}
	if d.DPort, err = parsePorts("dport", f.dport); err != nil {
		return nil, err
	}
	if d.Src, err = parsePrefix("src", f.src); err != nil {
		return nil, err
	}
	if d.Dst, err = parsePrefix("dst", f.dst); err != nil {
		return nil, err
	}
	switch {
	case f.v4 && f.v6:
		return nil, usagef("-4 and -6 together select nothing: give one")
	case f.v4:
		d.Family = diag.FamilyInet
	case f.v6:
		d.Family = diag.FamilyInet6
	}
	return &d, nil
}

func parsePorts(name, s string) (diag.PortRange, error) {
	if s == "" {
		return diag.PortRange{}, nil
	}
	lo, hi, ok := strings.Cut(s, "-")
	if !ok {
		hi = lo
	}
	a, err1 := strconv.ParseUint(lo, 10, 16)
	b, err2 := strconv.ParseUint(hi, 10, 16)
	if err1 != nil || err2 != nil || a == 0 || b < a {
		return diag.PortRange{}, usagef("--%s %q: want a port 1-65535 or a range LO-HI, as 443 or 8000-8099", name, s)
	}
	return diag.PortRange{Lo: uint16(a), Hi: uint16(b)}, nil
}

func parsePrefix(name, s string) (netip.Prefix, error) {
	if s == "" {
		return netip.Prefix{}, nil
	}
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	return netip.Prefix{}, usagef("--%s %q: want an address or ADDR/BITS, as 10.0.0.0/8 or fd00::1", name, s)
}
