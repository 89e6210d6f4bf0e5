package report

import (
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/tcpkeep/tcpkeep/sysctl"
)

// appendKeepaliveFields appends the keys every record about keepalive values
// has: keepalive_time_s, keepalive_intvl_s, keepalive_probes, dead_peer_detect_s.
func appendKeepaliveFields(dst []byte, k sysctl.Keepalive, first bool) []byte {
	dst = appendKey(dst, "keepalive_time_s", first)
	dst = strconv.AppendInt(dst, int64(k.Time/time.Second), 10)
	dst = appendSec(dst, "keepalive_intvl_s", k.Intvl)
	dst = appendInt(dst, "keepalive_probes", int64(k.Probes))
	return appendSec(dst, "dead_peer_detect_s", k.DeadPeerDetect())
}

// appendTunablesFields appends the "sysctl" record's own keys: the keepalive
// fields and the related tunables the namespace has. The record and audit's
// "tunables" both write them, so they have the same keys.
func appendTunablesFields(dst []byte, t *sysctl.Tunables, first bool) []byte {
	dst = appendKeepaliveFields(dst, t.Keepalive, first)
	if t.Retries2 != nil {
		dst = appendInt(dst, "tcp_retries2", int64(*t.Retries2))
		dst = appendMS(dst, "retrans_give_up_ms", retransAfter(*t.Retries2))
	}
	if t.FinTimeout != nil {
		dst = appendSec(dst, "tcp_fin_timeout_s", *t.FinTimeout)
	}
	if t.OrphanRetries != nil {
		dst = appendInt(dst, "tcp_orphan_retries", int64(*t.OrphanRetries))
	}
	if t.ConntrackEstablished != nil {
		dst = appendSec(dst, "conntrack_established_timeout_s", *t.ConntrackEstablished)
	}
	return dst
}

// WriteSysctl writes the tunables of one namespace: a "sysctl" record, or a
// table that says what they imply.
func WriteSysctl(w io.Writer, f Format, m Meta, t *sysctl.Tunables) error {
	if f != Table {
		return writeRecord(w, "sysctl", m, func(b []byte) []byte { return appendTunablesFields(b, t, false) })
	}
	d := Duration
	tb := newTable("TUNABLE (netns "+m.NetNS+")", "VALUE", "MEANING")
	row := func(name string, v int64, meaning string) {
		tb.cell(name)
		tb.cell(strconv.FormatInt(v, 10))
		tb.cell(meaning)
		tb.row(nil)
	}
	row("net.ipv4.tcp_keepalive_time", int64(t.Time/time.Second), d(t.Time)+" before the first probe of an idle connection")
	row("net.ipv4.tcp_keepalive_intvl", int64(t.Intvl/time.Second), d(t.Intvl)+" between unanswered probes")
	row("net.ipv4.tcp_keepalive_probes", int64(t.Probes), "unanswered probes before the connection is dropped")
	if t.Retries2 != nil {
		row("net.ipv4.tcp_retries2", int64(*t.Retries2), "retransmissions before giving up (about "+d(retransAfter(*t.Retries2))+" after the first)")
	}
	if t.FinTimeout != nil {
		row("net.ipv4.tcp_fin_timeout", int64(*t.FinTimeout/time.Second), d(*t.FinTimeout)+" an orphaned FIN_WAIT2 socket lives")
	}
	if t.OrphanRetries != nil {
		r := sysctl.OrphanRetries(*t.OrphanRetries)
		row("net.ipv4.tcp_orphan_retries", int64(*t.OrphanRetries), fmt.Sprintf("retransmissions of a closed socket before giving up (%d: about %s)", r, d(orphanAfter(*t.OrphanRetries))))
	}
	if t.ConntrackEstablished != nil {
		row("net.netfilter.nf_conntrack_tcp_timeout_established", int64(*t.ConntrackEstablished/time.Second), d(*t.ConntrackEstablished)+" local conntrack keeps an idle flow")
	}
	b := tb.flush(nil)
	b = fmt.Appendf(b, "\nA dead peer on an idle connection with SO_KEEPALIVE is dropped %s after its last answer (%s).\n",
		d(t.DeadPeerDetect()), detectFormula(t.Keepalive))
	if t.Retries2 != nil {
		b = fmt.Appendf(b, "A dead peer with unacknowledged data is dropped about %s after the first retransmission (tcp_retries2 %d), unless TCP_USER_TIMEOUT is set.\n",
			d(retransAfter(*t.Retries2)), *t.Retries2)
	}
	b = append(b, "Sockets without SO_KEEPALIVE never notice a dead idle peer; sockets that set TCP_KEEPIDLE/INTVL/CNT use their own values.\n"...)
	if t.Time == sysctl.Defaults.Time {
		b = fmt.Appendf(b, "Warning: tcp_keepalive_time is the kernel default of %s; most NAT gateways, firewalls and load balancers forget an idle flow within 4 to 20 minutes. See: tcpkeep sysctl recommend -h\n", d(t.Time))
	}
	if cadenceOverConntrack(t) {
		b = fmt.Appendf(b, "Warning: keepalive probes every %s (max of tcp_keepalive_time and _intvl), too close to the local conntrack timeout (%s) for timers that fire late: conntrack forgets idle flows between probes. See: tcpkeep sysctl recommend --behind conntrack\n",
			d(t.Cadence()), d(*t.ConntrackEstablished))
	}
	var path time.Duration
	if t.ConntrackEstablished != nil {
		path = *t.ConntrackEstablished
	}
	b = appendKeepaliveTimeline(b, t.Keepalive, path, "local conntrack")
	return write(w, b)
}

// Change is what sysctl set (or recommend --apply) did, or would do.
type Change struct {
	DryRun   bool
	Old, New sysctl.Keepalive
	// PersistFile is the sysctl.d file written (or that would be); "" for none.
	PersistFile string
	// PersistBody is the file's content, shown by a dry run.
	PersistBody []byte
}

// WriteChange writes a "sysctl_set" record, or what changed for people.
func WriteChange(w io.Writer, f Format, m Meta, c *Change) error {
	if f != Table {
		return writeRecord(w, "sysctl_set", m, func(b []byte) []byte {
			b = appendBool(b, "dry_run", c.DryRun)
			b = append(appendKeepaliveFields(append(appendKey(b, "old", false), '{'), c.Old, true), '}')
			b = append(appendKeepaliveFields(append(appendKey(b, "new", false), '{'), c.New, true), '}')
			if c.PersistFile != "" {
				b = appendStr(b, "persist_file", c.PersistFile)
			}
			return b
		})
	}
	verb := "set"
	if c.DryRun {
		verb = "would set"
	}
	b := fmt.Appendf(nil, "netns %s: %s\n", m.NetNS, verb)
	tb := newTable("", "", "")
	tb.noHeader = true
	row := func(name string, o, n int64) {
		tb.cell("  " + name)
		if o == n {
			tb.cell(strconv.FormatInt(n, 10))
			tb.cell("(unchanged)")
		} else {
			tb.cell(strconv.FormatInt(o, 10) + " -> " + strconv.FormatInt(n, 10))
			tb.cell("")
		}
		tb.row(nil)
	}
	row("net.ipv4.tcp_keepalive_time", int64(c.Old.Time/time.Second), int64(c.New.Time/time.Second))
	row("net.ipv4.tcp_keepalive_intvl", int64(c.Old.Intvl/time.Second), int64(c.New.Intvl/time.Second))
	row("net.ipv4.tcp_keepalive_probes", int64(c.Old.Probes), int64(c.New.Probes))
	b = tb.flush(b)
	b = fmt.Appendf(b, "A dead idle peer is declared after %s (was %s).\n", Duration(c.New.DeadPeerDetect()), Duration(c.Old.DeadPeerDetect()))
	if c.PersistFile != "" {
		if c.DryRun {
			b = fmt.Appendf(b, "Would write %s:\n%s", c.PersistFile, c.PersistBody)
		} else {
			b = fmt.Appendf(b, "Persisted to %s (applies to the host at boot).\n", c.PersistFile)
		}
	}
	if c.DryRun {
		b = append(b, "Nothing was written (--dry-run).\n"...)
	} else {
		b = append(b, "Timers already pending expire as scheduled; sockets that set TCP_KEEPIDLE/INTVL/CNT keep their own values.\n"...)
	}
	return write(w, b)
}

// Recommendation is what sysctl recommend found, and did.
type Recommendation struct {
	sysctl.Recommendation
	// Current are the namespace's values now.
	Current sysctl.Keepalive
	// Applied says they were written; PersistFile says where they persist.
	Applied     bool
	PersistFile string
	// NetNSArg is the --netns value of the run, for the command line it
	// suggests; "" for the namespace tcpkeep runs in.
	NetNSArg string
}

// WriteRecommendation writes a "sysctl_recommend" record, or a table of the
// values now and recommended, the reason, and how to apply them.
func WriteRecommendation(w io.Writer, f Format, m Meta, r *Recommendation) error {
	if f != Table {
		return writeRecord(w, "sysctl_recommend", m, func(b []byte) []byte {
			b = appendKeepaliveFields(b, r.Keepalive, false)
			b = appendSec(b, "path_idle_timeout_s", r.PathIdleTimeout)
			b = appendStr(b, "path", pathKey(r.Path))
			b = appendBool(b, "path_default", pathIsDefault(r.Path))
			b = appendMS(b, "user_timeout_ms", r.UserTimeout)
			if r.Heartbeat > 0 {
				b = appendMS(b, "heartbeat_ms", r.Heartbeat)
			}
			b = appendStr(b, "reason", r.Reason)
			return appendBool(b, "applied", r.Applied)
		})
	}
	tb := newTable("TUNABLE (netns "+m.NetNS+")", "NOW", "RECOMMENDED")
	for _, v := range []struct {
		name     string
		now, rec int64
	}{
		{"net.ipv4.tcp_keepalive_time", int64(r.Current.Time / time.Second), int64(r.Time / time.Second)},
		{"net.ipv4.tcp_keepalive_intvl", int64(r.Current.Intvl / time.Second), int64(r.Intvl / time.Second)},
		{"net.ipv4.tcp_keepalive_probes", int64(r.Current.Probes), int64(r.Probes)},
	} {
		tb.cell(v.name)
		tb.cell(strconv.FormatInt(v.now, 10))
		tb.cell(strconv.FormatInt(v.rec, 10))
		tb.row(nil)
	}
	b := tb.flush(nil)
	b = append(append(b, r.Reason...), '\n')
	if note := pathNote(r.Path); note != "" {
		b = append(append(b, note...), '\n')
	}
	b = appendKeepaliveTimeline(b, r.Keepalive, r.PathIdleTimeout, pathFrom(r.Path))
	b = append(b, '\n')
	switch {
	case r.Applied && r.PersistFile != "":
		b = fmt.Appendf(b, "Applied, and persisted to %s.\n", r.PersistFile)
	case r.Applied:
		b = append(b, "Applied. Timers already pending expire as scheduled.\n"...)
	case r.Keepalive == r.Current:
		b = append(b, "The namespace already has these values.\n"...)
	default:
		b = fmt.Appendf(b, "Apply with: tcpkeep %ssysctl set --time %d --intvl %d --probes %d   (or add --apply; --persist for the next boot)\n",
			netnsArg(r.NetNSArg), r.Time/time.Second, r.Intvl/time.Second, r.Probes)
	}
	return write(w, b)
}

// netnsArg is "--netns NS " to name ns again on a suggested command line.
func netnsArg(ns string) string {
	if ns == "" {
		return ""
	}
	return "--netns " + ns + " "
}

func write(w io.Writer, b []byte) error {
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}
