// Package diag reads TCP sockets from the kernel through sock_diag (inet_diag)
// netlink, and destroys them by their exact identity.
//
// A dump streams: the Socket handed to each iteration is reused, so copy what you
// keep. A Conn covers one network namespace, the one it was dialled in. Filters
// (states, ports, address prefixes, family) run in the kernel.
//
// What sock_diag cannot say, diag does not guess: SO_KEEPALIVE is not exported,
// so KeepaliveArmed answers only where the pending timer tells; fields of
// tcp_info an older kernel does not send stay zero, and TCPInfo.Len says how
// much came.
//
// The package prints nothing and parses no flags.
package diag
