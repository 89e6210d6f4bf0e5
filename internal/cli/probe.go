package cli

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/spf13/pflag"

	"github.com/tcpkeep/tcpkeep/internal/flagval"
	"github.com/tcpkeep/tcpkeep/internal/netns"
	"github.com/tcpkeep/tcpkeep/internal/report"
	"github.com/tcpkeep/tcpkeep/probe"
	"github.com/tcpkeep/tcpkeep/sysctl"
)

func runProbe(e *env, args []string) error {
	switch sub, rest := splitSubcommand(args, "serve", "idle"); sub {
	case "serve":
		return runProbeServe(e, rest)
	case "idle":
		return runProbeIdle(e, rest)
	}
	// Exit code 2 is "declared dead" alone: a usage error exits 1 like any
	// other error, so a script can trust a 2.
	err := probeClient(e, args)
	var ue *usageError
	if errors.As(err, &ue) {
		return &exitCodeError{code: exitError, err: err}
	}
	return err
}

// probeArgs parses a probe command's flags and its one ADDR argument.
func probeArgs(e *env, fs *pflag.FlagSet, cmd string, args []string) (string, error) {
	if err := parse(e, fs, args, "table", "json", "ndjson"); err != nil {
		return "", err
	}
	switch fs.NArg() {
	case 0:
		return "", usagef("%s: give the heartbeat server's address, HOST:PORT (see -h)", cmd)
	case 1:
		a, err := probe.Address(fs.Arg(0))
		if err != nil {
			return "", usagef("%s: %v", cmd, err)
		}
		return a, nil
	}
	return "", usagef("%s: unexpected argument %q after the address (see -h)", cmd, fs.Arg(1))
}

// probeNS is the namespace to make sockets in: without --netns nil, the
// caller's own, so that an unprivileged user can probe without entering one.
func probeNS(e *env) (netns.NS, probe.Namespace, error) {
	ns, _, err := e.open()
	if err != nil || e.netnsSpec == "" {
		return ns, nil, err
	}
	return ns, ns, nil
}

func probeClient(e *env, args []string) error {
	fs := newFlags(e, "probe", helpText("probe"))
	interval, misses := time.Second, 3
	var timeout, userTimeout time.Duration
	var count int
	var ka sysctl.Keepalive
	atLeastVar(fs, &interval, 10*time.Millisecond, "interval", "time between pings")
	durationVar(fs, &timeout, "timeout", "how long a ping waits for its answer before it is a miss, at most --interval (default: --interval)")
	countVar(fs, &misses, 1, 1000, "misses", "pings in a row unanswered that declare the peer dead")
	countVar(fs, &count, 1, 1<<31-1, "count", "stop after N pings (default: until dead or interrupted)")
	fs.Var(&flagval.Value[sysctl.Keepalive]{V: &ka, Arg: "IDLE/INTVL/CNT", Parse: sysctl.ParseKeepalive}, "keepalive",
		"turn SO_KEEPALIVE on with this TCP_KEEPIDLE/TCP_KEEPINTVL/TCP_KEEPCNT, as 60s/10s/5 (default: keepalive off)")
	durationVar(fs, &userTimeout, "user-timeout", "set TCP_USER_TIMEOUT: unacknowledged data for this long drops the connection")
	addr, err := probeArgs(e, fs, "probe", args)
	if err != nil {
		return err
	}
	if !fs.Changed("timeout") {
		timeout = interval
	}
	switch {
	case e.output == "json" && count == 0:
		// One document holds every beat until the end: it needs an end.
		return usagef("-o json writes one document when the run ends: give --count N, or use -o ndjson for a record per beat")
	case timeout <= 0 || timeout > interval:
		return usagef("--timeout %s: want more than 0 and at most --interval (%s): each ping is answered or missed before the next", report.Duration(timeout), report.Duration(interval))
	case fs.Changed("user-timeout") && (userTimeout < time.Millisecond || userTimeout > time.Duration(1<<31-1)*time.Millisecond):
		return usagef("--user-timeout %s: want 1ms to 596h", report.Duration(userTimeout))
	}
	opts := probe.SocketOptions{UserTimeout: userTimeout}
	if fs.Changed("keepalive") {
		opts.Keepalive = &ka
	}
	ns, pns, err := probeNS(e)
	if err != nil {
		return err
	}
	c, err := probe.Dial(e.ctx, pns, addr, opts)
	if err != nil {
		if e.ctx.Err() != nil {
			return errInterrupted
		}
		return inNS(ns, fmt.Errorf("probe %s: %w", addr, err))
	}
	w, err := report.NewProbeWriter(e.stdout, e.format(), e.meta(ns.String()),
		report.ProbeHead{Remote: c.RemoteAddr().String(), Interval: interval, Timeout: timeout, Misses: misses, Keepalive: opts.Keepalive, UserTimeout: userTimeout})
	if err != nil {
		c.Close()
		return err
	}
	var werr error
	v, err := probe.Run(e.ctx, c, probe.Config{Interval: interval, Timeout: timeout, Misses: misses, Count: count}, func(b probe.Beat) {
		if werr == nil {
			werr = w.Beat(b)
		}
	})
	if err != nil {
		return fmt.Errorf("probe %s: %w", addr, err)
	}
	if err := w.Verdict(v, e.ctx.Err() != nil); err != nil {
		return err
	}
	if werr != nil {
		return werr
	}
	if !v.Alive {
		return &exitCodeError{code: 2}
	}
	return nil
}

func runProbeServe(e *env, args []string) error {
	fs := newFlags(e, "probe serve", helpText("probe-serve"))
	listen := ":" + strconv.Itoa(probe.DefaultPort)
	s := report.Serve{MaxClients: probe.DefaultMaxClients, ReadTimeout: probe.DefaultReadTimeout, Rate: probe.DefaultRate}
	fs.StringVar(&listen, "listen", listen, "address to listen on, HOST:PORT or :PORT; `ADDR`")
	countVar(fs, &s.MaxClients, 1, 1<<20, "max-clients", "connections served at once")
	atLeastVar(fs, &s.ReadTimeout, time.Second, "read-timeout", "drop a client silent this long")
	countVar(fs, &s.Rate, 1, 100000, "rate", "pings per second answered on one connection")
	if err := parseCommand(e, fs, args, "table", "json", "ndjson"); err != nil {
		return err
	}
	_, port, err := net.SplitHostPort(listen)
	if err != nil {
		return usagef("--listen %q: want HOST:PORT or :PORT", listen)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil && port != "" {
		return usagef("--listen %q: port %q: want a number from 0 to 65535", listen, port)
	}
	ns, pns, err := probeNS(e)
	if err != nil {
		return err
	}
	l, err := probe.Listen(pns, listen)
	if err != nil {
		return inNS(ns, fmt.Errorf("probe serve: %w", err))
	}
	srv := &probe.Server{MaxClients: s.MaxClients, ReadTimeout: s.ReadTimeout, Rate: s.Rate}
	s.Listen = l.Addr().String()
	if e.output != "json" {
		if err := report.WriteServe(e.stdout, e.format(), e.meta(ns.String()), &s); err != nil {
			l.Close()
			return err
		}
	}
	serr := srv.Serve(e.ctx, l)
	s.Stopped, s.Stats = true, srv.Stats()
	if err := report.WriteServe(e.stdout, e.format(), e.meta(ns.String()), &s); err != nil {
		return err
	}
	if serr != nil {
		return inNS(ns, fmt.Errorf("probe serve: %w", serr))
	}
	return nil
}

func runProbeIdle(e *env, args []string) error {
	fs := newFlags(e, "probe idle", helpText("probe-idle"))
	cfg := probe.IdleConfig{Min: probe.DefaultIdleMin, Max: probe.DefaultIdleMax, Resolution: probe.DefaultIdleResolution,
		Timeout: probe.DefaultIdleTimeout, Parallel: probe.DefaultIdleParallel}
	atLeastVar(fs, &cfg.Min, 100*time.Millisecond, "min", "shortest idle period of the first round")
	durationVar(fs, &cfg.Max, "max", "longest idle period tried")
	atLeastVar(fs, &cfg.Resolution, 100*time.Millisecond, "resolution", "stop when the longest that survived and the shortest that died are this close")
	atLeastVar(fs, &cfg.Timeout, 10*time.Millisecond, "timeout", "how long the check after an idle period waits for its answer")
	countVar(fs, &cfg.Parallel, 1, 256, "parallel", "most connections idling at once in the narrowing rounds")
	addr, err := probeArgs(e, fs, "probe idle", args)
	if err != nil {
		return err
	}
	if cfg.Max < cfg.Min {
		return usagef("--max %s is below --min %s", report.Duration(cfg.Max), report.Duration(cfg.Min))
	}
	ns, pns, err := probeNS(e)
	if err != nil {
		return err
	}
	cfg.Addr, cfg.NetNS = addr, pns
	w, err := report.NewIdleWriter(e.stdout, e.format(), e.meta(ns.String()), addr, e.netnsSpec, cfg.Min, cfg.Max, cfg.Resolution)
	if err != nil {
		return err
	}
	start := time.Now()
	var seen probe.IdleResult // what the trials so far say, should a signal end the search
	var werr error
	result, err := probe.DiscoverIdle(e.ctx, cfg, func(t probe.Trial) {
		seen.Trials++
		switch {
		case t.Survived && t.Idle > seen.Survived:
			seen.Survived, seen.Estimate = t.Idle, t.Idle
		case !t.Survived && (seen.Died == 0 || t.Idle < seen.Died):
			seen.Died = t.Idle
		}
		if werr == nil {
			werr = w.Trial(t)
		}
	})
	if err != nil && e.ctx.Err() != nil {
		if err := w.Result(seen, cfg.Resolution, time.Since(start), true); err != nil {
			return err
		}
		return errInterrupted
	}
	if err != nil {
		if errors.Is(err, probe.ErrMalformed) {
			return fmt.Errorf("probe idle %s: %w (is it a 'tcpkeep probe serve'?)", addr, err)
		}
		return inNS(ns, fmt.Errorf("probe idle %s: %w", addr, err))
	}
	if err := w.Result(result, cfg.Resolution, time.Since(start), false); err != nil {
		return err
	}
	return werr
}
