package audit

import (
	"net/netip"
	"sort"

	"github.com/tcpkeep/tcpkeep/diag"
)

// Peer is one remote address (an IPv4-mapped one as IPv4) connected to one
// local port: what peer_limit_exceeded counts connections of.
type Peer struct {
	Remote netip.Addr
	Port   uint16
}

// PeerOf is the peer s belongs to.
func PeerOf(s *diag.Socket) Peer {
	return Peer{Remote: s.Remote.Addr().Unmap(), Port: s.Local.Port()}
}

// peerKey is a Peer packed for a map: no pointer for the collector to follow.
type peerKey struct {
	addr [16]byte
	port uint16
}

type peerCount struct {
	n     int32
	first *diag.Socket // the connection that took it over the limit
}

// Peers counts connections per peer, as the audit's peer_limit_exceeded and a
// kill's per-peer limit both do: only sockets that hold a connection from a
// peer (HoldsPeer). Its size is bounded by the number of distinct peers, and it
// keeps a copy of a socket only for a peer over the limit.
type Peers struct {
	limit int
	m     map[peerKey]peerCount
}

// NewPeers counts against limit.
func NewPeers(limit int) *Peers { return &Peers{limit: limit, m: map[peerKey]peerCount{}} }

// Add counts s.
func (p *Peers) Add(s *diag.Socket) {
	if !HoldsPeer(s.State) {
		return
	}
	k := peerKey{addr: s.Remote.Addr().Unmap().As16(), port: s.Local.Port()}
	c := p.m[k]
	c.n++
	if int(c.n) == p.limit+1 {
		cp := *s
		c.first = &cp
	}
	p.m[k] = c
}

// Count is how many connections s's peer was counted with.
func (p *Peers) Count(s *diag.Socket) int {
	return int(p.m[peerKey{addr: s.Remote.Addr().Unmap().As16(), port: s.Local.Port()}].n)
}

// PeerCount is a peer over the limit: N connections, First the one that went over.
type PeerCount struct {
	Peer
	N     int
	First *diag.Socket
}

// Over lists the peers over the limit, most connections first, then by address
// and port.
func (p *Peers) Over() []PeerCount {
	var over []PeerCount
	for k, c := range p.m {
		if int(c.n) > p.limit {
			over = append(over, PeerCount{Peer: Peer{Remote: netip.AddrFrom16(k.addr).Unmap(), Port: k.port}, N: int(c.n), First: c.first})
		}
	}
	sort.Slice(over, func(i, j int) bool {
		a, b := over[i], over[j]
		if a.N != b.N {
			return a.N > b.N
		}
		if a.Remote != b.Remote {
			return a.Remote.Less(b.Remote)
		}
		return a.Port < b.Port
	})
	return over
}
