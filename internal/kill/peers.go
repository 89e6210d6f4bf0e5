package kill

import (
	"container/heap"
	"time"

	"github.com/tcpkeep/tcpkeep/diag"
	"github.com/tcpkeep/tcpkeep/internal/audit"
)

// peerCounts enforces a per-peer limit over two dumps: count (audit.Peers, as
// the audit counts), then keep the least idle and close the rest.
type peerCounts struct {
	limit  int
	counts *audit.Peers           // first dump: connections per peer, all peers
	groups map[audit.Peer]*keeper // second dump: the peers over the limit only
	start  time.Time
	victim diag.Socket // the socket a keeper pushed out, while it is handled
}

func newPeerCounts(limit int) *peerCounts {
	return &peerCounts{limit: limit, counts: audit.NewPeers(limit), start: time.Now()}
}

// count counts s in the first dump.
func (p *peerCounts) count(s *diag.Socket) { p.counts.Add(s) }

// over ends the first dump: it keeps a keeper for every peer over the limit
// and forgets the counts of the others. It reports whether there is any.
func (p *peerCounts) over() bool {
	p.groups = map[audit.Peer]*keeper{}
	for _, o := range p.counts.Over() {
		p.groups[o.Peer] = &keeper{count: o.N}
	}
	p.counts = nil
	return len(p.groups) > 0
}

// offer judges s in the second dump. It returns the socket to close now: s
// itself, or one that s pushed out of its peer's keeper (valid until the next
// offer), or nil.
func (p *peerCounts) offer(s *diag.Socket) *diag.Socket {
	if !audit.HoldsPeer(s.State) {
		return nil
	}
	g := p.groups[audit.PeerOf(s)]
	if g == nil {
		return nil
	}
	// When the connection last carried data, on one clock: idle times read at
	// different moments of the dump compare exactly this way.
	active := time.Since(p.start) - s.Idle()
	if len(g.kept) < p.limit {
		heap.Push(g, kept{sock: *s, active: active})
		return nil
	}
	if active <= g.kept[0].active {
		// At least limit connections of this peer are less idle (or as idle
		// and came first).
		return s
	}
	p.victim = g.kept[0].sock
	g.kept[0] = kept{sock: *s, active: active}
	heap.Fix(g, 0)
	return &p.victim
}

// finding is why a peer's connection s is closed, as the audit states it: the
// peer holds Count connections, over Limit, and s is one of the idlest (idle
// Value).
func (p *peerCounts) finding(s *diag.Socket) audit.Finding {
	n := 0
	if g := p.groups[audit.PeerOf(s)]; g != nil {
		n = g.count
	}
	return audit.Finding{Code: audit.PeerLimitExceeded, Severity: audit.Warning, Socket: s,
		Count: n, Limit: p.limit, Value: s.Idle(), Remedy: audit.RemedyLimitPeer}
}

// kept is a connection a keeper holds on to.
type kept struct {
	sock   diag.Socket
	active time.Duration // when it last carried data, since peerCounts.start
}

// keeper holds a peer's limit least idle connections seen so far, the idlest
// on top (a max-heap of idleness): a less idle newcomer pushes it out.
type keeper struct {
	count int // the peer's connections in the first dump
	kept  []kept
}

func (g *keeper) Len() int           { return len(g.kept) }
func (g *keeper) Less(i, j int) bool { return g.kept[i].active < g.kept[j].active }
func (g *keeper) Swap(i, j int)      { g.kept[i], g.kept[j] = g.kept[j], g.kept[i] }
func (g *keeper) Push(x any)         { g.kept = append(g.kept, x.(kept)) }
func (g *keeper) Pop() any {
	x := g.kept[len(g.kept)-1]
	g.kept = g.kept[:len(g.kept)-1]
	return x
}
