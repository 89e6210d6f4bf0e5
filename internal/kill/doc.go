// Package kill closes TCP sockets the operator can name a reason for: those a
// filter selects, those an audit rule flags, and the surplus of peers holding
// more connections than a limit. It destroys each one with SOCK_DESTROY and the
// exact identity the dump reported, cookie included, so a 4-tuple that a new
// connection took over in the meantime is never touched.
//
// It streams: sockets are judged one at a time as the dump hands them out and
// destroyed at once, on a second netlink socket, so nothing holds the socket
// table. A per-peer limit (Config.MaxPerPeer) takes two dumps (see Run): the
// first counts connections per peer, the second keeps the least idle of the
// peers over the limit and closes the rest, holding at most the limit's worth
// of sockets per such peer.
//
// Arm selects sockets the same way and, instead of closing them, turns
// keepalive on through a duplicate of the owner's descriptor (pidfd_getfd),
// after checking that the duplicate is the very socket the dump reported.
// OwnerCloser closes connections that way too, for kernels without
// SOCK_DESTROY: it shuts them down through their owners.
//
// The package prints nothing and parses no flags.
package kill
