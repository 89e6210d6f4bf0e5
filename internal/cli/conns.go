package cli

import (
	"fmt"
	"os"

	"github.com/tcpkeep/tcpkeep/internal/proc"
	"github.com/tcpkeep/tcpkeep/internal/report"
	"github.com/tcpkeep/tcpkeep/internal/sweep"
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
	job := &sweep.Conns{Format: e.format(), Filter: filter, Table: report.TableOptions{Processes: *procs, SockOpts: *sockopts},
		Total: &report.Total{Command: "conns"}}
	if *procs || *sockopts {
		if os.Geteuid() != 0 {
			fmt.Fprintln(e.stderr, "tcpkeep: note: not root: only sockets of your own processes get a process")
		}
		job.Owners = proc.NewIndex("/proc", *sockopts)
		defer job.Owners.Close()
	}
	err = e.each(job.Total, job.Run)
	if oerr := job.Owners.Err(); oerr != nil {
		fmt.Fprintf(e.stderr, "tcpkeep: note: %s; sockets whose owner or options could not be read are shown without them\n", explain(oerr))
	}
	return err
}
