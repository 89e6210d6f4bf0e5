package cli

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/tcpkeep/tcpkeep/internal/report"
	"github.com/tcpkeep/tcpkeep/sysctl"
)

// newFlags makes a command's FlagSet; usage is printed for -h, with the flags.
func newFlags(e *env, name, usage string) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.SortFlags = false
	fs.Usage = func() {
		fmt.Fprintf(e.stdout, "%s\n\nFlags:\n%s", strings.TrimSpace(usage), flagUsages(fs))
	}
	return fs
}

// parse adds the global flags (-o offering formats, --netns, -h), parses args,
// prints the usage for -h, and refuses an -o the command cannot write. With no
// formats any -o passes: the command it names checks it.
func parse(e *env, fs *pflag.FlagSet, args []string, formats ...string) error {
	o := "output `FORMAT`: " + orList(formats)
	if len(formats) == 0 {
		o = "output `FORMAT` of the command: table, json, ndjson (audit: also prom)"
	}
	fs.StringVarP(&e.output, "output", "o", e.output, o)
	fs.StringVar(&e.netnsSpec, "netns", e.netnsSpec, "the network namespace `NS`: a name under /run/netns, a path such as /proc/PID/ns/net, or pid:PID (default: tcpkeep's own)")
	fs.BoolVar(&e.allNetns, "all-netns", e.allNetns, "every network namespace on the host, one after the other (sysctl, conns, audit, kill, arm)")
	fs.BoolP("help", "h", false, "show this help")
	if err := fs.Parse(args); err != nil {
		return usagef("%v (see -h)", err)
	}
	if n := fs.Name(); e.allNetns && (e.netnsSpec != "" || strings.HasPrefix(n, "probe") || n == "version") {
		return usagef("--all-netns goes with sysctl, conns, audit, kill and arm, without --netns (which reads one namespace)")
	}
	if h, _ := fs.GetBool("help"); h {
		fs.Usage()
		return errHelp
	}
	if len(formats) == 0 || slices.Contains(formats, e.output) {
		return nil
	}
	return usagef("-o %q: this command writes %s", e.output, orList(formats))
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

// orList writes "a, b or c".
func orList(s []string) string {
	if len(s) < 2 {
		return strings.Join(s, "")
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}

// flagUsages lists the flags, one a line: "-p, --processes" for a switch,
// "--time D" for a value, "--persist[=FILE]" for an optional one, then what the
// flag does and its default.
func flagUsages(fs *pflag.FlagSet) string {
	var left, right []string
	width := 0
	fs.VisitAll(func(f *pflag.Flag) {
		l := "    --" + f.Name
		if f.Shorthand != "" {
			l = "-" + f.Shorthand + ", --" + f.Name
		}
		arg, usage := pflag.UnquoteUsage(f)
		switch {
		case f.Value.Type() == "bool":
		case f.NoOptDefVal != "":
			l += "[=" + arg + "]"
		default:
			l += " " + arg
		}
		if d := f.DefValue; d != "" && d != "0" && d != "false" && d != "[]" && !strings.Contains(usage, "(default") {
			usage += " (default " + d + ")"
		}
		left, right = append(left, l), append(right, usage)
		width = max(width, len(l))
	})
	var b strings.Builder
	for i := range left {
		fmt.Fprintf(&b, "  %-*s  %s\n", width, left[i], right[i])
	}
	return b.String()
}

// value is a flag whose text parse turns into a T: every flag type tcpkeep
// has but strings and switches. arg is what the help calls its argument.
type value[T any] struct {
	v     *T
	arg   string
	parse func(string) (T, error)
	show  func(T) string
}

func (f *value[T]) Type() string { return f.arg }
func (f *value[T]) String() string {
	if f.v == nil || f.show == nil {
		return ""
	}
	return f.show(*f.v)
}
func (f *value[T]) Set(s string) error {
	v, err := f.parse(s)
	if err == nil {
		*f.v = v
	}
	return err
}

// durationVar is a duration flag (sysctl.ParseDuration: 90, 90s, 1h30m, 500ms).
func durationVar(fs *pflag.FlagSet, p *time.Duration, name, usage string) {
	fs.Var(&value[time.Duration]{v: p, arg: "D", parse: sysctl.ParseDuration, show: showDuration}, name, usage)
}

// atLeastVar is a duration flag, as durationVar, of at least min.
func atLeastVar(fs *pflag.FlagSet, p *time.Duration, min time.Duration, name, usage string) {
	parse := func(s string) (time.Duration, error) {
		d, err := sysctl.ParseDuration(s)
		if err == nil && d < min {
			err = fmt.Errorf("%q: want at least %s", s, report.Duration(max(min, time.Millisecond)))
		}
		return d, err
	}
	fs.Var(&value[time.Duration]{v: p, arg: "D", parse: parse, show: showDuration}, name, usage)
}

// secondsVar is a keepalive value: whole seconds from 1 to max.
func secondsVar(fs *pflag.FlagSet, p *time.Duration, max time.Duration, name, usage string) {
	parse := func(s string) (time.Duration, error) { return sysctl.ParseSeconds(s, max) }
	fs.Var(&value[time.Duration]{v: p, arg: "D", parse: parse, show: showDuration}, name, usage)
}

// countVar is a whole number from min to max.
func countVar(fs *pflag.FlagSet, p *int, min, max int, name, usage string) {
	parse := func(s string) (int, error) {
		n, err := strconv.Atoi(s)
		if err != nil || n < min || n > max || strings.ContainsAny(s, "+- ") {
			return 0, fmt.Errorf("%q: want a whole number from %d to %d", s, min, max)
		}
		return n, nil
	}
	fs.Var(&value[int]{v: p, arg: "N", parse: parse, show: strconv.Itoa}, name, usage) // 0 shows no default
}

func showDuration(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return report.Duration(d)
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
