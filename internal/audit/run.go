package audit

import (
	"context"
	"time"

	"github.com/tcpkeep/tcpkeep/internal/kernel"
)

// Run audits one namespace: its tunables, then every socket of one dump of it
// (cfg.Filter selects which), then what needs the whole dump (peer limits). It
// hands each finding to emit as it is found (valid during the call only) and
// returns what it saw. It needs no command line: a Go program or an agent runs
// it with a namespace, a configuration and a sink.
//
// When ctx ends, the dump stops where it is: Run returns the summary so far,
// with Interrupted set, and the dump's error (which wraps ctx's).
func Run(ctx context.Context, ns kernel.NS, cfg Config, emit func(*Finding)) (Summary, error) {
	start := time.Now()
	t, err := ns.Tunables()
	if err != nil {
		return Summary{}, err
	}
	cfg.Tunables = t
	c, err := ns.Dial()
	if err != nil {
		return Summary{Tunables: t, HaveTunables: true}, err
	}
	defer c.Close()
	a := New(cfg)
	a.Tunables(emit)
	var dumpErr error
	for s, err := range c.Sockets(ctx, cfg.Filter) {
		if err != nil {
			dumpErr = err
			break
		}
		a.Check(s, emit)
	}
	switch {
	case dumpErr == nil:
		a.Finish(emit)
	case ctx.Err() != nil:
		a.sum.Interrupted = true
	}
	sum := a.Summary()
	sum.Duration = time.Since(start)
	return sum, dumpErr
}
