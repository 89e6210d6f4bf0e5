// Package sysctl reads, validates, writes and recommends the kernel's TCP
// keepalive tunables (net.ipv4.tcp_keepalive_time, _intvl, _probes) and reads the
// tunables that decide how long a dead peer goes unnoticed otherwise
// (tcp_retries2, tcp_fin_timeout, nf_conntrack_tcp_timeout_established).
//
// Since Linux 4.5 these are per network namespace, and a new namespace starts at
// the kernel defaults, not at the host's values. /proc/sys/net resolves against the
// namespace of the thread that opens the file, so every function that touches the
// kernel takes the Namespace to work in; ProcSys does the same work on the calling
// thread, under any /proc/sys tree.
//
// It also holds tcpkeep's one model of the kernel's TCP clocks (Socket,
// Keepalive.Cadence, Keepalive.DeadPeerDetect): when a connection probes and
// when the kernel drops it, each formula citing the kernel function it follows
// (docs/model.md); the idle timeouts of common middleboxes and the path
// timeout to plan for (ChoosePath); and recommendations that follow the model
// (Recommend).
//
// The package prints nothing and parses no flags.
package sysctl
