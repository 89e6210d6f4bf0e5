// Package diag reads TCP sockets from the kernel through sock_diag (inet_diag)
// netlink, and destroys them by their exact identity.
//
// A dump streams: the Socket handed to each iteration is reused, so copy what you
// keep. A Conn covers one network namespace, the one it was dialled in.
//
// The package prints nothing and parses no flags.
package diag
