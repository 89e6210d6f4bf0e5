package cli

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/pflag"

	"github.com/tcpkeep/tcpkeep/internal/flagval"
	"github.com/tcpkeep/tcpkeep/internal/report"
)

// newFlags makes a command's FlagSet; usage is printed for -h, with the flags.
func newFlags(e *env, name, usage string) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.SortFlags = false
	fs.Usage = func() {
		fmt.Fprintf(e.stdout, "%s\n\nFlags:\n%s", strings.TrimSpace(usage), report.FlagUsages(fs))
	}
	return fs
}

// parse adds the global flags (-o offering formats, --netns, -h), parses args,
// prints the usage for -h, and refuses an -o the command cannot write. With no
// formats any -o passes: the command it names checks it.
func parse(e *env, fs *pflag.FlagSet, args []string, formats ...string) error {
	o := "output `FORMAT`: " + report.OrList(formats)
	if len(formats) == 0 {
		o = "output `FORMAT` of the command: table, json, ndjson (audit: also prom)"
	}
	fs.StringVarP(&e.output, "output", "o", e.output, o)
	fs.StringVar(&e.netnsSpec, "netns", e.netnsSpec, "the network namespace `NS`: a name under /run/netns, a path such as /proc/PID/ns/net, or pid:PID (default: tcpkeep's own)")
	fs.BoolVar(&e.allNetns, "all-netns", e.allNetns, "every network namespace on the host, one after the other (sysctl, conns, audit, kill, arm, watch)")
	fs.BoolP("help", "h", false, "show this help")
	if err := fs.Parse(args); err != nil {
		return usagef("%v (see -h)", err)
	}
	if n := fs.Name(); e.allNetns && (e.netnsSpec != "" || strings.HasPrefix(n, "probe") || n == "version") {
		return usagef("--all-netns goes with sysctl, conns, audit, kill, arm and watch, without --netns (which reads one namespace)")
	}
	if h, _ := fs.GetBool("help"); h {
		fs.Usage()
		return errHelp
	}
	if len(formats) == 0 || slices.Contains(formats, e.output) {
		return nil
	}
	return usagef("-o %q: this command writes %s", e.output, report.OrList(formats))
}

// parseCommand parses the flags of a command that takes no positional argument.
func parseCommand(e *env, fs *pflag.FlagSet, args []string, formats ...string) error {
	if err := parse(e, fs, args, formats...); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q (see -h)", fs.Arg(0))
	}
	return nil
}

// The flag values of tcpkeep's units (internal/flagval).
var durationVar, atLeastVar, secondsVar, countVar = flagval.Duration, flagval.AtLeast, flagval.Seconds, flagval.Count

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
		case strings.HasPrefix(a, "--all-netns") || strings.HasPrefix(a, "--output=") || strings.HasPrefix(a, "--netns=") ||
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
