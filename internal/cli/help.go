package cli

import (
	"embed"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/tcpkeep/tcpkeep/internal/report"
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
		{"watch", runWatch}, {"probe", runProbe}, {"version", runVersion}, {"help", runHelp}}
}

// lookup finds a command by name.
func lookup(name string) *command {
	if i := slices.IndexFunc(commands, func(c command) bool { return c.name == name }); i >= 0 {
		return &commands[i]
	}
	return nil
}

// unknownCommand says so, with the command meant where one is close enough.
func unknownCommand(name string) error {
	var names []string
	for _, c := range commands {
		names = append(names, c.name)
	}
	if best := report.Nearest(name, names); best != "" {
		return usagef("unknown command %q: did you mean %s? (see tcpkeep --help)", name, best)
	}
	return usagef("unknown command %q (commands: %s; see tcpkeep --help)", name, strings.Join(names, ", "))
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
