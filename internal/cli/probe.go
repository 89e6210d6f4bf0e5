package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tcpkeep/tcpkeep/internal/netns"
	"github.com/tcpkeep/tcpkeep/probe"
)

const probeUsage = `
Usage:
  tcpkeep probe ADDR [--interval D] [--timeout D] [--misses N] [--count N]
                     [--keepalive IDLE/INTVL/CNT] [--user-timeout D]
  tcpkeep probe serve [--listen ADDR] [--max-clients N] [--read-timeout D] [--rate N]
  tcpkeep probe idle ADDR [--min D] [--max D] [--resolution D] [--timeout D]

An application-level heartbeat over TCP. 'probe ADDR' connects to a heartbeat
server ('probe serve', or anything that speaks the protocol in README) and sends a
ping every --interval; a ping not answered within --timeout is a miss, and --misses
misses in a row declare the peer dead. Each beat prints its round-trip time, as
ping does, and the run ends with a verdict: alive or dead, sent, received, loss,
rtt min/avg/max. It runs until --count beats, the peer is declared dead, or
SIGINT/SIGTERM (which ends it with its verdict).

ADDR is HOST:PORT, [IPV6]:PORT, or an IP address alone for port 7077.

The connection has SO_KEEPALIVE off unless --keepalive sets it on with its own
TCP_KEEPIDLE/TCP_KEEPINTVL/TCP_KEEPCNT; --user-timeout sets TCP_USER_TIMEOUT. Try a
setting here before rolling it out: with --keepalive and a long --interval, the
kernel's probes keep the path open between beats, or not.

A dead peer is declared within --interval x --misses + --timeout of going silent.

Exit codes: 0 the peer is alive (the run ended by --count or a signal), 2 it was
declared dead (its verdict on stdout; with -o ndjson a "verdict" record with
"alive": false), 1 an error: cannot connect, not a heartbeat server, or a mistyped
command line. 2 means dead and nothing else.

Examples:
  tcpkeep probe 10.0.0.5:7077 --count 10
  tcpkeep -o ndjson probe db.internal:7077 --interval 5s --timeout 2s --misses 3
  tcpkeep probe 10.0.0.5 --interval 10m --keepalive 60s/10s/5
  tcpkeep --netns web probe serve --listen :7077
  tcpkeep probe idle 203.0.113.7:7077 --max 30m --resolution 15s
`

func runProbe(e *env, args []string) error {
	switch sub, rest := splitSubcommand(args, "serve", "idle"); sub {
	case "serve":
		return runProbeServe(e, rest)
	case "idle":
		return runProbeIdle(e, rest)
	}
	return runProbeClient(e, args)
}

// probeAddr reads ADDR: HOST:PORT, or an IP address or host name alone for the
// default port.
func probeAddr(s string) (string, error) {
	if s == "" {
		return "", usagef("probe: empty address (give HOST:PORT)")
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.AddrPortFrom(a, probe.DefaultPort).String(), nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		if strings.Contains(s, ":") {
			return "", usagef("probe: address %q: want HOST:PORT, [IPV6]:PORT or an IP address", s)
		}
		return net.JoinHostPort(s, strconv.Itoa(probe.DefaultPort)), nil
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", usagef("probe: address %q: port %q is not 1 to 65535", s, port)
	}
	if host == "" {
		return "", usagef("probe: address %q: no host", s)
	}
	return s, nil
}

// onePositional takes the command's one ADDR argument.
func onePositional(cmd string, args []string) (string, error) {
	switch len(args) {
	case 0:
		return "", usagef("%s: give the heartbeat server's address, HOST:PORT (see -h)", cmd)
	case 1:
		return probeAddr(args[0])
	}
	return "", usagef("%s: unexpected argument %q after the address (see -h)", cmd, args[1])
}

// probeNS is the namespace to make sockets in: nil, the caller's own, without
// --netns, so that an unprivileged user can probe without entering one.
func probeNS(e *env) (netns.NS, probe.Namespace, error) {
	ns, err := e.ns()
	if err != nil {
		return ns, nil, err
	}
	if e.netnsSpec == "" {
		return ns, nil, nil
	}
	return ns, ns, nil
}

// signalContext ends on SIGINT or SIGTERM.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// keepaliveFlag is --keepalive IDLE/INTVL/CNT.
type keepaliveFlag struct {
	k   probe.Keepalive
	set bool
}

func (f *keepaliveFlag) String() string {
	if !f.set {
		return ""
	}
	return fmt.Sprintf("%d/%d/%d", f.k.Idle/time.Second, f.k.Intvl/time.Second, f.k.Count)
}
func (f *keepaliveFlag) Type() string { return "IDLE/INTVL/CNT" }
func (f *keepaliveFlag) Set(s string) error {
	parts := strings.Split(s, "/")
	if len(parts) != 3 {
		return fmt.Errorf("%q: want IDLE/INTVL/CNT, as 60s/10s/5", s)
	}
	idle, err := parseSeconds(parts[0], 32767)
	if err != nil {
		return fmt.Errorf("IDLE %v", err)
	}
	intvl, err := parseSeconds(parts[1], 32767)
	if err != nil {
		return fmt.Errorf("INTVL %v", err)
	}
	cnt, err := parseCount(parts[2], 1, 127)
	if err != nil {
		return fmt.Errorf("CNT %v", err)
	}
	f.k, f.set = probe.Keepalive{Idle: idle, Intvl: intvl, Count: cnt}, true
	return nil
}

// beatRecord is the "beat" record: one ping and its answer, or none.
type beatRecord struct {
	header
	Remote string `json:"remote"`
	Seq    uint64 `json:"seq"`
	Result string `json:"result"`
	RTTUS  *int64 `json:"rtt_us,omitempty"`
	Error  string `json:"error,omitempty"`
}

// verdictRecord is the "verdict" record that ends a heartbeat run.
type verdictRecord struct {
	header
	Remote   string       `json:"remote"`
	Alive    bool         `json:"alive"`
	Reason   string       `json:"reason,omitempty"`
	Sent     int          `json:"sent"`
	Received int          `json:"received"`
	Loss     float64      `json:"loss"`
	RTTMinUS *int64       `json:"rtt_min_us,omitempty"`
	RTTAvgUS *int64       `json:"rtt_avg_us,omitempty"`
	RTTMaxUS *int64       `json:"rtt_max_us,omitempty"`
	Beats    []beatRecord `json:"beats,omitempty"` // -o json only
}

func micros(d time.Duration) *int64 {
	us := d.Microseconds()
	return &us
}

// ms writes a round-trip time the way ping does.
func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 3, 64)
}

// runProbeClient keeps exit code 2 for "declared dead" alone: a usage error
// exits 1 like any other error, so a script can trust a 2.
func runProbeClient(e *env, args []string) error {
	err := probeClient(e, args)
	var ue *usageError
	if errors.As(err, &ue) {
		return &exitCodeError{code: exitError, err: err}
	}
	return err
}

func probeClient(e *env, args []string) error {
	fs := newFlags(e, "probe", probeUsage)
	var interval, timeout, userTimeout time.Duration
	misses := &countFlag{n: 3, min: 1, max: 1000}
	count := &countFlag{min: 1, max: 1<<31 - 1}
	ka := &keepaliveFlag{}
	fs.Var(&durationFlag{d: &interval}, "interval", "time between pings (default 1s)")
	fs.Var(&durationFlag{d: &timeout}, "timeout", "how long a ping waits for its answer before it is a miss, at most --interval (default: --interval)")
	fs.Var(misses, "misses", "pings in a row unanswered that declare the peer dead (default 3)")
	fs.Var(count, "count", "stop after N pings (default: until dead or interrupted)")
	fs.Var(ka, "keepalive", "turn SO_KEEPALIVE on with this TCP_KEEPIDLE/TCP_KEEPINTVL/TCP_KEEPCNT, as 60s/10s/5 (default: keepalive off)")
	fs.Var(&durationFlag{d: &userTimeout}, "user-timeout", "set TCP_USER_TIMEOUT: unacknowledged data for this long drops the connection")
	if err := parse(e, fs, args); err != nil {
		return err
	}
	addr, err := onePositional("probe", fs.Args())
	if err != nil {
		return err
	}
	if err := checkOutput(e, "table", "json", "ndjson"); err != nil {
		return err
	}
	if e.output == "json" && !count.set {
		// One document holds every beat until the end: it needs an end.
		return usagef("-o json writes one document when the run ends: give --count N, or use -o ndjson for a record per beat")
	}
	if !fs.Changed("interval") {
		interval = time.Second
	}
	if interval < 10*time.Millisecond {
		return usagef("--interval %v: want at least 10ms", interval)
	}
	if !fs.Changed("timeout") {
		timeout = interval
	}
	if timeout <= 0 || timeout > interval {
		return usagef("--timeout %v: want more than 0 and at most --interval (%v): each ping is answered or missed before the next", timeout, interval)
	}
	if fs.Changed("user-timeout") && (userTimeout < time.Millisecond || userTimeout > time.Duration(1<<31-1)*time.Millisecond) {
		return usagef("--user-timeout %v: want 1ms to 596h", userTimeout)
	}
	cfg := probe.Config{Interval: interval, Timeout: timeout, Misses: misses.n, Count: count.n}
	opts := probe.SocketOptions{UserTimeout: userTimeout}
	if ka.set {
		opts.Keepalive = &ka.k
	}
	ns, pns, err := probeNS(e)
	if err != nil {
		return err
	}
	ctx, stop := signalContext()
	defer stop()
	c, err := probe.Dial(ctx, pns, addr, opts)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("probe %s: interrupted while connecting", addr)
		}
		return fmt.Errorf("probe %s in netns %s: %w (is 'tcpkeep probe serve' running there?)", addr, ns, err)
	}
	remote := c.RemoteAddr().String()
	var beats []beatRecord
	if e.output == "table" {
		ko := "keepalive off"
		if ka.set {
			ko = "keepalive " + ka.String()
		}
		if userTimeout > 0 {
			ko += ", TCP_USER_TIMEOUT " + userTimeout.String()
		}
		fmt.Fprintf(e.stdout, "PROBE %s (netns %s): a ping every %s, a miss after %s, dead after %d misses in a row; %s\n",
			remote, ns, interval, timeout, misses.n, ko)
	}
	onBeat := func(b probe.Beat) {
		r := beatRecord{header: headerOf("beat", e.meta(ns)), Remote: remote, Seq: b.Seq, Result: "ok"}
		if b.OK {
			r.RTTUS = micros(b.RTT)
		} else {
			r.Result = "miss"
			r.Error = b.Err.Error()
		}
		switch e.output {
		case "table":
			if b.OK {
				fmt.Fprintf(e.stdout, "%d bytes from %s: seq=%d time=%s ms\n", probe.FrameSize, remote, b.Seq, ms(b.RTT))
			} else {
				fmt.Fprintf(e.stdout, "seq=%d miss: %v\n", b.Seq, b.Err)
			}
		case "ndjson":
			_ = writeJSON(e, r)
		case "json":
			beats = append(beats, r)
		}
	}
	v, err := probe.Run(ctx, c, cfg, onBeat)
	if err != nil {
		return fmt.Errorf("probe %s: %w", addr, err)
	}
	rec := verdictRecord{header: headerOf("verdict", e.meta(ns)), Remote: remote, Alive: v.Alive, Reason: v.Reason,
		Sent: v.Sent, Received: v.Received, Loss: v.Loss(), Beats: beats}
	if v.Received > 0 {
		rec.RTTMinUS, rec.RTTAvgUS, rec.RTTMaxUS = micros(v.RTTMin), micros(v.RTTAvg), micros(v.RTTMax)
	}
	if e.output != "table" {
		if err := writeJSON(e, rec); err != nil {
			return err
		}
	} else {
		w := e.stdout
		fmt.Fprintf(w, "\n--- %s heartbeat statistics ---\n", remote)
		fmt.Fprintf(w, "%d sent, %d received, %s%% loss", v.Sent, v.Received, strconv.FormatFloat(100*v.Loss(), 'f', -1, 64))
		if v.Received > 0 {
			fmt.Fprintf(w, ", rtt min/avg/max = %s/%s/%s ms", ms(v.RTTMin), ms(v.RTTAvg), ms(v.RTTMax))
		}
		fmt.Fprintln(w)
		if v.Alive {
			fmt.Fprintln(w, "alive")
		} else {
			fmt.Fprintf(w, "DEAD: %s\n", v.Reason)
		}
	}
	if !v.Alive {
		return &exitCodeError{code: 2}
	}
	return nil
}

// serveRecord is the "probe_serve" record: what the server did, written when it
// stops (and, with -o ndjson, one with the limits when it starts).
type serveRecord struct {
	header
	Listen       string  `json:"listen"`
	State        string  `json:"state"` // listening, stopped
	MaxClients   int     `json:"max_clients"`
	ReadTimeoutS int64   `json:"read_timeout_s"`
	Rate         int     `json:"rate"`
	Accepted     *uint64 `json:"accepted,omitempty"`
	Rejected     *uint64 `json:"rejected,omitempty"`
	Malformed    *uint64 `json:"malformed,omitempty"`
	TimedOut     *uint64 `json:"timed_out,omitempty"`
	Answered     *uint64 `json:"answered,omitempty"`
	Throttled    *uint64 `json:"throttled,omitempty"`
}

func runProbeServe(e *env, args []string) error {
	fs := newFlags(e, "probe serve", `
Usage: tcpkeep probe serve [--listen ADDR] [--max-clients N] [--read-timeout D] [--rate N]

The heartbeat server: answers every ping with a pong of the same 24 bytes, until
SIGINT or SIGTERM, when it closes every connection and exits 0.

It is bounded: at most --max-clients connections (more are closed at once), a
client silent for --read-timeout is dropped, a connection is answered at most
--rate pings per second (the rest wait in its own socket buffers, and TCP flow
control stops the sender), and anything that is not a ping closes the connection.
An answer is never larger than its request. Its connections have keepalive off, so
that it never keeps a path open for 'probe idle': keep --read-timeout above the
longest --max that 'probe idle' tries.

Exit codes: 0 stopped by a signal, 1 error (cannot listen), 2 usage error.

Examples:
  tcpkeep probe serve --listen :7077
  tcpkeep --netns web probe serve --listen 10.0.0.5:7077 --max-clients 100
`)
	listen := ":" + strconv.Itoa(probe.DefaultPort)
	var readTimeout time.Duration
	maxClients := &countFlag{n: probe.DefaultMaxClients, min: 1, max: 1 << 20}
	rate := &countFlag{n: probe.DefaultRate, min: 1, max: 100000}
	fs.StringVar(&listen, "listen", listen, "address to listen on, HOST:PORT or :PORT")
	fs.Var(maxClients, "max-clients", fmt.Sprintf("connections served at once (default %d)", probe.DefaultMaxClients))
	fs.Var(&durationFlag{d: &readTimeout}, "read-timeout", fmt.Sprintf("drop a client silent this long (default %v)", probe.DefaultReadTimeout))
	fs.Var(rate, "rate", fmt.Sprintf("pings per second answered on one connection (default %d)", probe.DefaultRate))
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
	if !fs.Changed("read-timeout") {
		readTimeout = probe.DefaultReadTimeout
	}
	if readTimeout < time.Second {
		return usagef("--read-timeout %v: want at least 1s", readTimeout)
	}
	ns, pns, err := probeNS(e)
	if err != nil {
		return err
	}
	ctx, stop := signalContext()
	defer stop()
	l, err := probe.Listen(pns, listen)
	if err != nil {
		return fmt.Errorf("probe serve in netns %s: %w", ns, err)
	}
	srv := &probe.Server{MaxClients: maxClients.n, ReadTimeout: readTimeout, Rate: rate.n}
	rec := serveRecord{header: headerOf("probe_serve", e.meta(ns)), Listen: l.Addr().String(), State: "listening",
		MaxClients: maxClients.n, ReadTimeoutS: int64(readTimeout / time.Second), Rate: rate.n}
	switch e.output {
	case "table":
		fmt.Fprintf(e.stdout, "serving heartbeats on %s (netns %s): at most %d clients, silent ones dropped after %s, %d pings/s each\n",
			rec.Listen, ns, maxClients.n, human(readTimeout), rate.n)
	case "ndjson":
		if err := writeJSON(e, rec); err != nil {
			return err
		}
	}
	serr := srv.Serve(ctx, l)
	st := srv.Stats()
	rec.header = headerOf("probe_serve", e.meta(ns))
	rec.State = "stopped"
	rec.Accepted, rec.Rejected, rec.Malformed = &st.Accepted, &st.Rejected, &st.Malformed
	rec.TimedOut, rec.Answered, rec.Throttled = &st.TimedOut, &st.Answered, &st.Throttled
	if e.output == "table" {
		fmt.Fprintf(e.stdout, "stopped: %d connections served, %d rejected (too many clients), %d closed for malformed frames, %d for silence; %d pings answered, %d of them throttled\n",
			st.Accepted, st.Rejected, st.Malformed, st.TimedOut, st.Answered, st.Throttled)
	} else if err := writeJSON(e, rec); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("probe serve in netns %s: %w", ns, serr)
	}
	return nil
}

// trialRecord is the "idle_trial" record: one connection left idle and checked.
type trialRecord struct {
	header
	Remote string `json:"remote"`
	Round  int    `json:"round"`
	IdleMS int64  `json:"idle_ms"`
	Result string `json:"result"` // survived, died
	Reason string `json:"reason,omitempty"`
}

// pathIdleRecord is the "path_idle" record: what probe idle found.
type pathIdleRecord struct {
	header
	Remote           string        `json:"remote"`
	PathIdleTimeoutS *int64        `json:"path_idle_timeout_s,omitempty"` // absent when nothing died
	SurvivedS        int64         `json:"survived_s"`
	DiedS            *int64        `json:"died_s,omitempty"`
	ResolutionMS     int64         `json:"resolution_ms"`
	Trials           int           `json:"trials"`
	DurationMS       int64         `json:"duration_ms"`
	Recommend        string        `json:"recommend,omitempty"`
	TrialRecords     []trialRecord `json:"trial_records,omitempty"` // -o json only
}

func runProbeIdle(e *env, args []string) error {
	fs := newFlags(e, "probe idle", `
Usage: tcpkeep probe idle ADDR [--min D] [--max D] [--resolution D] [--timeout D] [--parallel N]

Measures how long the path to a heartbeat server ('tcpkeep probe serve' at ADDR)
keeps an idle TCP connection: how long a NAT gateway, firewall or load balancer on
the way remembers a flow that sends nothing.

It opens connections with keepalive off, checks each with a heartbeat, leaves them
idle for --min, 2 x --min, 4 x --min ... up to --max, all at once, and checks each
again: an answer within --timeout means the path kept the flow; no answer, or a
reset, means it forgot it. As soon as one dies the longer ones are dropped; then
it tries periods between the longest that survived and the shortest that died,
--parallel at a time, until the two are within --resolution. It takes about the
path's timeout (or --max) for the first round and as long again for each later
one. The estimate is the longest idle period that survived. When nothing died,
there is no estimate: no timeout up to --max (path_idle_timeout_s and died_s are
absent; survived_s is a lower bound).

It prints the estimate and the 'tcpkeep sysctl recommend --path-idle-timeout'
command that follows from it, when recommend accepts that timeout: keepalive
values that probe before the path forgets the flow. Run that command (with
--apply) in the namespace of the clients that cross this path.

The server must keep silent clients longer than --max ('probe serve' does for
65 minutes by default, see its --read-timeout).

Exit codes: 0 measured, 1 error (cannot connect, no answer before idling,
interrupted), 2 usage error.

Examples:
  tcpkeep probe idle 203.0.113.7:7077
  tcpkeep probe idle 203.0.113.7:7077 --min 1m --max 20m --resolution 5s
`)
	var minD, maxD, res, timeout time.Duration
	parallel := &countFlag{n: probe.DefaultIdleParallel, min: 1, max: 256}
	fs.Var(&durationFlag{d: &minD}, "min", fmt.Sprintf("shortest idle period of the first round (default %v)", probe.DefaultIdleMin))
	fs.Var(&durationFlag{d: &maxD}, "max", fmt.Sprintf("longest idle period tried (default %v)", probe.DefaultIdleMax))
	fs.Var(&durationFlag{d: &res}, "resolution", fmt.Sprintf("stop when the longest that survived and the shortest that died are this close (default %v)", probe.DefaultIdleResolution))
	fs.Var(&durationFlag{d: &timeout}, "timeout", fmt.Sprintf("how long the check after an idle period waits for its answer (default %v)", probe.DefaultIdleTimeout))
	fs.Var(parallel, "parallel", fmt.Sprintf("most connections idling at once in the narrowing rounds (default %d)", probe.DefaultIdleParallel))
	if err := parse(e, fs, args); err != nil {
		return err
	}
	addr, err := onePositional("probe idle", fs.Args())
	if err != nil {
		return err
	}
	if err := checkOutput(e, "table", "json", "ndjson"); err != nil {
		return err
	}
	set := func(name string, d *time.Duration, def time.Duration) {
		if !fs.Changed(name) {
			*d = def
		}
	}
	set("min", &minD, probe.DefaultIdleMin)
	set("max", &maxD, probe.DefaultIdleMax)
	set("resolution", &res, probe.DefaultIdleResolution)
	set("timeout", &timeout, probe.DefaultIdleTimeout)
	switch {
	case minD < 100*time.Millisecond:
		return usagef("--min %v: want at least 100ms", minD)
	case maxD < minD:
		return usagef("--max %v is below --min %v", maxD, minD)
	case res < 100*time.Millisecond:
		return usagef("--resolution %v: want at least 100ms", res)
	case timeout < 10*time.Millisecond:
		return usagef("--timeout %v: want at least 10ms", timeout)
	}
	ns, pns, err := probeNS(e)
	if err != nil {
		return err
	}
	ctx, stop := signalContext()
	defer stop()
	cfg := probe.IdleConfig{Addr: addr, NetNS: pns, Min: minD, Max: maxD, Resolution: res, Timeout: timeout, Parallel: parallel.n}
	if e.output == "table" {
		fmt.Fprintf(e.stdout, "PROBE IDLE %s (netns %s): idle periods from %s to %s, to within %s\n", addr, ns, human(minD), human(maxD), human(res))
	}
	var trials []trialRecord
	start := time.Now()
	result, err := probe.DiscoverIdle(ctx, cfg, func(t probe.Trial) {
		r := trialRecord{header: headerOf("idle_trial", e.meta(ns)), Remote: addr, Round: t.Round, IdleMS: t.Idle.Milliseconds(), Result: "survived", Reason: t.Reason}
		if !t.Survived {
			r.Result = "died"
		}
		switch e.output {
		case "table":
			if t.Survived {
				fmt.Fprintf(e.stdout, "round %d: idle %s survived\n", t.Round, human(t.Idle))
			} else {
				fmt.Fprintf(e.stdout, "round %d: idle %s died: %s\n", t.Round, human(t.Idle), t.Reason)
			}
		case "ndjson":
			_ = writeJSON(e, r)
		case "json":
			trials = append(trials, r)
		}
	})
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("probe idle %s: interrupted before the search ended", addr)
		}
		if errors.Is(err, probe.ErrMalformed) {
			return fmt.Errorf("probe idle %s: %w (is it a 'tcpkeep probe serve'?)", addr, err)
		}
		return fmt.Errorf("probe idle %s in netns %s: %w", addr, ns, err)
	}
	rec := pathIdleRecord{header: headerOf("path_idle", e.meta(ns)), Remote: addr, SurvivedS: int64(result.Survived / time.Second),
		ResolutionMS: res.Milliseconds(), Trials: result.Trials, DurationMS: time.Since(start).Milliseconds(), TrialRecords: trials}
	if result.Died > 0 {
		rec.DiedS = seconds(&result.Died)
		rec.PathIdleTimeoutS = seconds(&result.Estimate)
	}
	if cmd, ok := recommendFor(ns, result.Estimate); ok {
		rec.Recommend = cmd
	}
	if e.output != "table" {
		return writeJSON(e, rec)
	}
	w := e.stdout
	switch {
	case result.Died == 0:
		fmt.Fprintf(w, "\nNo timeout up to --max: the path kept every connection idle, up to %s, the longest tried. Try a larger --max to find its timeout.\n", human(result.Survived))
	case result.Survived == 0:
		fmt.Fprintf(w, "\nThe path forgot even a connection idle for %s: its idle timeout is shorter.\n", human(result.Died))
	default:
		fmt.Fprintf(w, "\nThe path forgets an idle connection after %s to %s: estimate %s.\n", human(result.Survived), human(result.Died), human(result.Estimate))
	}
	switch {
	case rec.Recommend != "":
		fmt.Fprintf(w, "Keepalive values that keep such connections open: %s\n", rec.Recommend)
	case result.Died > 0:
		fmt.Fprintln(w, "No keepalive setting (whole seconds, an eighth under the timeout for timers that fire late) fits a path this short: use an application heartbeat (tcpkeep probe ADDR --interval ...).")
	}
	return nil
}
