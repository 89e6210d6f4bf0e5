// Package cli is tcpkeep's command line: a dispatch table of subcommands, one
// pflag FlagSet each, the global flags, exit codes and error lines. Commands are
// flags, validation and wiring: the engines (internal/audit, internal/kill,
// sysctl, probe) do the work, internal/report writes what they return.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/tcpkeep/tcpkeep/internal/kernel"
	"github.com/tcpkeep/tcpkeep/internal/netns"
	"github.com/tcpkeep/tcpkeep/internal/report"
	"github.com/tcpkeep/tcpkeep/internal/sweep"
)

// Exit codes. audit maps its own (the monitoring-plugin convention) and probe
// ADDR keeps 2 for a dead peer; every command exits 130 when a signal
// interrupted it, whatever it wrote: 128 + SIGINT, what a shell reports for a
// process SIGINT ended, and a code no command uses for anything else (1 is a
// warning for audit, 2 a dead peer for probe).
const (
	exitOK          = 0
	exitError       = 1
	exitUsage       = 2
	exitInterrupted = 130
)

// env is what every command runs with. The namespace is a value here, passed
// down to the engines, never process state.
type env struct {
	ctx            context.Context // ends on SIGINT or SIGTERM
	stdout, stderr io.Writer
	output         string // -o
	netnsSpec      string // --netns as given
	allNetns       bool   // --all-netns
	now            func() time.Time
	args           []string // the command line, for the files tcpkeep writes
	// kernel opens a namespace: kernel.Live, or a kernel.Fake in tests.
	kernel func(netns.NS) kernel.NS
	// tweak, when set, adjusts an --all-netns run before it starts (tests).
	tweak func(*sweep.Config, *netns.Found)
}

// Main runs tcpkeep with args (without the program name) and returns the exit
// code. Its signal handling is in place before anything is written: a SIGINT or
// SIGTERM ends the command's context, the command writes whole records and a
// summary that says it was interrupted, and exits 130. A second signal kills.
func Main(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	context.AfterFunc(ctx, stop)
	e := &env{ctx: ctx, stdout: stdout, stderr: stderr, output: "table", now: time.Now, args: args, kernel: kernel.Live}
	return run(e, args)
}

func run(e *env, args []string) int {
	fs := newFlags(e, "tcpkeep", "")
	fs.SetInterspersed(false) // flags after COMMAND belong to the command
	fs.Usage = func() { printMainUsage(e.stdout) }
	if err := parse(e, fs, args); err != nil {
		return fail(e, err)
	}
	rest := fs.Args()
	if len(rest) == 0 {
		return fail(e, usagef("no command given (try: tcpkeep sysctl, or tcpkeep --help)"))
	}
	if c := lookup(rest[0]); c != nil {
		return fail(e, c.run(e, rest[1:]))
	}
	return fail(e, unknownCommand(rest[0]))
}

// usageError is an error in what the operator typed: exit 2 (3 for audit, 1
// for probe ADDR).
type usageError struct{ msg string }

func (u *usageError) Error() string { return u.msg }

func usagef(format string, a ...any) error { return &usageError{fmt.Sprintf(format, a...)} }

// errHelp ends a command that printed its help on request: exit 0.
var errHelp = errors.New("help requested")

// errInterrupted ends a command a signal stopped, once it has written what it
// had: exit 130.
var errInterrupted = sweep.ErrInterrupted

// exitCodeError carries a command's own exit code, with an optional message.
type exitCodeError struct {
	code int
	err  error
}

func (x *exitCodeError) Error() string {
	if x.err == nil {
		return fmt.Sprintf("exit %d", x.code)
	}
	return x.err.Error()
}

func (x *exitCodeError) Unwrap() error { return x.err }

// fail turns an error into the one stderr line and the exit code.
func fail(e *env, err error) int {
	var ee *exitCodeError
	var ue *usageError
	code := exitError
	switch {
	case err == nil, errors.Is(err, errHelp):
		return exitOK
	case errors.As(err, &ee):
		code, err = ee.code, ee.err
	case errors.Is(err, errInterrupted):
		code = exitInterrupted
	case errors.As(err, &ue):
		code = exitUsage
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "tcpkeep: %s\n", strings.ReplaceAll(strings.TrimSpace(explain(err)), "\n", "; "))
	}
	return code
}

// open resolves --netns and opens the namespace. A spelling that can name no
// namespace is a usage error; one that does not exist is a runtime one.
func (e *env) open() (netns.NS, kernel.NS, error) {
	ns, err := netns.Resolve(e.netnsSpec)
	if errors.Is(err, netns.ErrSpelling) {
		return ns, nil, &usageError{"--netns " + err.Error()}
	}
	if err != nil {
		return ns, nil, inNS(netns.NS{Spec: e.netnsSpec}, err)
	}
	return ns, e.kernel(ns), nil
}

// meta is what every record carries besides its own fields.
func (e *env) meta(ns string) report.Meta {
	host, _ := os.Hostname()
	return report.Meta{TS: e.now().UTC(), Host: host, NetNS: ns}
}

// each runs job in the namespace --netns names or, with --all-netns, in every
// one on the host (sweep.All: a failure in one is a record and a line on
// stderr, and the rest are read); total adds up what the jobs saw.
func (e *env) each(total *report.Total, job sweep.Job) error {
	if !e.allNetns {
		ns, k, err := e.open()
		if err != nil {
			return err
		}
		return inNS(ns, sweep.One(e.ctx, ns, k, e.meta(""), e.stdout, e.netnsSpec, job))
	}
	found, err := netns.Enumerate()
	if err != nil {
		return err
	}
	cfg := &sweep.Config{Format: e.format(), Meta: e.meta(""), Explain: explain, Total: total}
	if e.tweak != nil {
		e.tweak(cfg, found)
	}
	o, err := sweep.All(e.ctx, e.stdout, cfg, found, job)
	if err != nil {
		return err
	}
	return e.tell(o, total)
}

// format is -o as report names it.
func (e *env) format() report.Format { return report.Format(e.output) }
