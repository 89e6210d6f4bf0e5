package cli

import (
	"embed"
	"fmt"
	"io"
	"strings"
)

// command is one entry of the dispatch table; help/tcpkeep.txt lists them.
type command struct {
	name string
	run  func(e *env, args []string) error
}

// commands is the dispatch table, in the order help lists them.
var commands []command

func init() {
	commands = []command{{"sysctl", runSysctl}, {"conns", runConns}, {"audit", runAudit}, {"kill", runKill}, {"arm", runArm},
		{"probe", runProbe}, {"version", runVersion}, {"help", runHelp}}
}

// lookup finds a command by name.
func lookup(name string) *command {
	for i := range commands {
		if commands[i].name == name {
			return &commands[i]
		}
	}
	return nil
}

// unknownCommand says so, with the command meant where one is close enough.
func unknownCommand(name string) error {
	var names []string
	best, bestD := "", 3
	for _, c := range commands {
		names = append(names, c.name)
		d := distance(name, c.name)
		if len(name) >= 2 && strings.HasPrefix(c.name, name) {
			d = 1 // an abbreviation
		}
		if d < bestD {
			best, bestD = c.name, d
		}
	}
	if best != "" {
		return usagef("unknown command %q: did you mean %s? (see tcpkeep --help)", name, best)
	}
	return usagef("unknown command %q (commands: %s; see tcpkeep --help)", name, strings.Join(names, ", "))
}

// distance is the edit distance between a and b (insertions, deletions,
// substitutions and swaps of neighbours), for "did you mean".
func distance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

func printMainUsage(w io.Writer) { fmt.Fprint(w, helpText("tcpkeep")) }

func runHelp(e *env, args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		printMainUsage(e.stdout)
		return nil
	}
	if c := lookup(args[0]); c != nil && c.name != "help" {
		return c.run(e, append(args[1:], "-h"))
	}
	return unknownCommand(args[0])
}

//go:embed help/*.txt
var helpFiles embed.FS

// helpText is a command's help, help/NAME.txt, with {{filters}} (the filters'
// help) and the {{key}} value pairs of vars filled in.
func helpText(name string, vars ...string) string {
	b, err := helpFiles.ReadFile("help/" + name + ".txt")
	if err != nil {
		panic(err) // the files are in the binary: a missing one is a build mistake
	}
	f, _ := helpFiles.ReadFile("help/filters.txt")
	pairs := []string{"{{filters}}", string(f)}
	for i := 0; i+1 < len(vars); i += 2 {
		pairs = append(pairs, "{{"+vars[i]+"}}", vars[i+1])
	}
	return strings.NewReplacer(pairs...).Replace(string(b))
}
