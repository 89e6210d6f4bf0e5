// Package kernel is one network namespace as tcpkeep's engines use it: its
// tunables, a change of its keepalive tunables, a dump of its sockets and the
// destroying of one. Live is the kernel's own; Fake is canned, so that what the
// kernel is not the subject of (usage, validation, rendering, the rules, the
// engines' bookkeeping) is tested without root.
//
// The package prints nothing and parses no flags.
package kernel

import (
	"context"
	"iter"

	"github.com/tcpkeep/tcpkeep/diag"
	"github.com/tcpkeep/tcpkeep/internal/netns"
	"github.com/tcpkeep/tcpkeep/sysctl"
)

// NS is one network namespace.
type NS interface {
	// Name is how records name the namespace (netns.NS.String).
	Name() string
	// Tunables reads its tunables.
	Tunables() (sysctl.Tunables, error)
	// Apply changes its keepalive tunables, all or nothing (sysctl.Apply).
	Apply(c sysctl.Change) (old sysctl.Keepalive, err error)
	// IsHost reports whether it is the host's namespace, the only one sysctl.d
	// files reach at boot.
	IsHost() (bool, error)
	// Dial opens a sock_diag connection in it.
	Dial() (Conn, error)
}

// Conn dumps and destroys sockets of one namespace; *diag.Conn is one. One
// Conn may destroy from inside the loop over its own dump.
type Conn interface {
	Sockets(ctx context.Context, f *diag.Filter) iter.Seq2[*diag.Socket, error]
	Destroy(s *diag.Socket) error
	Close() error
}

// Live is the kernel's namespace ns.
func Live(ns netns.NS) NS { return live{ns} }

type live struct{ ns netns.NS }

func (l live) Name() string                       { return l.ns.String() }
func (l live) Tunables() (sysctl.Tunables, error) { return sysctl.Read(l.ns) }
func (l live) IsHost() (bool, error)              { return l.ns.IsHost() }

func (l live) Apply(c sysctl.Change) (sysctl.Keepalive, error) { return sysctl.Apply(l.ns, c) }

func (l live) Dial() (Conn, error) {
	c, err := diag.Dial(l.ns)
	if err != nil {
		return nil, err
	}
	return c, nil
}
