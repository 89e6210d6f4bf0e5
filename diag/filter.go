package diag

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
)

// StateSet is a set of TCP states, one bit per State (bit 1 << State), the
// shape of the request's idiag_states mask.
type StateSet uint32

// Groups of states, as ss names them.
const (
	// StatesAll is every state, request sockets (NEW_SYN_RECV) included.
	StatesAll StateSet = 1<<(StateNewSynRecv+1) - 2
	// StatesConnected is every state but LISTEN and CLOSE.
	StatesConnected = StatesAll &^ (1<<StateListen | 1<<StateClose)
	// StatesSynchronized is the connected states but SYN_SENT.
	StatesSynchronized = StatesConnected &^ (1 << StateSynSent)
	// StatesBucket is the states kept as minisockets: TIME_WAIT and SYN_RECV.
	StatesBucket = 1<<StateSynRecv | 1<<StateNewSynRecv | 1<<StateTimeWait
	// StatesBig is every state but the bucket ones.
	StatesBig = StatesAll &^ StatesBucket
)

// Of is the set holding only st; SYN_RECV includes the request sockets the
// kernel reports as NEW_SYN_RECV.
func Of(st State) StateSet {
	if st == StateSynRecv || st == StateNewSynRecv {
		return 1<<StateSynRecv | 1<<StateNewSynRecv
	}
	return 1 << st
}

// Has reports whether st is in the set.
func (ss StateSet) Has(st State) bool { return ss&(1<<st) != 0 }

// stateNames maps every spelling ParseStates accepts, lower case, to its set:
// ss's names and groups, and the kernel's names.
var stateNames = []struct {
	name string
	set  StateSet
}{
	{"all", StatesAll},
	{"connected", StatesConnected},
	{"synchronized", StatesSynchronized},
	{"bucket", StatesBucket},
	{"big", StatesBig},
	{"established", Of(StateEstablished)},
	{"syn-sent", Of(StateSynSent)},
	{"syn-recv", Of(StateSynRecv)},
	{"fin-wait-1", Of(StateFinWait1)},
	{"fin-wait-2", Of(StateFinWait2)},
	{"time-wait", Of(StateTimeWait)},
	{"closed", Of(StateClose)},
	{"close-wait", Of(StateCloseWait)},
	{"last-ack", Of(StateLastAck)},
	{"listening", Of(StateListen)},
	{"closing", Of(StateClosing)},
	// The kernel's names, as State.String prints them.
	{"syn_sent", Of(StateSynSent)},
	{"syn_recv", Of(StateSynRecv)},
	{"fin_wait1", Of(StateFinWait1)},
	{"fin_wait2", Of(StateFinWait2)},
	{"time_wait", Of(StateTimeWait)},
	{"close", Of(StateClose)},
	{"close_wait", Of(StateCloseWait)},
	{"last_ack", Of(StateLastAck)},
	{"listen", Of(StateListen)},
	// ss's abbreviations in its output and its older spellings.
	{"estab", Of(StateEstablished)},
	{"syn-rcv", Of(StateSynRecv)},
	{"new_syn_recv", Of(StateNewSynRecv)},
}

// ParseStates reads a comma-separated list of state names and groups, in ss's
// spelling (established, syn-sent, ..., all, connected, synchronized, bucket,
// big) or the kernel's (ESTABLISHED, SYN_SENT, ...), case-insensitive, and
// returns their union.
func ParseStates(s string) (StateSet, error) {
	var set StateSet
	for _, f := range strings.Split(s, ",") {
		f = strings.ToLower(strings.TrimSpace(f))
		found := false
		for _, n := range stateNames {
			if n.name == f {
				set |= n.set
				found = true
				break
			}
		}
		if !found {
			return 0, fmt.Errorf("unknown TCP state %q (accepted: %s; or the kernel's names: ESTABLISHED, SYN_SENT, SYN_RECV, FIN_WAIT1, FIN_WAIT2, TIME_WAIT, CLOSE, CLOSE_WAIT, LAST_ACK, LISTEN, CLOSING)",
				f, "all, connected, synchronized, bucket, big, established, syn-sent, syn-recv, fin-wait-1, fin-wait-2, time-wait, closed, close-wait, last-ack, listening, closing")
		}
	}
	return set, nil
}

// PortRange is an inclusive range of ports. The zero value means any port.
type PortRange struct{ Lo, Hi uint16 }

// Any reports whether the range puts no condition on the port.
func (r PortRange) Any() bool { return r.Lo == 0 && (r.Hi == 0 || r.Hi == 65535) }

// Contains reports whether port p is in the range.
func (r PortRange) Contains(p uint16) bool { return r.Any() || (p >= r.Lo && p <= r.Hi) }

// Filter selects sockets. The kernel applies it: the states as the request's
// state mask, the ports and addresses as inet_diag bytecode, the family by
// dumping only that family. The zero value (or a nil *Filter) selects every
// socket.
type Filter struct {
	// States to dump; 0 means StatesAll.
	States StateSet
	// Family to dump; 0 means both.
	Family Family
	// SPort and DPort are ranges of the local and remote port.
	SPort, DPort PortRange
	// Src and Dst are prefixes the local and remote address must be in; an
	// invalid (zero) prefix means any. An IPv4 prefix also matches IPv6
	// sockets with an IPv4-mapped address, as in the kernel.
	Src, Dst netip.Prefix
}

// Check reports a filter that cannot mean anything.
func (f *Filter) Check() error {
	if f == nil {
		return nil
	}
	if f.Family != 0 && f.Family != FamilyInet && f.Family != FamilyInet6 {
		return fmt.Errorf("filter: family %d is neither inet nor inet6", f.Family)
	}
	if f.States&^StatesAll != 0 {
		return fmt.Errorf("filter: state mask %#x has bits outside the TCP states", uint32(f.States))
	}
	for _, r := range [...]struct {
		name string
		r    PortRange
	}{{"source port", f.SPort}, {"destination port", f.DPort}} {
		if !r.r.Any() && r.r.Hi < r.r.Lo {
			return fmt.Errorf("filter: %s range %d-%d is empty", r.name, r.r.Lo, r.r.Hi)
		}
	}
	return nil
}

// Match reports whether the filter selects s: what the kernel does with the
// state mask and the bytecode, done in Go.
func (f *Filter) Match(s *Socket) bool {
	if f == nil {
		return true
	}
	states := f.States
	if states == 0 {
		states = StatesAll
	}
	if !states.Has(s.State) {
		return false
	}
	if f.Family != 0 && f.Family != s.Family {
		return false
	}
	return f.SPort.Contains(s.Local.Port()) && f.DPort.Contains(s.Remote.Port()) &&
		prefixMatch(f.Src, s.Local.Addr()) && prefixMatch(f.Dst, s.Remote.Addr())
}

func prefixMatch(p netip.Prefix, a netip.Addr) bool {
	if !p.IsValid() {
		return true
	}
	if p.Addr().Is4() && a.Is4In6() {
		a = a.Unmap()
	}
	return p.Contains(a)
}

// Opcodes of inet_diag bytecode (enum in include/uapi/linux/inet_diag.h).
const (
	bcSGE   = 2
	bcSLE   = 3
	bcDGE   = 4
	bcDLE   = 5
	bcSCond = 7
	bcDCond = 8
)

// bytecode compiles the port and address conditions into inet_diag bytecode,
// or returns nil when there are none.
//
// The kernel runs a program of struct inet_diag_bc_op {u8 code; u8 yes; u16 no}:
// a true condition moves on by yes bytes, a false one by no bytes, and the socket
// is selected when the run ends exactly at the end of the program. The filter is
// a conjunction, so every condition goes on to the next when true and jumps past
// the end (the remaining length + 4, the kernel's "reject") when false.
func (f *Filter) bytecode() []byte {
	if f == nil {
		return nil
	}
	type op struct {
		code byte
		port uint16       // for the port comparisons
		cond netip.Prefix // for S_COND / D_COND
	}
	var ops []op
	port := func(ge, le byte, r PortRange) {
		if r.Any() {
			return
		}
		if r.Lo > 0 {
			ops = append(ops, op{code: ge, port: r.Lo})
		}
		if r.Hi < 65535 {
			ops = append(ops, op{code: le, port: r.Hi})
		}
	}
	port(bcSGE, bcSLE, f.SPort)
	port(bcDGE, bcDLE, f.DPort)
	if f.Src.IsValid() {
		ops = append(ops, op{code: bcSCond, cond: f.Src.Masked()})
	}
	if f.Dst.IsValid() {
		ops = append(ops, op{code: bcDCond, cond: f.Dst.Masked()})
	}
	if len(ops) == 0 {
		return nil
	}
	size := func(o op) int {
		switch o.code {
		case bcSCond, bcDCond:
			// op, struct inet_diag_hostcond {u8 family; u8 prefix_len; int port},
			// then the address.
			return 4 + 8 + o.cond.Addr().BitLen()/8
		}
		return 8 // op, then an op whose "no" holds the port
	}
	total := 0
	for _, o := range ops {
		total += size(o)
	}
	b := make([]byte, 0, total)
	rest := total
	for _, o := range ops {
		n := size(o)
		b = append(b, o.code, byte(n))
		b = binary.NativeEndian.AppendUint16(b, uint16(rest+4))
		switch o.code {
		case bcSCond, bcDCond:
			fam := byte(FamilyInet)
			if o.cond.Addr().Is6() {
				fam = byte(FamilyInet6)
			}
			b = append(b, fam, byte(o.cond.Bits()), 0, 0)
			b = binary.NativeEndian.AppendUint32(b, 0xffffffff) // port -1: any
			b = append(b, o.cond.Addr().AsSlice()...)
		default:
			b = append(b, 0, 0)
			b = binary.NativeEndian.AppendUint16(b, o.port)
		}
		rest -= n
	}
	return b
}

// families returns the dumps a filter makes: one per family asked for, or
// one of both (familyAny).
func (f *Filter) families() []Family {
	if f == nil || f.Family == 0 {
		return []Family{familyAny}
	}
	return []Family{f.Family}
}
