package report

import (
	"fmt"
	"strings"

	"github.com/spf13/pflag"
)

// Help: the flags of a command as its -h lists them.

// OrList writes "a, b or c".
func OrList(s []string) string {
	if len(s) < 2 {
		return strings.Join(s, "")
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}

// FlagUsages lists the flags, one a line: "-p, --processes" for a switch,
// "--time D" for a value, "--persist[=FILE]" for an optional one, then what the
// flag does and its default.
func FlagUsages(fs *pflag.FlagSet) string {
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
