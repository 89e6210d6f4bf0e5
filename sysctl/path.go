package sysctl

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"
)

// Middlebox is a kind of device on a path whose idle timeout is known: after that
// long without a packet it forgets a TCP flow, and later packets of the flow are
// dropped or reset.
type Middlebox struct {
	// Name is how an operator names it ("aws-nlb").
	Name string
	// IdleTimeout is how long the device keeps an idle established TCP flow:
	// its default, for the built-in entries.
	IdleTimeout time.Duration
	// Configurable says operators can change it, so that the default may not
	// be what a path has.
	Configurable bool
	// Min and Max are the documented range it can be configured to; 0 where
	// the documentation states none.
	Min, Max time.Duration
	// Source says where the number comes from, and for a configurable device
	// where its configured value is set.
	Source string
	// Custom marks an entry from a middleboxes file: the operator's own value,
	// not a vendor default.
	Custom bool
}

// Middleboxes are the idle timeouts of common middleboxes, as their vendors
// document them: defaults, each with the range it can be configured to. The
// local conntrack timeout is read from the namespace instead (ConntrackName).
var Middleboxes = MiddleboxTable{
	{Name: "aws-nlb", IdleTimeout: 350 * time.Second, Configurable: true, Min: 60 * time.Second, Max: 6000 * time.Second,
		Source: "AWS Network Load Balancer: TCP idle timeout 350 s by default, configurable per TCP listener from 60 to 6000 s (listener attribute tcp.idle_timeout.seconds); TLS listeners are fixed at 350 s (Elastic Load Balancing user guide, 'Connection idle timeout')"},
	{Name: "aws-nat", IdleTimeout: 350 * time.Second,
		Source: "AWS NAT gateway: idle connections time out after 350 s, not configurable (Amazon VPC user guide, 'Troubleshoot NAT gateways')"},
	{Name: "aws-nitro-v6", IdleTimeout: 350 * time.Second, Configurable: true, Min: 60 * time.Second, Max: 432000 * time.Second,
		Source: "Amazon EC2 connection tracking on Nitro v6 instances (since June 2025): idle established TCP flows are forgotten after 350 s by default (5 days on earlier Nitro generations), configurable per network interface from 60 to 432000 s (tcp-established-timeout; Amazon EC2 user guide, 'Idle connection tracking timeout')"},
	{Name: "azure-lb", IdleTimeout: 4 * time.Minute, Configurable: true, Min: 4 * time.Minute, Max: 100 * time.Minute,
		Source: "Azure Load Balancer: TCP idle timeout 4 minutes by default, configurable per rule up to 100 minutes for outbound rules, 30 for load-balancing and inbound NAT rules (Azure docs, 'Configure TCP reset and idle timeout')"},
	{Name: "aks-outbound", IdleTimeout: 30 * time.Minute, Configurable: true, Min: 4 * time.Minute, Max: 100 * time.Minute,
		Source: "AKS outbound through the cluster's Standard Load Balancer: idle timeout 30 minutes by default, configurable from 4 to 100 minutes (the cluster's load balancer idle timeout; AKS docs, 'Use a public Standard Load Balancer')"},
	{Name: "gcp-cloud-nat", IdleTimeout: 1200 * time.Second, Configurable: true,
		Source: "Google Cloud NAT: TCP established connection idle timeout 1200 s by default, configurable on the NAT gateway (Cloud NAT docs, 'NAT timeouts')"},
	{Name: "gcp-vpc", IdleTimeout: 600 * time.Second,
		Source: "Google Cloud VPC firewall connection tracking: idle established TCP connections are forgotten after 10 minutes, not configurable (VPC firewall rules docs, 'Connection tracking')"},
	{Name: "ipvs", IdleTimeout: 900 * time.Second, Configurable: true,
		Source: "Linux IPVS (kube-proxy in ipvs mode): established TCP connections expire after 900 s idle by default (net/netfilter/ipvs/ip_vs_proto_tcp.c), configurable with ipvsadm --set or kube-proxy's ipvs tcpTimeout"},
}

// MiddleboxTable is a list of middleboxes, looked up by name.
type MiddleboxTable []Middlebox

// ConntrackName is the name for the local nf_conntrack timeout, which is read
// from the namespace (Tunables.ConntrackEstablished), not from a table.
const ConntrackName = "conntrack"

// Lookup finds a middlebox by name.
func (t MiddleboxTable) Lookup(name string) (Middlebox, bool) {
	for _, m := range t {
		if m.Name == name {
			return m, true
		}
	}
	return Middlebox{}, false
}

// Names lists the table's names, and ConntrackName, comma-separated.
func (t MiddleboxTable) Names() string {
	var n []string
	for _, m := range t {
		n = append(n, m.Name)
	}
	return strings.Join(append(n, ConntrackName), ", ")
}

// Merge returns t with extra's entries added, an entry of the same name
// replaced in place.
func (t MiddleboxTable) Merge(extra MiddleboxTable) MiddleboxTable {
	out := append(MiddleboxTable(nil), t...)
next:
	for _, e := range extra {
		for i := range out {
			if out[i].Name == e.Name {
				out[i] = e
				continue next
			}
		}
		out = append(out, e)
	}
	return out
}

// LookupMiddlebox finds a built-in middlebox by name.
func LookupMiddlebox(name string) (Middlebox, bool) { return Middleboxes.Lookup(name) }

// MiddleboxNames lists the built-in names and ConntrackName.
func MiddleboxNames() string { return Middleboxes.Names() }

// MiddleboxFileError is a line of a middleboxes file that could not be read.
type MiddleboxFileError struct {
	// Line counts from 1.
	Line int
	// Err says what is wrong with it.
	Err error
}

func (e *MiddleboxFileError) Error() string { return fmt.Sprintf("line %d: %v", e.Line, e.Err) }

func (e *MiddleboxFileError) Unwrap() error { return e.Err }

// maxMiddleboxFile bounds what ParseMiddleboxes reads: a table of devices, not data.
const maxMiddleboxFile = 1 << 20

// ParseMiddleboxes reads a middleboxes file: one device per line, as
//
//	name seconds source...
//
// name is letters, digits, '-', '_' and '.' (at most 64); seconds is the idle
// timeout in whole seconds (1 to 432000, five days, conntrack's default); the
// source is the rest of the line, saying where the number comes from. Blank
// lines and lines starting with '#' are skipped. A name may appear once, and
// ConntrackName is the namespace's own and cannot be set. The entries it
// returns are Custom.
func ParseMiddleboxes(r io.Reader) (MiddleboxTable, error) {
	sc := bufio.NewScanner(io.LimitReader(r, maxMiddleboxFile+1))
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	var out MiddleboxTable
	seen := map[string]int{}
	n, total := 0, 0
	for sc.Scan() {
		n++
		total += len(sc.Bytes()) + 1
		if total > maxMiddleboxFile {
			return nil, fmt.Errorf("more than %d bytes: not a middleboxes file", maxMiddleboxFile)
		}
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		m, err := parseMiddleboxLine(line)
		if err != nil {
			return nil, &MiddleboxFileError{Line: n, Err: err}
		}
		if first, ok := seen[m.Name]; ok {
			return nil, &MiddleboxFileError{Line: n, Err: fmt.Errorf("%q is already on line %d", m.Name, first)}
		}
		seen[m.Name] = n
		out = append(out, m)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, &MiddleboxFileError{Line: n + 1, Err: errors.New("line longer than 64 KiB")}
		}
		return nil, err
	}
	return out, nil
}

// ReadMiddleboxes reads the middleboxes file name (see ParseMiddleboxes) and
// returns Middleboxes with its entries added, or replacing the built-in entry
// of the same name.
func ReadMiddleboxes(name string) (MiddleboxTable, error) {
	f, err := os.Open(name)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return nil, pe.Err // the caller names the file
		}
		return nil, err
	}
	defer f.Close()
	extra, err := ParseMiddleboxes(f)
	if err != nil {
		return nil, err
	}
	return Middleboxes.Merge(extra), nil
}

// maxMiddleboxTimeout is the longest idle timeout a file may give: five days,
// nf_conntrack's own default, longer than any device keeps an idle flow.
const maxMiddleboxTimeout = 432000

func parseMiddleboxLine(line string) (Middlebox, error) {
	f := strings.Fields(line)
	if len(f) < 3 {
		return Middlebox{}, fmt.Errorf("%q: want three fields, name seconds source", line)
	}
	name := f[0]
	if err := checkMiddleboxName(name); err != nil {
		return Middlebox{}, err
	}
	secs, err := strconv.Atoi(f[1])
	if err != nil || secs < 1 || secs > maxMiddleboxTimeout {
		return Middlebox{}, fmt.Errorf("%s: idle timeout %q: want whole seconds from 1 to %d", name, f[1], maxMiddleboxTimeout)
	}
	// The source is the rest of the line as written, inner spacing kept.
	rest := strings.TrimSpace(line[len(name):])
	source := strings.TrimSpace(rest[len(f[1]):])
	if !isPrintable(source) {
		return Middlebox{}, fmt.Errorf("%s: the source holds control characters or invalid UTF-8", name)
	}
	return Middlebox{Name: name, IdleTimeout: time.Duration(secs) * time.Second, Source: source, Custom: true}, nil
}

func checkMiddleboxName(name string) error {
	if name == ConntrackName {
		return fmt.Errorf("%q is the namespace's own nf_conntrack timeout, read from the kernel; name the device otherwise", name)
	}
	if len(name) > 64 {
		return fmt.Errorf("name %.20q...: longer than 64 characters", name)
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("name %q: want letters, digits, '-', '_' and '.'", name)
		}
	}
	return nil
}

func isPrintable(s string) bool {
	for _, r := range s {
		if r == '\uFFFD' || r < 0x20 && r != '\t' || r == 0x7f {
			return false
		}
	}
	return true
}

// PathKind says where a path's idle timeout comes from.
type PathKind uint8

// Where a path timeout comes from.
const (
	// PathAssumed: nothing was known; AssumedPathIdleTimeout is planned for.
	PathAssumed PathKind = iota
	// PathGiven: the caller's own value.
	PathGiven
	// PathMiddlebox: a middlebox's timeout from a table.
	PathMiddlebox
	// PathConntrack: the namespace's nf_conntrack_tcp_timeout_established.
	PathConntrack
)

// Path is the idle timeout a path is planned for, and where it comes from.
type Path struct {
	IdleTimeout time.Duration
	Kind        PathKind
	// Middlebox is the entry, for PathMiddlebox.
	Middlebox Middlebox
}

// AssumedPathIdleTimeout is what is planned for when the path is unknown: the
// shortest default among the common middleboxes (Azure Load Balancer's 4 minutes).
const AssumedPathIdleTimeout = 240 * time.Second

// Errors of ChoosePath, for errors.Is.
var (
	// ErrPathConflict: both a timeout and a middlebox name were given.
	ErrPathConflict = errors.New("a path idle timeout and a middlebox name both given")
	// ErrUnknownMiddlebox: the name is in no table.
	ErrUnknownMiddlebox = errors.New("unknown middlebox")
	// ErrNoConntrack: the namespace has no nf_conntrack_tcp_timeout_established
	// (nf_conntrack is not loaded there).
	ErrNoConntrack = errors.New("no nf_conntrack_tcp_timeout_established in the namespace (nf_conntrack is not loaded there)")
)

// PathChoice is what a path timeout is chosen from.
type PathChoice struct {
	// Given is the caller's own timeout; 0 for none.
	Given time.Duration
	// Behind names a middlebox of Table, or ConntrackName; "" for none.
	Behind string
	// Table is where Behind is looked up; nil means Middleboxes.
	Table MiddleboxTable
	// Conntrack is the namespace's nf_conntrack_tcp_timeout_established, nil
	// when it has none.
	Conntrack *time.Duration
}

// ChoosePath picks the path timeout to plan for: the given timeout, else the
// named middlebox (or the local conntrack timeout for ConntrackName), else the
// local conntrack timeout if it is shorter than AssumedPathIdleTimeout, else
// AssumedPathIdleTimeout.
func ChoosePath(c PathChoice) (Path, error) {
	switch {
	case c.Given < 0:
		return Path{}, fmt.Errorf("path idle timeout %v: negative", c.Given)
	case c.Given > 0 && c.Behind != "":
		return Path{}, ErrPathConflict
	case c.Given > 0:
		return Path{IdleTimeout: c.Given, Kind: PathGiven}, nil
	case c.Behind == ConntrackName:
		if c.Conntrack == nil {
			return Path{}, ErrNoConntrack
		}
		return Path{IdleTimeout: *c.Conntrack, Kind: PathConntrack}, nil
	case c.Behind != "":
		t := c.Table
		if t == nil {
			t = Middleboxes
		}
		m, ok := t.Lookup(c.Behind)
		if !ok {
			return Path{}, fmt.Errorf("%w %q", ErrUnknownMiddlebox, c.Behind)
		}
		return Path{IdleTimeout: m.IdleTimeout, Kind: PathMiddlebox, Middlebox: m}, nil
	case c.Conntrack != nil && *c.Conntrack > 0 && *c.Conntrack < AssumedPathIdleTimeout:
		return Path{IdleTimeout: *c.Conntrack, Kind: PathConntrack}, nil
	}
	return Path{IdleTimeout: AssumedPathIdleTimeout, Kind: PathAssumed}, nil
}

// describe names where the path timeout comes from, for a reason.
func (p Path) describe() string {
	switch p.Kind {
	case PathMiddlebox:
		if p.Middlebox.Custom {
			return p.Middlebox.Name
		}
		return p.Middlebox.Name + "'s default"
	case PathConntrack:
		return "local nf_conntrack_tcp_timeout_established"
	case PathAssumed:
		return "assumed: the shortest common middlebox default, Azure Load Balancer's 4 minutes"
	}
	return "given"
}
