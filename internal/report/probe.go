package report

import (
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/tcpkeep/tcpkeep/probe"
	"github.com/tcpkeep/tcpkeep/sysctl"
)

// ProbeHead is what a heartbeat run does, for the line the table starts with.
type ProbeHead struct {
	Remote            string
	Interval, Timeout time.Duration
	Misses            int
	// Keepalive is the connection's own keepalive, nil for off.
	Keepalive   *sysctl.Keepalive
	UserTimeout time.Duration
}

// ProbeWriter writes a heartbeat run as it goes: a "beat" per ping (ndjson
// lines, or the "beats" of one "probe" document) and the "verdict" last (the
// document's summary); or, as ping does, a line per beat and the statistics.
// Every record is written when it is complete.
type ProbeWriter struct {
	st     *stream
	remote string
}

// NewProbeWriter starts writing a heartbeat run in format f.
func NewProbeWriter(w io.Writer, f Format, m Meta, h ProbeHead) (*ProbeWriter, error) {
	pw := &ProbeWriter{st: newStream(w, f, m), remote: h.Remote}
	if f == Table {
		ka := "keepalive off"
		if k := h.Keepalive; k != nil {
			ka = fmt.Sprintf("keepalive %d/%d/%d", k.Time/time.Second, k.Intvl/time.Second, k.Probes)
		}
		if h.UserTimeout > 0 {
			ka += ", TCP_USER_TIMEOUT " + Duration(h.UserTimeout)
		}
		pw.st.buf = fmt.Appendf(pw.st.buf, "PROBE %s (netns %s): a ping every %s, a miss after %s, dead after %d misses in a row; %s\n",
			h.Remote, m.NetNS, Duration(h.Interval), Duration(h.Timeout), h.Misses, ka)
		return pw, pw.st.flush()
	}
	pw.st.doc("probe", "beats", nil)
	return pw, pw.st.flush()
}

// Beat writes one beat.
func (pw *ProbeWriter) Beat(b probe.Beat) error {
	st := pw.st
	if st.f == Table {
		if b.OK {
			st.buf = fmt.Appendf(st.buf, "%d bytes from %s: seq=%d time=%s ms\n", probe.FrameSize, pw.remote, b.Seq, rttMS(b.RTT))
		} else {
			st.buf = fmt.Appendf(st.buf, "seq=%d miss: %v\n", b.Seq, b.Err)
		}
		return st.flush()
	}
	first := st.begin("beat")
	st.buf = appendKey(st.buf, "remote", first)
	st.buf = appendString(st.buf, pw.remote)
	st.buf = appendUint(st.buf, "seq", b.Seq)
	if b.OK {
		st.buf = appendStr(st.buf, "result", "ok")
		st.buf = appendUS(st.buf, "rtt_us", b.RTT)
	} else {
		st.buf = appendStr(st.buf, "result", "miss")
		st.buf = appendStr(st.buf, "error", b.Err.Error())
	}
	if err := st.end(); err != nil {
		return err
	}
	return st.flush() // a beat is news: write it now
}

// Verdict writes the verdict; interrupted says a signal ended the run.
func (pw *ProbeWriter) Verdict(v probe.Verdict, interrupted bool) error {
	st := pw.st
	if st.f == Table {
		st.buf = fmt.Appendf(st.buf, "\n--- %s heartbeat statistics ---\n", pw.remote)
		st.buf = fmt.Appendf(st.buf, "%d sent, %d received, %s%% loss", v.Sent, v.Received, strconv.FormatFloat(100*v.Loss(), 'f', -1, 64))
		if v.Received > 0 {
			st.buf = fmt.Appendf(st.buf, ", rtt min/avg/max = %s/%s/%s ms", rttMS(v.RTTMin), rttMS(v.RTTAvg), rttMS(v.RTTMax))
		}
		if v.Alive {
			st.buf = append(st.buf, "\nalive\n"...)
		} else {
			st.buf = fmt.Appendf(st.buf, "\nDEAD: %s\n", v.Reason)
		}
		return st.flush()
	}
	first := st.summary("verdict")
	st.buf = appendKey(st.buf, "remote", first)
	st.buf = appendString(st.buf, pw.remote)
	st.buf = appendBool(st.buf, "alive", v.Alive)
	if v.Reason != "" {
		st.buf = appendStr(st.buf, "reason", v.Reason)
	}
	st.buf = appendInt(st.buf, "sent", int64(v.Sent))
	st.buf = appendInt(st.buf, "received", int64(v.Received))
	st.buf = appendFloat(st.buf, "loss", v.Loss())
	if v.Received > 0 {
		st.buf = appendUS(st.buf, "rtt_min_us", v.RTTMin)
		st.buf = appendUS(st.buf, "rtt_avg_us", v.RTTAvg)
		st.buf = appendUS(st.buf, "rtt_max_us", v.RTTMax)
	}
	st.buf = appendBool(st.buf, "interrupted", interrupted)
	return st.close(nil)
}

// rttMS writes a round-trip time the way ping does: milliseconds, 3 decimals.
func rttMS(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 3, 64)
}

// Serve is a "probe_serve" record: the server's bounds and what it did.
type Serve struct {
	Listen      string
	Stopped     bool
	MaxClients  int
	ReadTimeout time.Duration
	Rate        int
	Stats       probe.ServerStats
}

// WriteServe writes a "probe_serve" record (state listening when it starts,
// stopped when it ends), or a line for people.
func WriteServe(w io.Writer, f Format, m Meta, s *Serve) error {
	if f == Table {
		if !s.Stopped {
			return write(w, fmt.Appendf(nil, "serving heartbeats on %s (netns %s): at most %d clients, silent ones dropped after %s, %d pings/s each\n",
				s.Listen, m.NetNS, s.MaxClients, Duration(s.ReadTimeout), s.Rate))
		}
		st := s.Stats
		return write(w, fmt.Appendf(nil, "stopped: %d connections served, %d rejected busy (too many clients), %d evicted to make room, %d closed for malformed frames, %d for silence; %d pings answered, %d of them throttled\n",
			st.Accepted, st.Rejected, st.Evicted, st.Malformed, st.TimedOut, st.Answered, st.Throttled))
	}
	return writeRecord(w, "probe_serve", m, func(b []byte) []byte {
		state := "listening"
		if s.Stopped {
			state = "stopped"
		}
		b = appendStr(b, "listen", s.Listen)
		b = appendStr(b, "state", state)
		b = appendInt(b, "max_clients", int64(s.MaxClients))
		b = appendSec(b, "read_timeout_s", s.ReadTimeout)
		b = appendInt(b, "rate", int64(s.Rate))
		st := s.Stats
		for _, kv := range []struct {
			k string
			v uint64
		}{{"accepted", st.Accepted}, {"rejected", st.Rejected}, {"evicted", st.Evicted}, {"malformed", st.Malformed}, {"timed_out", st.TimedOut}, {"answered", st.Answered}, {"throttled", st.Throttled}} {
			b = appendUint(b, kv.k, kv.v)
		}
		return b
	})
}

// IdleWriter writes a search for a path's idle timeout: an "idle_trial" per
// connection checked (ndjson lines, or the "trials" of one "probe_idle"
// document) and the "path_idle" result last; or lines for people.
type IdleWriter struct {
	st     *stream
	remote string
	netns  string // the --netns value, for the command line it suggests
}

// NewIdleWriter starts writing a search of the path to remote, between min
// and max to within res; netnsArg is the run's --netns value ("" for none).
func NewIdleWriter(w io.Writer, f Format, m Meta, remote, netnsArg string, min, max, res time.Duration) (*IdleWriter, error) {
	iw := &IdleWriter{st: newStream(w, f, m), remote: remote, netns: netnsArg}
	if f == Table {
		iw.st.buf = fmt.Appendf(iw.st.buf, "PROBE IDLE %s (netns %s): idle periods from %s to %s, to within %s\n", remote, m.NetNS, Duration(min), Duration(max), Duration(res))
	} else {
		iw.st.doc("probe_idle", "trials", nil)
	}
	return iw, iw.st.flush()
}

// Trial writes one trial.
func (iw *IdleWriter) Trial(t probe.Trial) error {
	st := iw.st
	if st.f == Table {
		if t.Survived {
			st.buf = fmt.Appendf(st.buf, "round %d: idle %s survived\n", t.Round, Duration(t.Idle))
		} else {
			st.buf = fmt.Appendf(st.buf, "round %d: idle %s died: %s\n", t.Round, Duration(t.Idle), t.Reason)
		}
		return st.flush()
	}
	first := st.begin("idle_trial")
	st.buf = appendKey(st.buf, "remote", first)
	st.buf = appendString(st.buf, iw.remote)
	st.buf = appendInt(st.buf, "round", int64(t.Round))
	st.buf = appendMS(st.buf, "idle_ms", t.Idle)
	result := "survived"
	if !t.Survived {
		result = "died"
	}
	st.buf = appendStr(st.buf, "result", result)
	if t.Reason != "" {
		st.buf = appendStr(st.buf, "reason", t.Reason)
	}
	if err := st.end(); err != nil {
		return err
	}
	return st.flush()
}

// Result writes what the search found: the "path_idle" record, or sentences
// with the command line that follows from it, when sysctl recommend accepts
// the estimate. When nothing died there is no estimate (no timeout up to
// --max): path_idle_timeout_s is absent, and survived_s a lower bound.
func (iw *IdleWriter) Result(r probe.IdleResult, res, took time.Duration, interrupted bool) error {
	recommend := ""
	if !interrupted {
		recommend, _ = RecommendCommand(iw.netns, r.Estimate)
	}
	st := iw.st
	if st.f == Table {
		b := st.buf
		switch {
		case interrupted:
			b = fmt.Appendf(b, "\nInterrupted before the search ended: the longest idle period that survived so far is %s.\n", Duration(r.Survived))
		case r.Died == 0:
			b = fmt.Appendf(b, "\nNo timeout up to --max: the path kept every connection idle, up to %s, the longest tried. Try a larger --max to find its timeout.\n", Duration(r.Survived))
		case r.Survived == 0:
			b = fmt.Appendf(b, "\nThe path forgot even a connection idle for %s: its idle timeout is shorter.\n", Duration(r.Died))
		default:
			b = fmt.Appendf(b, "\nThe path forgets an idle connection after %s to %s: estimate %s.\n", Duration(r.Survived), Duration(r.Died), Duration(r.Estimate))
		}
		switch {
		case recommend != "":
			b = fmt.Appendf(b, "Keepalive values that keep such connections open: %s\n", recommend)
		case !interrupted && r.Died > 0:
			b = append(b, "No keepalive setting (whole seconds, an eighth under the timeout for timers that fire late) fits a path this short: use an application heartbeat (tcpkeep probe ADDR --interval ...).\n"...)
		}
		st.buf = b
		return st.flush()
	}
	first := st.summary("path_idle")
	st.buf = appendKey(st.buf, "remote", first)
	st.buf = appendString(st.buf, iw.remote)
	if r.Died > 0 {
		st.buf = appendSec(st.buf, "path_idle_timeout_s", r.Estimate)
	}
	st.buf = appendSec(st.buf, "survived_s", r.Survived)
	if r.Died > 0 {
		st.buf = appendSec(st.buf, "died_s", r.Died)
	}
	st.buf = appendMS(st.buf, "resolution_ms", res)
	st.buf = appendInt(st.buf, "trials", int64(r.Trials))
	st.buf = appendMS(st.buf, "duration_ms", took)
	if recommend != "" {
		st.buf = appendStr(st.buf, "recommend", recommend)
	}
	st.buf = appendBool(st.buf, "interrupted", interrupted)
	return st.close(nil)
}

// Version is what tcpkeep version says.
type Version struct {
	Version, Commit, Go, OS, Arch string
}

// WriteVersion writes the "version" record, or a line.
func WriteVersion(w io.Writer, f Format, m Meta, v Version) error {
	if f == Table {
		return write(w, fmt.Appendf(nil, "tcpkeep %s (commit %s, %s %s/%s)\n", v.Version, v.Commit, v.Go, v.OS, v.Arch))
	}
	return writeRecord(w, "version", m, func(b []byte) []byte {
		b = appendStr(b, "version", v.Version)
		b = appendStr(b, "commit", v.Commit)
		return appendStr(b, "go", v.Go)
	})
}
