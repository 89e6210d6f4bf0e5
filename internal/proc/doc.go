// Package proc reads what the kernel tells about processes under /proc: which
// process holds a socket (one scan of /proc/*/fd, done only when asked), the real
// per-socket keepalive options of that socket (pidfd_getfd + getsockopt), and the
// host name. It also acts on a socket through its owner: Finder.Take duplicates
// the owner's descriptor after checking it is the very socket a dump reported
// (inode and cookie), and the duplicate (Sock) can arm keepalive on it or shut
// it down. A refusal says which right was missing (PermissionError).
//
// sock_diag knows sockets, not processes, and it does not export SO_KEEPALIVE or
// the per-socket keepalive values; this package fills those gaps. It prints
// nothing and parses no flags.
package proc
