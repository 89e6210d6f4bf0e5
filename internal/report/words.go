package report

import (
	"fmt"
	"strings"
	"time"

	"github.com/tcpkeep/tcpkeep/diag"
	"github.com/tcpkeep/tcpkeep/internal/audit"
	"github.com/tcpkeep/tcpkeep/sysctl"
)

// Words puts findings into sentences for one command: the libraries state
// facts, and what to type next depends on which command is speaking.
type Words struct {
	// Sockopts says the command has --sockopts (audit), so a sentence may
	// point to it where the socket's own options would tell more.
	Sockopts bool
	// Remedy ends a sentence with what to do (audit). An action says what was
	// done instead (kill).
	Remedy bool
	// NetNS is the --netns value the run was given, for the command lines a
	// sentence suggests; "" for the namespace tcpkeep runs in.
	NetNS string
	// PodUID is the Kubernetes pod whose namespace it is, "" for none: a
	// finding about its tunables then says how the pod's spec sets them.
	PodUID string
	// Recommended are the keepalive values sysctl recommend gives for the
	// namespace (for a pod's spec); zero where not known.
	Recommended sysctl.Keepalive
}

// Message is the finding in one sentence a person can act on, with its numbers.
func (w Words) Message(f *audit.Finding) string {
	var b strings.Builder
	s := f.Socket
	d := Duration
	switch f.Code {
	case audit.HalfOpenKeepalive:
		fmt.Fprintf(&b, "%s: %d keepalive %s unanswered and nothing received for %s, the peer is gone (crashed, cut off, or a middlebox forgot the flow); ",
			between(s), f.Count, plural(f.Count, "probe", "probes"), d(f.Value))
		switch {
		case f.DropBy == sysctl.DropNone:
			b.WriteString("when the kernel drops it depends on the socket's own TCP_KEEPCNT")
			w.sockopts(&b, " (--sockopts reads it)")
		case f.DropBy == sysctl.DropUserTimeout:
			fmt.Fprintf(&b, "TCP_USER_TIMEOUT %s drops it in about %s (at the first probe once nothing was received for that long; TCP_KEEPCNT no longer counts)",
				d(f.DropLimit), d(f.DropIn))
		default:
			fmt.Fprintf(&b, "the kernel drops it in about %s (after %d probes %s apart, ", d(f.DropIn), f.Keepalive.Probes, d(f.Keepalive.Intvl))
			if f.ValueFrom == audit.SourceSocket {
				b.WriteString("the socket's TCP_KEEPINTVL and TCP_KEEPCNT)")
			} else {
				b.WriteString("the namespace's tunables, unless the socket sets its own")
				w.sockopts(&b, ": --sockopts reads them")
				b.WriteString(")")
			}
		}
	case audit.HalfOpenRetrans:
		fmt.Fprintf(&b, "%s: %d retransmissions and no ACK for %s with %d bytes unsent or unacknowledged, the peer is gone or the path drops its packets; ",
			between(s), f.Count, d(f.Value), s.SendQ)
		switch f.DropBy {
		case sysctl.DropUserTimeout:
			fmt.Fprintf(&b, "TCP_USER_TIMEOUT gives up in about %s (%s after the first retransmission, %s ago)", d(f.DropIn), d(f.DropLimit), d(f.DropAfter-f.DropIn))
		case sysctl.DropOrphanRetries:
			fmt.Fprintf(&b, "the application has closed it, so tcp_orphan_retries (%d retransmissions) gives up in about %s (%s after the first retransmission)", f.Retries, d(f.DropIn), d(f.DropAfter))
		case sysctl.DropRetries2:
			fmt.Fprintf(&b, "tcp_retries2 %d gives up in about %s (%s after the first retransmission, longer on a slow path)", f.Retries, d(f.DropIn), d(f.DropAfter))
		default:
			b.WriteString("tcp_retries2 is unknown, so when the kernel gives up is too")
		}
	case audit.ZeroWindowStall:
		what := "the peer stopped reading"
		if s.Timer == diag.TimerPersist && s.TimerRetrans >= audit.ZeroWindowProbes {
			what = fmt.Sprintf("and the last %d went unanswered: the peer may be gone too", s.TimerRetrans)
		}
		fmt.Fprintf(&b, "%s: the peer has advertised a zero window for about %s and %d zero-window probes went out, %s; %d bytes wait in the send queue",
			between(s), d(f.Value), f.Count, what, s.SendQ)
		switch f.DropBy {
		case sysctl.DropUserTimeout:
			fmt.Fprintf(&b, "; TCP_USER_TIMEOUT %s drops it in about %s", d(f.DropLimit), d(f.DropIn))
		case sysctl.DropRetries2, sysctl.DropOrphanRetries:
			fmt.Fprintf(&b, "; if nothing answers, %s drops it in about %s", f.DropBy, d(f.DropIn))
		}
	case audit.IdleNoKeepalive:
		fmt.Fprintf(&b, "%s: idle for %s (over --max-idle %s) without SO_KEEPALIVE", between(s), d(f.Value), d(f.Threshold))
		holder(&b, f)
		b.WriteString(", so a dead peer would never be noticed")
	case audit.IdleOverlong:
		fmt.Fprintf(&b, "%s: no data sent or received for %s (over --idle-limit %s)", between(s), d(f.Value), d(f.Threshold))
	case audit.KeepaliveAfterPathTimeout:
		fmt.Fprintf(&b, "%s: keepalive probes the idle connection every %s (%s), but %s forgets an idle flow after %s, and timers fire up to an eighth late, so the flow can be gone before a probe",
			between(s), d(f.Value), cadenceSource(f), pathName(f.ThresholdFrom), d(f.Threshold))
	case audit.CloseWaitStale:
		fmt.Fprintf(&b, "%s: in CLOSE_WAIT for about %s (over --close-wait-after %s): the peer closed, the application never did", between(s), d(f.Value), d(f.Threshold))
	case audit.ListenQueueFull:
		fmt.Fprintf(&b, "listener %s: accept queue %d of backlog %d, new connections are dropped once it is full", s.Local, f.Count, f.Limit)
	case audit.PeerLimitExceeded:
		p := audit.PeerOf(s)
		fmt.Fprintf(&b, "%s holds %d connections to local port %d (over --max-per-peer %d): a client that leaks connections or a flood", p.Remote, f.Count, p.Port, f.Limit)
		if !w.Remedy && f.Count > f.Limit {
			fmt.Fprintf(&b, "; this is one of its %d idlest (idle %s)", f.Count-f.Limit, d(f.Value))
		}
	case audit.SysctlKeepaliveDefault:
		fmt.Fprintf(&b, "tcp_keepalive_time is the kernel default of %s: a dead idle peer is found after %s, long after most NAT gateways, firewalls and load balancers (4 to 20 minutes) forgot the flow",
			d(f.Value), d(f.Keepalive.DeadPeerDetect()))
	case audit.SysctlKeepaliveAfterConntrack:
		fmt.Fprintf(&b, "keepalive probes every %s (the larger of tcp_keepalive_time %s and tcp_keepalive_intvl %s), not under nf_conntrack_tcp_timeout_established %s less an eighth for timers that fire late: local conntrack can forget an idle flow before its next keepalive probe",
			d(f.Value), d(f.Keepalive.Time), d(f.Keepalive.Intvl), d(f.Threshold))
	default:
		fmt.Fprintf(&b, "%s", f.Code)
	}
	if f.Code != audit.IdleNoKeepalive && f.Code != audit.PeerLimitExceeded {
		holder(&b, f)
	}
	if w.Remedy {
		if r := w.remedy(f); r != "" {
			b.WriteString("; ")
			b.WriteString(r)
		}
	}
	return b.String()
}

func (w Words) sockopts(b *strings.Builder, s string) {
	if w.Sockopts {
		b.WriteString(s)
	}
}

// remedy says what to do, with the command line where tcpkeep can do it.
func (w Words) remedy(f *audit.Finding) string {
	ns := ""
	if w.NetNS != "" {
		ns = " --netns " + w.NetNS
	}
	s := f.Socket
	switch f.Remedy {
	case audit.RemedyClose:
		extra := ""
		if f.Code == audit.IdleOverlong {
			extra = " --idle-limit " + Duration(f.Threshold)
		}
		what := "close it now with"
		if f.Code == audit.IdleOverlong {
			what = "close it in the application, or with"
		}
		return fmt.Sprintf("%s tcpkeep%s kill --finding %s%s", what, ns, f.Code, extra)
	case audit.RemedyUserTimeout:
		return "set TCP_USER_TIMEOUT in the application to give up sooner" + w.arm(f, ns, "; bound this connection now with ", true)
	case audit.RemedyFixReader:
		return fmt.Sprintf("fix the reader at %s or bound the wait with TCP_USER_TIMEOUT", s.Remote) + w.arm(f, ns, " (now: ", true)
	case audit.RemedyKeepalive:
		return "set SO_KEEPALIVE in the application (with TCP_KEEPIDLE below the path's idle timeout)" + w.arm(f, ns, "; until then, arm this connection now: ", false)
	case audit.RemedySocketKeepidle:
		limit := sysctl.CadenceLimit(f.Threshold)
		if limit < time.Second {
			return noKeepaliveFits
		}
		return fmt.Sprintf("set TCP_KEEPIDLE and TCP_KEEPINTVL in the application to %s at most", Duration(limit))
	case audit.RemedyTune:
		if r := w.podSysctls(f, ns); r != "" {
			return r
		}
		if f.Code == audit.SysctlKeepaliveDefault {
			return fmt.Sprintf("lower it with tcpkeep%s sysctl recommend --apply", ns)
		}
		// The longest cadence that stays under the path less its margin
		// (sysctl.CadenceLimit): what sysctl recommend plans for.
		limit := sysctl.CadenceLimit(f.Threshold)
		if limit < time.Second {
			return noKeepaliveFits
		}
		path := "--path-idle-timeout " + Duration(f.Threshold)
		if f.ThresholdFrom == audit.SourceConntrack {
			path = "--behind conntrack"
		}
		r := fmt.Sprintf("bring tcp_keepalive_time and tcp_keepalive_intvl to %s at most with tcpkeep%s sysctl recommend %s --apply", Duration(limit), ns, path)
		if f.ValueFrom == audit.SourceTimer {
			r += ", or the socket's TCP_KEEPIDLE and TCP_KEEPINTVL if it sets its own"
		}
		return r
	case audit.RemedyFixClose:
		return "fix the application's close path (close the socket on EOF or error)"
	case audit.RemedyAcceptFaster:
		return "accept faster in the application, or raise the backlog (listen() and net.core.somaxconn)"
	case audit.RemedyLimitPeer:
		p := audit.PeerOf(s)
		return fmt.Sprintf("list them with tcpkeep%s conns --dst %s --sport %d, close the idlest with tcpkeep%s kill --max-per-peer %d --sport %d",
			ns, p.Remote, p.Port, ns, f.Limit, p.Port)
	}
	return ""
}

// arm is the arm command line that fixes f's connection now, after lead:
// the connection's own addresses and ports, and the values audit recommends
// for the path (audit.Finding.Arm), with TCP_USER_TIMEOUT when uto. Nothing
// where arm cannot act on it: no values, or a socket no program holds, or a
// state arm leaves alone. A lead that opens a parenthesis gets it closed.
func (w Words) arm(f *audit.Finding, ns, lead string, uto bool) string {
	s, k := f.Socket, f.Arm
	if k.Probes == 0 || s.Inode == 0 || (s.State != diag.StateEstablished && s.State != diag.StateCloseWait) {
		return ""
	}
	b := fmt.Appendf(nil, "%stcpkeep%s arm --sport %d --dst %s --dport %d --time %s --intvl %s --probes %d",
		lead, ns, s.Local.Port(), s.Remote.Addr().WithZone(""), s.Remote.Port(), Duration(k.Time), Duration(k.Intvl), k.Probes)
	if uto {
		b = fmt.Appendf(b, " --user-timeout %s", Duration(k.UserTimeout))
	}
	if strings.HasSuffix(lead, "(now: ") {
		b = append(b, ')')
	}
	return string(b)
}

// podSysctls is the remedy of a tunables finding in a pod's namespace: the
// pod's securityContext.sysctls (safe sysctls since Kubernetes 1.29, set when
// the pod is created), beside the command that sets them now; "" for a socket
// finding, a namespace that is not a pod's, or values not known.
func (w Words) podSysctls(f *audit.Finding, ns string) string {
	k := w.Recommended
	if w.PodUID == "" || k.Time <= 0 || f.Socket != nil {
		return ""
	}
	t, i := int64(k.Time/time.Second), int64(k.Intvl/time.Second)
	return fmt.Sprintf(`set the pod's keepalive tunables in its spec (pod %s; safe sysctls since Kubernetes 1.29): securityContext: {sysctls: [`+
		`{name: net.ipv4.tcp_keepalive_time, value: "%d"}, {name: net.ipv4.tcp_keepalive_intvl, value: "%d"}, {name: net.ipv4.tcp_keepalive_probes, value: "%d"}]}; `+
		`until the pod is recreated: tcpkeep%s sysctl set --time %d --intvl %d --probes %d`, w.PodUID, t, i, k.Probes, ns, t, i, k.Probes)
}

// between names a connection: "10.0.0.1:5000 to 10.0.0.2:80".
func between(s *diag.Socket) string {
	b := appendLocal(make([]byte, 0, 64), s)
	b = append(b, " to "...)
	return string(appendRemote(b, s))
}

// holder says who holds the socket: " (held by nginx, pid 812)".
func holder(b *strings.Builder, f *audit.Finding) {
	switch f.Holder {
	case audit.HolderProcess:
		fmt.Fprintf(b, " (held by %s, pid %d)", Printable(f.Owner.Comm), f.Owner.PID)
	case audit.HolderOrphan:
		b.WriteString(" (orphaned: the application closed it, the kernel finishes it alone)")
	case audit.HolderAcceptQueue:
		b.WriteString(" (not accepted yet: it waits in its listener's accept queue)")
	case audit.HolderNotFound:
		b.WriteString(" (owner not found: the process may be gone or in another pid namespace)")
	}
}

// noKeepaliveFits is the remedy for a path shorter than any whole-second
// keepalive cadence plus its margin.
const noKeepaliveFits = "no keepalive setting fits a path this short: use an application heartbeat (tcpkeep probe ADDR --interval D)"

// cadenceSource says where keepalive's cadence came from.
func cadenceSource(f *audit.Finding) string {
	k := f.Keepalive
	switch f.ValueFrom {
	case audit.SourceSocket:
		return "the larger of the socket's TCP_KEEPIDLE " + Duration(k.Time) + " and TCP_KEEPINTVL " + Duration(k.Intvl)
	case audit.SourceTimer:
		return "from its keepalive timer: the next probe comes that long after the last packet received"
	}
	return "the larger of tcp_keepalive_time " + Duration(k.Time) + " and tcp_keepalive_intvl " + Duration(k.Intvl)
}

// pathName names where a path timeout came from.
func pathName(s audit.Source) string {
	if s == audit.SourceConntrack {
		return "local conntrack (nf_conntrack_tcp_timeout_established)"
	}
	return "the path (--path-idle-timeout)"
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
