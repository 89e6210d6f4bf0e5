// Package diag reads TCP sockets from the kernel through sock_diag (inet_diag)
// netlink, and destroys them by their exact identity.
//
// A dump streams: the Socket handed to each iteration is reused, so copy what you
// keep. A Conn covers one network namespace, the one it was dialled in (Dial
// takes the same Namespace value package sysctl and probe take; nil is the
// caller's own). Filters (states, ports, address prefixes, family) run in the
// kernel: the states as the request's state mask, ports and prefixes as
// inet_diag bytecode, the family by dumping only that family.
//
// What it reads, per socket: from struct inet_diag_msg the state, the pending
// timer with its expiry and retransmit or probe count, addresses, ports,
// interface, cookie, queues (for LISTEN the accept queue and backlog, as ss shows
// them), uid and inode; from struct tcp_info (INET_DIAG_INFO) the times since the
// last data and ACK, rtt, rto, retransmits, probes, backoff, unacked and more.
// Everything is decoded by offset and length-checked against what the kernel sent:
// fields of tcp_info an older kernel does not send stay zero, and TCPInfo.Len says
// how much came. A malformed message is an error, never a guess.
//
// What sock_diag cannot say, diag does not guess: SO_KEEPALIVE is not exported,
// so KeepaliveArmed answers only where the pending timer tells. Timer code 2 on a
// FIN_WAIT2 socket is the FIN_WAIT2 timeout (sk_timer), not keepalive: it is
// reported as TimerFinWait2.
//
// Dumps are read through the socket's SyscallConn into one reused buffer, the
// netlink headers (sequence, NLMSG_ERROR, NLMSG_DONE, NLM_F_DUMP_INTR) checked
// here: no allocation per socket. An interrupted dump is retried once, then
// reported (ErrDumpInterrupted); a stopped or cancelled dump is drained, so the
// Conn stays usable. github.com/mdlayher/netlink dials, sends and runs Destroy.
//
// The sockets and the filters build anywhere; the kernel calls are Linux only.
// The package prints nothing and parses no flags.
package diag
