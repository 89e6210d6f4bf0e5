package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tcpkeep/tcpkeep/diag"
	"github.com/tcpkeep/tcpkeep/internal/audit"
	"github.com/tcpkeep/tcpkeep/internal/kill"
	"github.com/tcpkeep/tcpkeep/internal/report"
	"github.com/tcpkeep/tcpkeep/sysctl"
)

const killUsage = `
Usage: tcpkeep kill [filters] [--finding CODE,...] [thresholds] [--max-per-peer N]
                    [--dry-run] [-p] [-o table|json|ndjson] [--netns NS]

Closes TCP connections you can name a reason for, and says what became of each.
Every socket is closed with SOCK_DESTROY and the exact identity the kernel
reported in the dump, cookie included: if a connection closes and a new one
takes its addresses and ports before tcpkeep gets to it, the new one is not
touched (it is reported as gone). The owner of a closed socket gets
ECONNABORTED on its next read or write; its peer gets a RST.

What to close (at least one is required: tcpkeep never closes everything by
default):
  filters            every socket the filters select (reason "filter"); preview
                     them with 'tcpkeep conns' and the same filters
  --finding CODE,..  only sockets an audit rule flags with one of these codes,
                     judged with the same thresholds as 'tcpkeep audit':
                     half_open_keepalive, half_open_retrans, zero_window_stall,
                     idle_no_keepalive (--max-idle), idle_overlong (needs
                     --idle-limit), keepalive_after_path_timeout
                     (--path-idle-timeout), close_wait_stale (--close-wait-after),
                     listen_queue_full (needs --state listening),
                     peer_limit_exceeded (needs --max-per-peer);
                     filters then narrow where the rules look
  --max-per-peer N   for each remote address and local port holding more than N
                     connections, close the idlest beyond N (reason
                     peer_limit_exceeded); filters narrow what is counted

Safety:
  - LISTEN sockets are never closed unless --state names them (listening or
    LISTEN); --state all does not.
  - Without --state, the states are what conns shows: connected sockets but
    TIME_WAIT and SYN_RECV.
  - --dry-run selects and reports (result would_close) and closes nothing.
  - A kernel without CONFIG_INET_DIAG_DESTROY, or a caller without CAP_NET_ADMIN,
    stops the run at the first socket with one error.

Output: one "action" record per selected socket: the socket record, reason
(the finding code or "filter"), message (a finding's), result (closed, gone,
unsupported, denied, error; would_close in a dry run) and error (with -p the
socket record has the owner's pid and comm, the table a PROCESS column); then a
"summary" record: sockets (checked), selected, closed, gone, failed, dry_run,
stopped, duration_ms. -o json writes one document {"actions":[...],"summary":{...}}.

Exit codes: 0 every selected socket is closed or gone (or none was selected,
which the output says); 1 some could not be closed, or an error; 2 usage error.

Examples:
  tcpkeep kill --finding half_open_keepalive,half_open_retrans --dry-run -p
  tcpkeep kill --finding half_open_keepalive,half_open_retrans
  tcpkeep kill --finding idle_overlong --idle-limit 1h --sport 5432
  tcpkeep kill --max-per-peer 200 --sport 443 -o ndjson
  tcpkeep kill --state close-wait --dport 8080
  tcpkeep --netns web kill --dst 10.1.2.3 --dry-run
  tcpkeep kill --state listening --sport 9999     a listener too: named explicitly
`

// killFlags are kill's own flags.
type killFlags struct {
	thresholdFlags // shared with audit: thresholds.go
	findings       findingFlag
	dryRun         bool
}

func runKill(e *env, args []string) error {
	fs := newFlags(e, "kill", killUsage+"\n"+filterHelp)
	f := killFlags{thresholdFlags: newThresholdFlags()}
	var filt filterFlags
	addFilterFlags(fs, &filt)
	fs.Lookup("state").Usage = "states or groups to close, comma-separated (default: connected but time-wait and syn-recv; listeners only when named)"
	fs.Var(&f.findings, "finding", "close sockets flagged with these finding codes, comma-separated (see above)")
	addThresholdFlags(fs, &f.thresholdFlags)
	fs.Lookup("max-per-peer").Usage = "close, for each remote address and local port, the idlest connections beyond N (peer_limit_exceeded)"
	fs.BoolVar(&f.dryRun, "dry-run", false, "report what would be closed and why; close nothing")
	procs := fs.BoolP("processes", "p", false, "record the process holding each selected socket (pid, comm): one scan of /proc, an index as large as the host's sockets")
	if err := parseCommand(e, fs, args, "table", "json", "ndjson"); err != nil {
		return err
	}
	if err := f.check(fs); err != nil {
		return err
	}
	filter, err := filt.filter(defaultStates)
	if err != nil {
		return err
	}
	// A filter selects only if it narrows: --ipv4=false, -4 -6 or --sport 0-65535
	// are given but select everything, and everything is never the default.
	filterGiven := fs.Changed("state") || filter.Family != 0 || !filter.SPort.Any() || !filter.DPort.Any() ||
		filter.Src.IsValid() || filter.Dst.IsValid()
	perPeer := f.perPeer.set
	if !filterGiven && len(f.findings.codes) == 0 && !perPeer {
		return usagef("kill: say what to close: filters that narrow (--state, --sport, --dport, --src, --dst, -4, -6), --finding CODE or --max-per-peer N; tcpkeep never closes everything by default (see -h)")
	}
	listeners := filt.namesListening()
	for _, c := range f.findings.codes {
		switch {
		case c == audit.PeerLimitExceeded && !perPeer:
			return usagef("--finding peer_limit_exceeded needs --max-per-peer N: the limit it enforces")
		case c == audit.IdleOverlong && f.idleLimit <= 0:
			return usagef("--finding idle_overlong needs --idle-limit D: how long a connection may stay idle, as 1h")
		case c == audit.ListenQueueFull && !listeners:
			return usagef("--finding listen_queue_full closes listeners: add --state listening to say so")
		}
	}
	if !listeners {
		filter.States &^= diag.Of(diag.StateListen)
	}
	cfg := kill.Config{
		Filter:     filter,
		All:        len(f.findings.codes) == 0 && !perPeer,
		Findings:   f.findings.codes,
		MaxPerPeer: f.perPeer.n,
		Listeners:  listeners,
		DryRun:     f.dryRun,
	}

	start := time.Now()
	ns, err := e.ns()
	if err != nil {
		return err
	}
	if len(cfg.Findings) > 0 {
		t, err := sysctl.Read(ns)
		if err != nil {
			return fmt.Errorf("netns %s: %w", ns, err)
		}
		cfg.Audit = f.config(t)
	}
	owners := &ownerIndex{}
	if *procs {
		cfg.Owner = owners.owner
	}
	// Two netlink sockets: one streams the dump while the other destroys.
	dump, err := dialDiag(ns)
	if err != nil {
		return err
	}
	defer dump.Close()
	destroy, err := dialDiag(ns)
	if err != nil {
		return err
	}
	defer destroy.Close()

	w := newKillWriter(e, e.meta(ns), ns.String(), f.dryRun, *procs)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	sum, runErr := kill.Run(ctx, cfg, dump, destroy, w.action)
	w.stopped = errors.Is(runErr, kill.ErrStopped)
	if err := w.finish(&sum, time.Since(start)); err != nil && runErr == nil {
		runErr = err
	}
	if owners.err != nil {
		fmt.Fprintf(e.stderr, "tcpkeep: warning: %v\n", owners.err)
	}
	switch {
	case errors.Is(runErr, kill.ErrStopped):
		what := "run as root, or give tcpkeep CAP_NET_ADMIN"
		if errors.Is(runErr, diag.ErrDestroyUnsupported) {
			what = "this kernel cannot close sockets from outside: it needs CONFIG_INET_DIAG_DESTROY=y"
		}
		return fmt.Errorf("kill: %v; nothing else was tried (%s)", strings.TrimPrefix(runErr.Error(), kill.ErrStopped.Error()+": "), what)
	case runErr != nil:
		return runErr
	case sum.Failed > 0:
		return fmt.Errorf("kill: %d of %d selected sockets could not be closed (their records say why)", sum.Failed, sum.Selected)
	}
	return nil
}

// namesListening says whether --state names LISTEN itself (listening, listen,
// LISTEN): a group such as all does not, so listeners stay out of kill.
func (f *filterFlags) namesListening() bool {
	if !f.states.set {
		return false
	}
	for _, s := range strings.Split(f.states.v, ",") {
		switch strings.ToLower(strings.TrimSpace(s)) {
		case "listening", "listen":
			return true
		}
	}
	return false
}

// findingFlag is --finding: finding codes of socket rules, comma-separated,
// repeatable.
type findingFlag struct {
	codes []audit.Code
	v     []string
}

func (f *findingFlag) String() string { return strings.Join(f.v, ",") }
func (f *findingFlag) Type() string   { return "codes" }
func (f *findingFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		c := audit.Code(strings.TrimSpace(s))
		known := false
		for _, k := range audit.Codes {
			known = known || k == c
		}
		switch {
		case !known:
			var names []string
			for _, k := range audit.Codes {
				if !k.Tunable() {
					names = append(names, string(k))
				}
			}
			return fmt.Errorf("unknown finding code %q (codes of socket findings: %s)", c, strings.Join(names, ", "))
		case c.Tunable():
			return fmt.Errorf("%s is about the namespace's keepalive tunables, not a socket: there is nothing to close (fix it with tcpkeep sysctl recommend --apply)", c)
		}
		dup := false
		for _, k := range f.codes {
			dup = dup || k == c
		}
		if !dup {
			f.codes = append(f.codes, c)
		}
	}
	f.v = append(f.v, v)
	return nil
}

// killWriter writes action records as they come and the summary last.
type killWriter struct {
	e      *env
	meta   report.Meta
	ns     string
	dryRun bool
	procs  bool // -p: the PROCESS column
	// stopped: the run stopped at a refusal that holds for every socket.
	stopped bool
	out     *bufio.Writer
	buf     []byte
	n       int
	x       report.SocketExtra
}

func newKillWriter(e *env, m report.Meta, ns string, dryRun, procs bool) *killWriter {
	w := &killWriter{e: e, meta: m, ns: ns, dryRun: dryRun, procs: procs, out: bufio.NewWriterSize(e.stdout, 64<<10)}
	switch e.output {
	case "json":
		w.buf = append(w.buf[:0], '{')
		w.buf = report.AppendHeader(w.buf, "kill", m)
		w.buf = append(w.buf, `,"dry_run":`...)
		w.buf = strconv.AppendBool(w.buf, dryRun)
		w.buf = append(w.buf, `,"actions":[`...)
		w.out.Write(w.buf)
	}
	return w
}

// killRow is the table's columns but the last ones, IDLE and PROCESS (-p),
// which are written so that no line ends in spaces.
const killRow = "%-11s  %-28s  %-11s  %-21s  %-21s  "

// action writes one action: a line of the table, or a record.
func (w *killWriter) action(a *kill.Action) {
	w.x = report.SocketExtra{}
	if a.Owner != nil {
		w.x.HasOwner, w.x.PID, w.x.Comm = true, a.Owner.PID, a.Owner.Comm
	}
	switch w.e.output {
	case "table":
		if w.n == 0 {
			// The header comes with the first row: with nothing selected the
			// table is one line saying so.
			fmt.Fprintf(w.out, killRow, "RESULT", "REASON", "STATE", "LOCAL", "REMOTE")
			w.lastCols("IDLE", "PROCESS")
			w.out.WriteString("\n")
		}
		s := a.Socket
		fmt.Fprintf(w.out, killRow, a.Result, a.Reason, s.State, s.Local, s.Remote)
		proc := "-"
		if a.Owner != nil {
			proc = strconv.Itoa(a.Owner.PID) + "/" + printable(a.Owner.Comm)
		}
		w.lastCols(idleText(s), proc)
		w.out.WriteString("\n")
		if a.Err != nil {
			fmt.Fprintf(w.out, "  error: %s\n", oneLine(a.Err.Error()))
		}
		if w.dryRun && a.Message != "" {
			fmt.Fprintf(w.out, "  why: %s\n", a.Message)
		}
	case "ndjson", "json":
		w.buf = appendStreamed(w.buf[:0], w.e.output, "action", w.meta, w.n, func(dst []byte) []byte {
			return w.appendActionFields(dst, a)
		})
		w.out.Write(w.buf)
	}
	w.n++
}

// lastCols writes the IDLE cell, and the PROCESS cell with -p.
func (w *killWriter) lastCols(idle, proc string) {
	if w.procs {
		fmt.Fprintf(w.out, "%-7s  %s", idle, proc)
		return
	}
	w.out.WriteString(idle)
}

// appendActionFields appends socket, reason, message, result and error.
func (w *killWriter) appendActionFields(dst []byte, a *kill.Action) []byte {
	dst = append(dst, `"socket":`...)
	dst = report.AppendSocket(dst, a.Socket, &w.x)
	// Reasons and results are identifiers ([a-z_]): no escaping, no allocation.
	dst = append(dst, `,"reason":"`...)
	dst = append(dst, a.Reason...)
	dst = append(dst, '"')
	if a.Message != "" {
		dst = append(dst, `,"message":`...)
		dst = appendJSONString(dst, a.Message)
	}
	dst = append(dst, `,"result":"`...)
	dst = append(dst, a.Result.String()...)
	dst = append(dst, '"')
	if a.Err != nil {
		dst = append(dst, `,"error":`...)
		dst = appendJSONString(dst, oneLine(a.Err.Error()))
	}
	return dst
}

func (w *killWriter) appendSummaryFields(dst []byte, s *kill.Summary, d time.Duration) []byte {
	for i, kv := range []struct {
		k string
		v int
	}{{"sockets", s.Sockets}, {"selected", s.Selected}, {"closed", s.Closed}, {"gone", s.Gone}, {"failed", s.Failed}} {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, '"')
		dst = append(dst, kv.k...)
		dst = append(dst, `":`...)
		dst = strconv.AppendInt(dst, int64(kv.v), 10)
	}
	dst = append(dst, `,"dry_run":`...)
	dst = strconv.AppendBool(dst, w.dryRun)
	dst = append(dst, `,"stopped":`...)
	dst = strconv.AppendBool(dst, w.stopped)
	dst = append(dst, `,"duration_ms":`...)
	return strconv.AppendInt(dst, d.Milliseconds(), 10)
}

// finish writes the summary and flushes.
func (w *killWriter) finish(s *kill.Summary, d time.Duration) error {
	switch w.e.output {
	case "ndjson":
		w.buf = append(w.buf[:0], '{')
		w.buf = report.AppendHeader(w.buf, "summary", w.meta)
		w.buf = append(w.buf, ',')
		w.buf = w.appendSummaryFields(w.buf, s, d)
		w.buf = append(w.buf, '}', '\n')
		w.out.Write(w.buf)
	case "json":
		w.buf = w.buf[:0]
		if w.n > 0 {
			w.buf = append(w.buf, '\n')
		}
		w.buf = append(w.buf, "],\n\"summary\":{"...)
		w.buf = w.appendSummaryFields(w.buf, s, d)
		w.buf = append(w.buf, "}}\n"...)
		w.out.Write(w.buf)
	case "table":
		took := human(d.Round(time.Millisecond))
		checked := count(s.Sockets, "socket")
		switch {
		case w.stopped:
			fmt.Fprintf(w.out, "\nnetns %s: stopped at the first socket the kernel refused to close: %d selected, %d closed, %d failed (took %s).\n", w.ns, s.Selected, s.Closed, s.Failed, took)
		case s.Selected == 0:
			fmt.Fprintf(w.out, "Nothing to close: none of the %s in netns %s was selected (took %s).\n", checked, w.ns, took)
		case w.dryRun:
			fmt.Fprintf(w.out, "\nDry run: %d of %s in netns %s would be closed; nothing was (took %s).\n", s.Selected, checked, w.ns, took)
		default:
			fmt.Fprintf(w.out, "\nnetns %s: %d of %s selected: %d closed, %d gone, %d failed (took %s).\n", w.ns, s.Selected, checked, s.Closed, s.Gone, s.Failed, took)
		}
	}
	if err := w.out.Flush(); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// idleText is the IDLE column: 450ms, 1.5s, 42s, 4m12s; - without tcp_info.
func idleText(s *diag.Socket) string {
	if s.Info.Len == 0 {
		return "-"
	}
	d := s.Idle()
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < 10*time.Second:
		return d.Round(100 * time.Millisecond).String()
	}
	return human(d.Round(time.Second))
}

// printable is s for a terminal: control bytes become '?'.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}
