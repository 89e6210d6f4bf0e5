// Package flagval holds the pflag values of tcpkeep's command line: one
// generic Value over a parse function, and the units its flags take (Go
// durations or bare seconds, whole keepalive seconds, bounded counts). It
// parses and shows values; the command line words what they mean.
package flagval

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/tcpkeep/tcpkeep/internal/report"
	"github.com/tcpkeep/tcpkeep/sysctl"
)

// Value is a flag whose text Parse turns into a T, stored in V. Arg is what
// the help calls its argument; Show, when set, writes the default.
type Value[T any] struct {
	V     *T
	Arg   string
	Parse func(string) (T, error)
	Show  func(T) string
}

// Type is Arg: pflag's help shows it as the argument's name.
func (f *Value[T]) Type() string { return f.Arg }

// String shows the value, "" when there is no Show.
func (f *Value[T]) String() string {
	if f.V == nil || f.Show == nil {
		return ""
	}
	return f.Show(*f.V)
}

// Set parses s into V, or leaves V as it was and says why not.
func (f *Value[T]) Set(s string) error {
	v, err := f.Parse(s)
	if err == nil {
		*f.V = v
	}
	return err
}

// Duration is a duration flag (sysctl.ParseDuration: 90, 90s, 1h30m, 500ms).
func Duration(fs *pflag.FlagSet, p *time.Duration, name, usage string) {
	fs.Var(&Value[time.Duration]{V: p, Arg: "D", Parse: sysctl.ParseDuration, Show: showDuration}, name, usage)
}

// AtLeast is a duration flag, as Duration, of at least min.
func AtLeast(fs *pflag.FlagSet, p *time.Duration, min time.Duration, name, usage string) {
	parse := func(s string) (time.Duration, error) {
		d, err := sysctl.ParseDuration(s)
		if err == nil && d < min {
			err = fmt.Errorf("%q: want at least %s", s, report.Duration(max(min, time.Millisecond)))
		}
		return d, err
	}
	fs.Var(&Value[time.Duration]{V: p, Arg: "D", Parse: parse, Show: showDuration}, name, usage)
}

// Seconds is a keepalive value: whole seconds from 1 to max.
func Seconds(fs *pflag.FlagSet, p *time.Duration, max time.Duration, name, usage string) {
	parse := func(s string) (time.Duration, error) { return sysctl.ParseSeconds(s, max) }
	fs.Var(&Value[time.Duration]{V: p, Arg: "D", Parse: parse, Show: showDuration}, name, usage)
}

// Count is a whole number from min to max.
func Count(fs *pflag.FlagSet, p *int, min, max int, name, usage string) {
	parse := func(s string) (int, error) {
		n, err := strconv.Atoi(s)
		if err != nil || n < min || n > max || strings.ContainsAny(s, "+- ") {
			return 0, fmt.Errorf("%q: want a whole number from %d to %d", s, min, max)
		}
		return n, nil
	}
	fs.Var(&Value[int]{V: p, Arg: "N", Parse: parse, Show: strconv.Itoa}, name, usage) // 0 shows no default
}

func showDuration(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return report.Duration(d)
}
