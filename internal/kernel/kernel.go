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
func Live(ns netns.NS) NS { return live{ns.String(), ns, ns.IsHost} }

// Visited is the kernel's namespace a netns.Walker is visiting: everything
// goes through v, so it happens on the visit's thread where the walk entered
// the namespace, and in the namespace that was found (checked by inode).
func Visited(v *netns.Visit) NS {
	return live{v.Name, v, func() (bool, error) { return v.Host, nil }}
}

// live reaches a namespace through in: its tunables and sock_diag sockets are
// opened on a thread inside it.
type live struct {
	name   string
	in     sysctl.Namespace
	isHost func() (bool, error)
}

func (l live) Name() string                       { return l.name }
func (l live) Tunables() (sysctl.Tunables, error) { return sysctl.Read(l.in) }
func (l live) IsHost() (bool, error)              { return l.isHost() }

func (l live) Apply(c sysctl.Change) (sysctl.Keepalive, error) { return sysctl.Apply(l.in, c) }

func (l live) Dial() (Conn, error) {
	c, err := diag.Dial(l.in)
	if err != nil {
		return nil, err
	}
	return c, nil
}
