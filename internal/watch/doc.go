// Package watch is the agent's engine: it audits every namespace it is given,
// every interval (audit.Run), and turns what the audits find into events: a
// finding is opened the first time an audit sees it, keyed by namespace,
// socket cookie and code (by namespace and code for the tunables' findings),
// and resolved once when it goes, saying how:
//
//   - HowClosed: the socket is gone. The kernel's destroy broadcast
//     (diag.SubscribeDestroyed) says how it ended (audit.HowEnded: keepalive,
//     retransmit, user_timeout, connect_timeout, closed, destroyed); where the
//     broadcast did not come, the End is unknown.
//   - HowCleared: the socket lives on, and the condition went away.
//   - HowKilled: the engine's own kill closed it (Config.Kill).
//
// The broadcasts also count, per namespace, the connections the kernel dropped
// for a timeout (Metrics.Ended).
//
// What the engine holds is bounded by the findings, not by the socket table:
// the open findings, the cookies of sockets it closed itself, and during an
// audit the cookies of the sockets freed meanwhile.
//
// It parses no flags and prints nothing: events go to Config.Emit, metrics to
// Config.Metrics, logs to Config.Log.
package watch
