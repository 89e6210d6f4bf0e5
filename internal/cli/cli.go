// Package cli is tcpkeep's command line: a dispatch table of subcommands, one
// pflag FlagSet each, the global flags, exit codes and error lines.
package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/tcpkeep/tcpkeep/diag"
	"github.com/tcpkeep/tcpkeep/internal/netns"
	"github.com/tcpkeep/tcpkeep/internal/report"
)

// Exit codes (DESIGN.md). audit maps its own: see the audit command.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// env is what every command runs with. The namespace is a value here, passed down
// to the libraries, never process state.
type env struct {
	stdout, stderr io.Writer
	output         string // -o: table, json, ndjson, prom
	netnsSpec      string // --netns as given
	now            func() time.Time
	// isHost tells whether a namespace is the host's (where sysctl.d applies);
	// tests stand in for it to persist from a throwaway namespace.
	isHost func(netns.NS) (bool, error)
}

// ns resolves --netns. A spelling that can name no namespace is a usage error; a
// namespace that does not exist (or cannot be opened) is a runtime one.
func (e *env) ns() (netns.NS, error) {
	ns, err := netns.Resolve(e.netnsSpec)
	if errors.Is(err, netns.ErrSpelling) {
		return ns, &usageError{err.Error()}
	}
	return ns, err
}

// dialDiag opens a sock_diag connection in ns. In the namespace tcpkeep runs in
// it enters none, so CAP_NET_ADMIN is enough (setns needs CAP_SYS_ADMIN).
func dialDiag(ns netns.NS) (*diag.Conn, error) {
	if ns.Spec == "" {
		return diag.Dial(&diag.Config{Name: ns.String()})
	}
	f, err := ns.Open()
	if err != nil {
		return nil, err
	}
	defer f.Close() // the socket is made in the namespace at Dial: the file is not needed after
	return diag.Dial(&diag.Config{NetNS: int(f.Fd()), Name: ns.String()})
}

// meta is what every record carries besides its own fields.
func (e *env) meta(ns netns.NS) report.Meta {
	host, _ := os.Hostname()
	return report.Meta{TS: e.now().UTC(), Host: host, NetNS: ns.String()}
}

// command is one entry of the dispatch table.
type command struct {
	name    string
	summary string
	run     func(e *env, args []string) error
}

// commands is the dispatch table, in the order help lists them.
var commands []command

func init() {
	commands = []command{
		{"sysctl", "show, set or recommend the keepalive tunables", runSysctl},
		{"conns", "list TCP sockets: state, timers, idle time, keepalive, next probe", runConns},
		{"audit", "find half-open, idle, leaking and unprotected connections", runAudit},
		{"kill", "close flagged or selected connections, exactly (SOCK_DESTROY by cookie)", runKill},
		{"probe", "heartbeat a peer, serve heartbeats, or measure a path's idle timeout", runProbe},
		{"version", "print version, commit and Go version", runVersion},
		{"help", "show help for a command", runHelp},
	}
}

// usageError is an error in what the operator typed: exit 2 (3 for audit).
type usageError struct{ msg string }

func (u *usageError) Error() string { return u.msg }

func usagef(format string, a ...any) error { return &usageError{fmt.Sprintf(format, a...)} }

// errHelp ends a command that printed its help on request: exit 0.
var errHelp = errors.New("help requested")

// Main runs tcpkeep with args (without the program name) and returns the exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	e := &env{stdout: stdout, stderr: stderr, output: "table", now: time.Now, isHost: netns.NS.IsHost}
	return run(e, args)
}

func run(e *env, args []string) int {
	fs := pflag.NewFlagSet("tcpkeep", pflag.ContinueOnError)
	fs.SetInterspersed(false) // flags after COMMAND belong to the command
	fs.SetOutput(io.Discard)
	addGlobal(fs, e)
	fs.Usage = func() { printMainUsage(e.stdout) }
	if err := parseFlags(fs, args); err != nil {
		return fail(e, "", err)
	}
	rest := fs.Args()
	if len(rest) == 0 {
		return fail(e, "", usagef("no command given (try: tcpkeep sysctl, or tcpkeep --help)"))
	}
	for _, c := range commands {
		if c.name == rest[0] {
			return fail(e, c.name, c.run(e, rest[1:]))
		}
	}
	return fail(e, "", usagef("unknown command %q (commands: %s; see tcpkeep --help)", rest[0], commandNames()))
}

// fail turns an error into the one stderr line and the exit code.
func fail(e *env, cmd string, err error) int {
	if err == nil || errors.Is(err, errHelp) {
		return exitOK
	}
	var ee *exitCodeError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintf(e.stderr, "tcpkeep: %s\n", oneLine(ee.err.Error()))
		}
		return ee.code
	}
	fmt.Fprintf(e.stderr, "tcpkeep: %s\n", oneLine(err.Error()))
	var ue *usageError
	if errors.As(err, &ue) {
		return exitUsage
	}
	return exitError
}

// exitCodeError carries a command's own exit code (audit's monitoring-plugin codes),
// with an optional message.
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

func oneLine(s string) string { return strings.ReplaceAll(strings.TrimSpace(s), "\n", "; ") }

func commandNames() string {
	var n []string
	for _, c := range commands {
		n = append(n, c.name)
	}
	return strings.Join(n, ", ")
}

// addGlobal adds the flags every command takes, so they work before or after it.
func addGlobal(fs *pflag.FlagSet, e *env) {
	if fs.Lookup("output") == nil {
		fs.StringVarP(&e.output, "output", "o", e.output, "output format: table, json or ndjson (some commands also prom)")
	}
	fs.StringVar(&e.netnsSpec, "netns", e.netnsSpec, "network namespace: a name under /run/netns, a path (/proc/PID/ns/net) or pid:PID")
	fs.BoolP("help", "h", false, "show this help")
}

// parseFlags parses args, prints the usage for -h, and turns parse errors into
// usage errors.
func parseFlags(fs *pflag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return usagef("%v (see -h)", err)
	}
	if h, _ := fs.GetBool("help"); h {
		fs.Usage()
		return errHelp
	}
	return nil
}

// newFlags makes a command's FlagSet; usage is printed for -h.
func newFlags(e *env, name, usage string) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.SortFlags = false
	fs.Usage = func() {
		fmt.Fprint(e.stdout, strings.TrimLeft(usage, "\n"))
		fmt.Fprintf(e.stdout, "\nFlags:\n%s", fs.FlagUsages())
	}
	return fs
}

// parse parses a command's flags after adding the global ones; with -h it prints
// the usage and returns errHelp.
func parse(e *env, fs *pflag.FlagSet, args []string) error {
	addGlobal(fs, e)
	return parseFlags(fs, args)
}

// splitSubcommand finds a command's subcommand (sysctl set, probe serve) when it
// is the first argument that is not a global flag, so that "sysctl -o json set"
// works like "sysctl set -o json". It returns the subcommand, or "", and the
// arguments without it.
func splitSubcommand(args []string, subs ...string) (string, []string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-o" || a == "--output" || a == "--netns":
			i++ // and its value
			continue
		case strings.HasPrefix(a, "--output=") || strings.HasPrefix(a, "--netns=") ||
			(strings.HasPrefix(a, "-o") && !strings.HasPrefix(a, "--")):
			continue
		}
		for _, sub := range subs {
			if a == sub {
				return sub, append(args[:i:i], args[i+1:]...)
			}
		}
		return "", args
	}
	return "", args
}

// parseCommand parses the flags of a command that takes no positional argument,
// and refuses an -o it cannot write.
func parseCommand(e *env, fs *pflag.FlagSet, args []string, formats ...string) error {
	if err := parse(e, fs, args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	return checkOutput(e, formats...)
}

// checkOutput refuses an -o the command cannot write.
func checkOutput(e *env, allowed ...string) error {
	for _, a := range allowed {
		if e.output == a {
			return nil
		}
	}
	return usagef("-o %q: this command writes %s", e.output, strings.Join(allowed, ", "))
}

// noArgs refuses stray positional arguments.
func noArgs(fs *pflag.FlagSet) error {
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q (see -h)", fs.Arg(0))
	}
	return nil
}

func printMainUsage(w io.Writer) {
	fmt.Fprint(w, `tcpkeep finds TCP connections whose peer is gone and tunes the keepalive
settings that decide whether anyone notices.

Usage:
  tcpkeep [-o table|json|ndjson] [--netns NS] COMMAND [flags]

Commands:
`)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
Global flags (before or after COMMAND):
  -o, --output FORMAT   table (default, for people), json (one document) or ndjson
                        (one record per line, for log pipelines)
      --netns NS        the network namespace to work in: a name under /run/netns,
                        a path such as /proc/PID/ns/net, or pid:PID (default: the
                        namespace tcpkeep runs in)
  -h, --help            help; 'tcpkeep COMMAND -h' for a command's own

Examples:
  tcpkeep sysctl                              the tunables and what they imply
  tcpkeep sysctl recommend --behind aws-nlb   values that fit an AWS NLB
  tcpkeep --netns web sysctl set --time 60s --intvl 10s --probes 5

Exit codes: 0 success, 1 runtime error, 2 usage error.
`)
}

func runHelp(e *env, args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		printMainUsage(e.stdout)
		return nil
	}
	for _, c := range commands {
		if c.name == args[0] && c.name != "help" {
			return c.run(e, append(args[1:], "-h"))
		}
	}
	return usagef("help: unknown command %q (commands: %s)", args[0], commandNames())
}
