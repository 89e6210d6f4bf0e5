// Package audit turns TCP sockets and a namespace's keepalive tunables into
// findings: half-open connections, connections that would never notice a dead
// peer, CLOSE_WAIT leaks, full accept queues, peers holding too many connections
// and tunables that let middleboxes forget idle flows first.
//
// An Auditor is fed one socket at a time, straight from a sock_diag dump, and
// keeps no socket table: what it remembers is bounded by the number of distinct
// peers (for peer_limit_exceeded), never by the number of sockets. Owners and
// socket options are looked up only for sockets a rule has flagged (socket
// options also for keepalive-armed ones when a path timeout applies), so an
// audit of many healthy sockets never scans /proc.
//
// The package prints nothing and parses no flags.
package audit
