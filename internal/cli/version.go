package cli

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/tcpkeep/tcpkeep/internal/netns"
)

// Set at build time: go build -ldflags "-X github.com/tcpkeep/tcpkeep/internal/cli.version=..."
var (
	version = "dev"
	commit  = ""
)

// versionRecord is what version writes with -o json or ndjson.
type versionRecord struct {
	header
	Version string `json:"version"`
	Commit  string `json:"commit"`
	Go      string `json:"go"`
}

func runVersion(e *env, args []string) error {
	fs := newFlags(e, "version", `
Usage: tcpkeep version [-o table|json|ndjson]

Prints tcpkeep's version, the commit it was built from and the Go version.

Examples:
  tcpkeep version
  tcpkeep -o json version      for an inventory of a fleet's agents
`)
	if err := parseCommand(e, fs, args, "table", "json", "ndjson"); err != nil {
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
	if e.output != "table" {
		return writeJSON(e, versionRecord{header: headerOf("version", e.meta(netns.Self())), Version: version, Commit: c, Go: runtime.Version()})
	}
	fmt.Fprintf(e.stdout, "tcpkeep %s (commit %s, %s %s/%s)\n", version, c, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}
