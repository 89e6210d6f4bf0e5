// Command tcpkeep finds TCP connections whose peer is gone and tunes the keepalive
// settings that decide whether anyone notices. See README.md.
package main

import (
	"os"

	"github.com/tcpkeep/tcpkeep/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
