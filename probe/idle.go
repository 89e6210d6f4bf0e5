package probe

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"
)

// DiscoverIdle defaults, used where an IdleConfig field is zero.
const (
	DefaultIdleMin        = 30 * time.Second
	DefaultIdleMax        = time.Hour
	DefaultIdleResolution = 10 * time.Second
	DefaultIdleTimeout    = 3 * time.Second
	DefaultIdleParallel   = 16
)

// IdleConfig is what DiscoverIdle measures and how.
type IdleConfig struct {
	// Addr is the heartbeat server, host:port.
	Addr string
	// NetNS is where the connections are made; nil is the caller's namespace.
	NetNS Namespace
	// Min is the shortest idle period of the first round, Max the longest tried.
	Min, Max time.Duration
	// Resolution ends the search: the estimate is within it of the real timeout.
	Resolution time.Duration
	// Timeout is how long the check after an idle period waits for its pong.
	Timeout time.Duration
	// Parallel is the most connections idling at once.
	Parallel int
}

func (c IdleConfig) withDefaults() (IdleConfig, error) {
	if c.Min <= 0 {
		c.Min = DefaultIdleMin
	}
	if c.Max <= 0 {
		c.Max = DefaultIdleMax
	}
	if c.Resolution <= 0 {
		c.Resolution = DefaultIdleResolution
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultIdleTimeout
	}
	if c.Parallel <= 0 {
		c.Parallel = DefaultIdleParallel
	}
	if c.Min > c.Max {
		return c, fmt.Errorf("min %v exceeds max %v", c.Min, c.Max)
	}
	return c, nil
}

// Trial is one connection left idle and then checked.
type Trial struct {
	// Round counts from 1: the first tries Min, 2 x Min, 4 x Min ... up to Max;
	// each later one tries evenly spaced periods between the longest that survived
	// and the shortest that died.
	Round int
	// Idle is how long the connection sat idle.
	Idle time.Duration
	// Survived says the check after the idle period was answered.
	Survived bool
	// Reason says why a connection died: no answer in time, or the connection's
	// error (a reset from the middlebox).
	Reason string
}

// IdleResult is what DiscoverIdle found.
type IdleResult struct {
	// Estimate is the path's idle timeout as far as it is known: the longest idle
	// period that survived (so a keepalive or heartbeat within it is safe). The
	// real timeout lies between Survived and Died. It is 0 when nothing died:
	// then no timeout was found up to Max, and Survived is only a lower bound.
	Estimate time.Duration
	// Survived is the longest idle period that survived; zero if none did.
	Survived time.Duration
	// Died is the shortest idle period that died; zero if none did (the path kept
	// connections idle for Max).
	Died time.Duration
	// Trials is how many connections were checked.
	Trials int
}

// DiscoverIdle finds the longest idle period the path to cfg.Addr keeps a TCP
// connection. It opens connections with keepalive off, checks each with a
// heartbeat, lets them sit idle for different durations in parallel, and checks
// them again: an answer in time means the path still knew the flow; no answer, or
// a reset, means it forgot it. The first round tries Min, 2 x Min, ... up to Max;
// as soon as one dies, the longer ones of the round are abandoned (they would die
// too). Later rounds try up to Parallel periods evenly spaced between the longest
// that survived and the shortest that died, until the two are within Resolution.
//
// It takes about Max or the path's timeout, whichever is shorter, for the first
// round, and as long again for each later one. onTrial, if not nil, is called as
// each connection is checked, from the goroutine that called DiscoverIdle.
//
// The server must not close silent connections sooner than Max (a Server's
// ReadTimeout). A connection that cannot be made or that is not answered before
// its idle period is an error: the path is broken, not idle.
func DiscoverIdle(ctx context.Context, cfg IdleConfig, onTrial func(Trial)) (IdleResult, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return IdleResult{}, err
	}
	var res IdleResult
	var first []time.Duration
	for d := cfg.Min; ; d *= 2 {
		if d >= cfg.Max {
			first = append(first, cfg.Max)
			break
		}
		first = append(first, d)
	}
	lo, hi := time.Duration(0), time.Duration(0) // longest survived, shortest died (0: none)
	var all []Trial
	for round := 1; ; round++ {
		var periods []time.Duration
		if round == 1 {
			periods = first
		} else {
			if hi == 0 || hi-lo <= cfg.Resolution {
				break
			}
			periods = between(lo, hi, cfg.Resolution, cfg.Parallel)
			if len(periods) == 0 {
				break
			}
		}
		trials, err := runRound(ctx, cfg, round, periods, onTrial)
		if err != nil {
			return res, err
		}
		res.Trials += len(trials)
		all = append(all, trials...)
		for _, t := range trials {
			if !t.Survived && (hi == 0 || t.Idle < hi) {
				hi = t.Idle
			}
		}
		// A path that is not monotonic (a shorter period died where a longer one
		// survived) is read conservatively: what survived counts only below hi.
		lo = 0
		for _, t := range all {
			if t.Survived && t.Idle > lo && (hi == 0 || t.Idle < hi) {
				lo = t.Idle
			}
		}
	}
	res.Survived, res.Died = lo, hi
	if hi > 0 {
		res.Estimate = lo
	}
	return res, nil
}

// between picks up to n periods strictly between lo and hi, evenly spaced and
// rounded to the resolution where that keeps them inside.
func between(lo, hi, res time.Duration, n int) []time.Duration {
	steps := int((hi - lo + res - 1) / res) // periods of res that fit
	n = min(n, steps-1)
	var out []time.Duration
	for i := 1; i <= n; i++ {
		d := lo + (hi-lo)*time.Duration(i)/time.Duration(n+1)
		if r := d.Round(res); r > lo && r < hi {
			d = r
		}
		if d > lo && d < hi && !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	return out
}

// runRound runs one trial per period in parallel and returns the checked ones in
// order of period, calling onTrial as each is checked. When one dies, the longer
// ones still idling are abandoned: they would die too.
func runRound(parent context.Context, cfg IdleConfig, round int, periods []time.Duration, onTrial func(Trial)) ([]Trial, error) {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	type result struct {
		i   int
		t   Trial
		err error
	}
	results := make(chan result, len(periods))
	cancels := make([]context.CancelFunc, len(periods))
	for i, d := range periods {
		tctx, tcancel := context.WithCancel(ctx)
		cancels[i] = tcancel
		go func() {
			t, err := trial(tctx, cfg, d)
			t.Round = round
			results <- result{i, t, err}
		}()
	}
	abandoned := make([]bool, len(periods))
	var out []Trial
	var firstErr error
	for range periods { // every goroutine sends once: none outlives the round
		r := <-results
		cancels[r.i]()
		switch {
		case r.err != nil && (abandoned[r.i] || parent.Err() != nil || firstErr != nil):
			// Abandoned, interrupted, or the round already failed.
		case r.err != nil:
			firstErr = r.err
			cancel() // the path is broken: end the round
		default:
			out = append(out, r.t)
			if onTrial != nil {
				onTrial(r.t)
			}
			if !r.t.Survived {
				for j, dj := range periods {
					if dj > r.t.Idle && !abandoned[j] {
						abandoned[j] = true
						cancels[j]()
					}
				}
			}
		}
	}
	if err := parent.Err(); err != nil {
		return nil, err
	}
	if firstErr != nil {
		return nil, firstErr
	}
	slices.SortFunc(out, func(a, b Trial) int { return cmp.Compare(a.Idle, b.Idle) })
	return out, nil
}

// trial opens one connection without keepalive, checks it, lets it sit idle for d
// and checks it again.
func trial(ctx context.Context, cfg IdleConfig, d time.Duration) (Trial, error) {
	t := Trial{Idle: d}
	c, err := Dial(ctx, cfg.NetNS, cfg.Addr, SocketOptions{})
	if err != nil {
		return t, err
	}
	defer c.Close()
	p := NewPinger(c)
	if _, err := p.Ping(ctx, cfg.Timeout); err != nil {
		return t, fmt.Errorf("heartbeat to %s before idling: %w", cfg.Addr, err)
	}
	idle := time.NewTimer(d)
	select {
	case <-ctx.Done():
		idle.Stop()
		return t, ctx.Err()
	case <-idle.C:
	}
	_, err = p.Ping(ctx, cfg.Timeout)
	switch {
	case err == nil:
		t.Survived = true
	case ctx.Err() != nil:
		return t, ctx.Err()
	case errors.Is(err, ErrMalformed):
		return t, fmt.Errorf("heartbeat to %s: %w", cfg.Addr, err)
	case errors.Is(err, ErrBusy):
		// The server closed the idle connection to make room for another client:
		// that measures its load, not the path.
		return t, fmt.Errorf("heartbeat to %s after %v idle: %w", cfg.Addr, d, err)
	case errors.Is(err, io.EOF):
		// An orderly close is the server's doing (its read timeout, a restart),
		// not the path's: a middlebox that forgets a flow drops or resets it.
		return t, fmt.Errorf("heartbeat to %s: the server closed the connection after %v idle: that measures the server, not the path (does it drop clients silent for less than the longest idle period tried?)", cfg.Addr, d)
	default:
		t.Reason = err.Error()
		// The path forgot the flow: nothing will carry a FIN, so free the socket
		// with a reset instead of letting it retransmit.
		_ = c.SetLinger(0)
	}
	return t, nil
}
