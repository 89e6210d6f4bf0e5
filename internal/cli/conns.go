package cli

import (
	"fmt"
	"os"
	"time"

	"github.com/tcpkeep/tcpkeep/internal/proc"
	"github.com/tcpkeep/tcpkeep/internal/report"
)

func runConns(e *env, args []string) error {
	fs := newFlags(e, "conns", helpText("conns"))
	var ff filterFlags
	addFilterFlags(fs, &ff, "states or groups to show, comma-separated (default: ss's, connected but time-wait and syn-recv)")
	procs := fs.BoolP("processes", "p", false, "show the process holding each socket (pid, comm): one scan of /proc")
	sockopts := fs.Bool("sockopts", false, "read each owned socket's real keepalive options (SO_KEEPALIVE, TCP_KEEPIDLE/INTVL/CNT, TCP_USER_TIMEOUT)")
	if err := parseCommand(e, fs, args, "table", "json", "ndjson"); err != nil {
		return err
	}
	filter, err := ff.filter(defaultStates)
	if err != nil {
		return err
	}
	ns, k, err := e.open()
	if err != nil {
		return err
	}
	start := time.Now()
	c, err := k.Dial()
	if err != nil {
		return inNS(ns, err)
	}
	defer c.Close()
	var owners *proc.Index
	if *procs || *sockopts {
		if os.Geteuid() != 0 {
			fmt.Fprintln(e.stderr, "tcpkeep: note: not root: only sockets of your own processes get a process")
		}
		owners = proc.NewIndex("/proc", *sockopts)
		defer owners.Close()
	}
	sw, err := report.NewSocketWriter(e.stdout, e.format(), e.meta(ns.String()), report.TableOptions{Processes: *procs, SockOpts: *sockopts})
	if err != nil {
		return err
	}
	var (
		sum   report.ConnsSummary
		owner proc.Owner
		opts  proc.SockOpts
	)
	for s, err := range c.Sockets(e.ctx, filter) {
		if err != nil {
			if sum.Interrupted = e.ctx.Err() != nil; !sum.Interrupted {
				return inNS(ns, err)
			}
			break
		}
		sum.Counts.Add(s)
		var po *proc.Owner
		var op *proc.SockOpts
		if o, ok := owners.Owner(s.Inode); ok && *procs {
			owner, po = o, &owner
		}
		if owners.Options(s.Inode, &opts) {
			op = &opts
		}
		if err := sw.Socket(s, po, op); err != nil {
			return err
		}
	}
	sum.Duration = time.Since(start)
	if err := sw.Finish(&sum); err != nil {
		return err
	}
	if err := owners.Err(); err != nil {
		fmt.Fprintf(e.stderr, "tcpkeep: note: %s; sockets whose owner or options could not be read are shown without them\n", explain(err))
	}
	if sum.Interrupted {
		return errInterrupted
	}
	return nil
}
