package cli

import (
	"runtime"
	"runtime/debug"

	"github.com/tcpkeep/tcpkeep/internal/report"
)

// Set at build time: go build -ldflags "-X github.com/tcpkeep/tcpkeep/internal/cli.version=..."
var (
	version = "dev"
	commit  = ""
)

func runVersion(e *env, args []string) error {
	fs := newFlags(e, "version", helpText("version"))
	if err := parseCommand(e, fs, args, "table", "json", "ndjson"); err != nil {
		return err
	}
	b := build()
	v := report.Version{Version: b.Version, Commit: b.Commit, Go: b.GoVersion, OS: runtime.GOOS, Arch: runtime.GOARCH}
	return report.WriteVersion(e.stdout, e.format(), e.meta("self"), v)
}

// build is which tcpkeep this is: what version prints and tcpkeep_build_info says.
func build() report.BuildInfo {
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
	return report.BuildInfo{Version: version, Commit: c, GoVersion: runtime.Version()}
}
