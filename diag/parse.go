package diag

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// ParsePortRange reads a port (1 to 65535) or an inclusive range LO-HI
// (0 <= LO <= HI <= 65535). Port 0 alone is refused: only listeners have it, as
// their remote port, and a state filter says that.
func ParsePortRange(s string) (PortRange, error) {
	const want = "want a port from 1 to 65535 or a range LO-HI such as 8000-8999"
	lo, hi, isRange := strings.Cut(s, "-")
	a, ok := parsePort(lo)
	if !ok {
		return PortRange{}, fmt.Errorf("%q: %s", s, want)
	}
	if !isRange {
		if a == 0 {
			return PortRange{}, fmt.Errorf("%q: port 0 is no socket's local or remote port; %s", s, want)
		}
		return PortRange{Lo: a, Hi: a}, nil
	}
	b, ok := parsePort(hi)
	switch {
	case !ok:
		return PortRange{}, fmt.Errorf("%q: %s", s, want)
	case b < a:
		return PortRange{}, fmt.Errorf("%q: the range is empty (%d > %d): %s", s, a, b, want)
	case b == 0:
		return PortRange{}, fmt.Errorf("%q: port 0 is no socket's local or remote port; %s", s, want)
	}
	return PortRange{Lo: a, Hi: b}, nil
}

// parsePort reads decimal digits only, 0 to 65535.
func parsePort(s string) (uint16, bool) {
	if !digits(s) || len(s) > 5 {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 16)
	return uint16(n), err == nil
}

// ParsePrefix reads an address (a host: /32 or /128) or ADDR/BITS. Host bits
// below the prefix are allowed and ignored (10.1.2.3/8 means 10.0.0.0/8); an
// IPv6 address may come in brackets; zones are refused (sock_diag filters do not
// have them).
func ParsePrefix(s string) (netip.Prefix, error) {
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
		if !digits(bits) || len(bits) > 3 {
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

func digits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
