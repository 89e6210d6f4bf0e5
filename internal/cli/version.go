package cli

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Set at build time: go build -ldflags "-X github.com/tcpkeep/tcpkeep/internal/cli.version=..."
var (
	version = "dev"
	commit  = ""
)

func runVersion(e *env, args []string) error {
	fs := newFlags(e, "version", `
Usage: tcpkeep version

Prints tcpkeep's version, the commit it was built from and the Go version.
`)
	if err := parse(e, fs, args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	c := commit
	if c == "" {
		c = "unknown"
		if bi, ok := debug.ReadBuildInfo(); ok {
			for _, s := range bi.Settings {
				if s.Key == "vcs.revision" {
					c = s.Value
				}
			}
		}
	}
	fmt.Fprintf(e.stdout, "tcpkeep %s (commit %s, %s %s/%s)\n", version, c, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}
