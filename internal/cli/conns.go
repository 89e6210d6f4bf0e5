package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tcpkeep/tcpkeep/internal/proc"
	"github.com/tcpkeep/tcpkeep/internal/report"
)

const connsUsage = `
Usage:
  tcpkeep conns [filters] [-p|--processes] [--sockopts] [-o table|json|ndjson] [--netns NS]

Lists the TCP sockets of a network namespace straight from the kernel (sock_diag),
like 'ss -tino', and says what ss leaves you to work out: how long a connection
has been idle, whether keepalive is armed on it, and when its next probe comes.

Without --state, conns shows what ss shows: every connected state except
TIME_WAIT and SYN_RECV. Listeners need --state listening (or --state all).

Table columns:
  IDLE            time since data last went either way (the lesser of tcp_info's
                  last data sent and last data received)
  TIMER           the pending timer and when it fires: keepalive, retransmit,
                  persist (zero-window probe), timewait, delack, fin_wait2, off
  KEEPALIVE       yes or no where the timer tells (an idle ESTABLISHED socket has
                  the keepalive timer if and only if SO_KEEPALIVE is on); ? where
                  it cannot (a retransmit or persist timer pending, other states).
                  With --sockopts, the owner's real SO_KEEPALIVE
  NEXT-PROBE      when the next keepalive (or zero-window) probe goes out, and
                  which probe it is once earlier ones went unanswered
  RETRANS/PROBES  tcp_info's consecutive retransmissions / unanswered probes
  RECV-Q/SEND-Q   bytes queued; for listeners, accept queue length / backlog
  PROCESS         with -p: pid/command of the process holding the socket

-o ndjson writes one "socket" record per line and a "summary" line last; -o json
writes one document, {"sockets":[...],"summary":{...}}. README lists every key.

-p scans /proc/*/fd once to map sockets to processes (it sees every process
only as root). --sockopts also reads each owned socket's real SO_KEEPALIVE,
TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT and TCP_USER_TIMEOUT from a duplicate
of the owner's descriptor (pidfd_getfd: Linux 5.6, root or ptrace rights); no
other tool shows these, sock_diag cannot. Where it is not permitted, conns says
so once on stderr and leaves those fields out.

` + filterHelp + `
Examples:
  tcpkeep conns                                  connected sockets, like ss -tino
  tcpkeep conns --state established --dport 5432 -p
                                                 connections to PostgreSQL, with processes
  tcpkeep conns --state close-wait -p            the application never closed these
  tcpkeep conns --sockopts --src 10.0.0.0/8      with each socket's real keepalive options
  tcpkeep --netns web conns -o ndjson            a container's sockets, for a log pipeline
  tcpkeep conns --state listening                listeners and their accept queues
`

func runConns(e *env, args []string) error {
	fs := newFlags(e, "conns", connsUsage)
	var ff filterFlags
	addFilterFlags(fs, &ff)
	procs := fs.BoolP("processes", "p", false, "show the process holding each socket (pid, comm): one scan of /proc")
	sockopts := fs.Bool("sockopts", false, "read each owned socket's real keepalive options (SO_KEEPALIVE, TCP_KEEPIDLE/INTVL/CNT, TCP_USER_TIMEOUT)")
	if err := parseCommand(e, fs, args, "table", "json", "ndjson"); err != nil {
		return err
	}
	filter, err := ff.filter(defaultStates)
	if err != nil {
		return err
	}
	ns, err := e.ns()
	if err != nil {
		return err
	}
	c, err := dialDiag(ns)
	if err != nil {
		return err
	}
	defer c.Close()

	start := time.Now()
	var owners *proc.Owners
	if *procs || *sockopts {
		if os.Geteuid() != 0 {
			fmt.Fprintln(e.stderr, "tcpkeep: note: not root: only sockets of your own processes get a process")
		}
		if owners, err = proc.ScanOwners("/proc"); err != nil {
			return err
		}
	}
	var optr *proc.OptReader
	if *sockopts {
		optr = proc.NewOptReader()
		defer optr.Close()
	}

	sw, err := report.NewSocketWriter(e.stdout, e.output, e.meta(ns), report.TableOptions{Processes: *procs, SockOpts: *sockopts})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var (
		sum    report.Summary
		x      report.SocketExtra
		optErr error // the first reason options could not be read, said once
	)
	for s, err := range c.Sockets(ctx, filter) {
		if err != nil {
			return err
		}
		x = report.SocketExtra{}
		if o, ok := owners.Lookup(s.Inode); ok {
			x.HasOwner, x.PID, x.Comm = *procs, o.PID, owners.Comm(o.PID)
			if optr != nil {
				switch err := optr.Read(o, s.Inode, &x.Opts); {
				case err == nil:
					x.HasOpts = true
				case errors.Is(err, proc.ErrGone):
				case optErr == nil:
					optErr = err
				}
			}
		}
		sum.Add(s)
		if err := sw.Socket(s, &x); err != nil {
			return err
		}
	}
	sum.Duration = time.Since(start)
	if err := sw.Finish(&sum); err != nil {
		return err
	}
	if optErr != nil {
		fmt.Fprintf(e.stderr, "tcpkeep: note: --sockopts: %v; those sockets are shown without their options\n", oneLine(optErr.Error()))
	}
	return nil
}
