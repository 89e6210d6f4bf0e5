package kill

import (
	"errors"

	"github.com/tcpkeep/tcpkeep/diag"
	"github.com/tcpkeep/tcpkeep/internal/proc"
)

// OwnerCloser is a Destroyer for kernels that cannot destroy sockets
// (CONFIG_INET_DIAG_DESTROY off) or for callers who ask for it: it closes a
// connection through its owner, shutting down a duplicate of the owner's
// descriptor both ways (proc.Sock.Shutdown) after checking that the
// duplicate is the very socket the dump reported (inode and cookie).
//
// The owner sees its connection end (its reads return end of file, its
// writes fail with EPIPE) instead of ECONNABORTED, and the peer gets a FIN
// instead of a RST. The socket is released when the owner closes its
// descriptor; until then it goes through FIN_WAIT1 like any socket that was
// shut down, retransmitting its FIN to a peer that may be gone (tcp_retries2,
// or tcp_orphan_retries once the owner has closed it).
//
// Results, through Classify: closed; gone when the owner or its descriptor
// is gone, or the descriptor now holds another socket (which is not
// touched); denied without ptrace rights over the owner (a
// *proc.PermissionError says which); unsupported without pidfd_getfd (Linux
// 5.6); error when no owner is found. Sockets without an inode (orphans,
// TIME_WAIT) have no owner to go through.
type OwnerCloser struct {
	// Destroyer, when not nil and Force is false, is tried first: only when
	// it reports that the kernel cannot destroy (diag.ErrDestroyUnsupported)
	// is that socket, and every later one, closed through its owner.
	Destroyer Destroyer
	// Force closes every socket through its owner, SOCK_DESTROY untried.
	Force bool
	// Owners finds owners and takes their descriptors. nil: a Finder over
	// /proc made at the first socket, released by Close.
	Owners *proc.Finder

	own      bool // Owners was made here
	fellBack bool
	viaOwner int
}

// Destroy closes s, with SOCK_DESTROY or through its owner (see OwnerCloser).
func (c *OwnerCloser) Destroy(s *diag.Socket) error {
	if c.Destroyer != nil && !c.Force && !c.fellBack {
		err := c.Destroyer.Destroy(s)
		if !errors.Is(err, diag.ErrDestroyUnsupported) {
			return err
		}
		c.fellBack = true
	}
	if c.Owners == nil {
		c.Owners, c.own = proc.NewFinder("/proc", 0), true
	}
	sock, _, err := c.Owners.Take(s.Inode, s.Cookie)
	if err != nil {
		return err
	}
	defer sock.Close()
	if err := sock.Shutdown(); err != nil {
		return err
	}
	c.viaOwner++
	return nil
}

// FellBack says whether the Destroyer reported that the kernel cannot
// destroy sockets, so that sockets were closed through their owners.
func (c *OwnerCloser) FellBack() bool { return c.fellBack }

// ViaOwner is how many sockets were closed through their owners.
func (c *OwnerCloser) ViaOwner() int { return c.viaOwner }

// Close releases the Finder the OwnerCloser made, if it made one.
func (c *OwnerCloser) Close() error {
	if c.own && c.Owners != nil {
		return c.Owners.Close()
	}
	return nil
}
