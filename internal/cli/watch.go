package cli

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/tcpkeep/tcpkeep/internal/audit"
	"github.com/tcpkeep/tcpkeep/internal/flagval"
	"github.com/tcpkeep/tcpkeep/internal/report"
	"github.com/tcpkeep/tcpkeep/internal/watch"
)

func runWatch(e *env, args []string) error {
	if e.output == "table" {
		e.output = "ndjson" // events are records for a log pipeline
	}
	fs := newFlags(e, "watch", helpText("watch"))
	interval := 30 * time.Second
	atLeastVar(fs, &interval, 100*time.Millisecond, "interval", "time from the start of one audit to the next")
	listen := fs.String("listen", "127.0.0.1:9977", "serve /metrics and /healthz on `ADDR`, host:port (\"\": serve nothing)")
	var af auditFlags
	addAuditFlags(fs, &af, " after every round")
	var codes []audit.Code
	parse := func(v string) ([]audit.Code, error) { return parseFindings(codes, v, "close") }
	fs.Var(&flagval.Value[[]audit.Code]{V: &codes, Arg: "CODES", Parse: parse}, "kill", "close sockets flagged with these finding codes, comma-separated (default: none)")
	killMax := 10
	countVar(fs, &killMax, 1, 1<<20, "kill-max", "with --kill, close at most N sockets per interval")
	dryRun := fs.Bool("dry-run", false, "with --kill, report what would be closed (once per socket) and close nothing")
	if err := parseCommand(e, fs, args, "ndjson"); err != nil {
		return err
	}
	cfg, err := af.config(codes)
	if err != nil {
		return err
	}
	namespaces := watch.All
	if !e.allNetns {
		ns, _, err := e.open()
		if err != nil {
			return err
		}
		namespaces = watch.Only(ns)
	}
	l, err := watch.Listen(*listen)
	if err != nil {
		return fmt.Errorf("--listen %s: %w (another program has the port? pass --listen HOST:PORT)", *listen, err)
	}
	m := report.NewMetrics(build())
	log := slog.New(slog.NewJSONHandler(e.stderr, nil))
	wc := watch.Config{Interval: interval, Namespaces: namespaces, Kernel: e.kernel, Audit: cfg, Sockopts: *af.sockopts, Kill: codes, KillMax: killMax,
		DryRun: *dryRun, Emit: report.NewEventWriter(e.stdout, e.meta("").Host, report.Words{Sockopts: true, Remedy: true}).Event, Metrics: m, Log: log, Listener: l, MetricsHandler: m.Handler()}
	if *af.promFile != "" {
		wc.Rounds = m.Textfile(*af.promFile, log)
	}
	return watch.New(wc).Run(e.ctx)
}
