// Package probe is an application-level heartbeat over TCP, and a way to measure
// how long a path (NAT gateway, firewall, load balancer) keeps an idle connection.
//
// The heartbeat is a fixed-size Frame: the client sends a ping every interval, the
// server echoes it back as a pong of the same size, and the client declares the
// peer dead after a number of pings in a row go unanswered within a timeout. Server
// is the echo side, bounded in clients, silence, rate and answer size, and keeping
// room for clients that speak the protocol: a full Server evicts connections that
// have not sent a frame, or have been silent long, and refuses the rest with a
// busy frame (ErrBusy on the client); Run is the client side; DiscoverIdle finds the longest idle period a path keeps a
// connection, by letting connections without keepalive sit idle for increasing
// durations and checking each with a heartbeat.
//
// Connections are made by Dial, which sets the per-socket keepalive options and
// TCP_USER_TIMEOUT before connecting, inside a network namespace if given one.
//
// The package prints nothing and parses no flags; every blocking call takes a
// context and leaves no goroutine behind when it returns.
package probe
