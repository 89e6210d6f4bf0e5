// Package report renders every record tcpkeep writes: sockets, findings,
// actions, tunables, changes and recommendations of them, heartbeats, summaries
// and the version; for people (table), for programs (json, ndjson) and for
// Prometheus (prom, the node_exporter textfile format, from the metrics'
// definitions in Metrics) and for Nagios and Icinga (nagios). It is also where
// findings are put in words: the libraries return facts, and the sentences here
// name the flags and write the command lines that act on them.
//
// One schema (docs/output.md): every ndjson record and every JSON document
// starts with the header: type, ts, host and netns, then where they are known
// netns_inode, container_id, pod_uid and netns_comm; a record nested in another
// (a socket in a finding, a beat in a verdict) has its own keys without the
// header; one type
// has one key set in every command; keys are snake_case, durations integers with
// the unit in the key, and what the kernel does not know is absent. Output is
// written whole records at a time, so a run that stops midway (an error, a
// signal) never leaves half a record.
package report

import "time"

// Format is an output format.
type Format string

// Formats.
const (
	Table  Format = "table"
	JSON   Format = "json"
	NDJSON Format = "ndjson"
	Prom   Format = "prom"
	// Nagios is the monitoring plugin's status line with performance data.
	Nagios Format = "nagios"
)

// Meta is what every record carries besides its own fields.
type Meta struct {
	// TS is when the run started, written as RFC 3339 in UTC.
	TS time.Time
	// Host is the host name.
	Host string
	// NetNS names the namespace the records are about.
	NetNS string
	// NetNSInode is the namespace's inode, its identity (netns_inode); 0 where
	// it is not known.
	NetNSInode uint64
	// ContainerID, PodUID and NetNSComm say whose namespace it is, where known
	// (netns.Attribution and the command of a process in it).
	ContainerID, PodUID, NetNSComm string
}

// AppendHeader appends the keys every top-level record starts with, without
// braces: `"type":"socket","ts":...`: type, ts, host and netns, then
// netns_inode, container_id, pod_uid and netns_comm where they are known.
func AppendHeader(dst []byte, typ string, m Meta) []byte {
	dst = appendKey(dst, "type", true)
	dst = appendString(dst, typ)
	dst = appendKey(dst, "ts", false)
	dst = append(dst, '"')
	dst = m.TS.UTC().AppendFormat(dst, time.RFC3339) // no escaping needed, no allocation
	dst = append(dst, '"')
	dst = appendStr(dst, "host", m.Host)
	dst = appendStr(dst, "netns", m.NetNS)
	if m.NetNSInode != 0 {
		dst = appendUint(dst, "netns_inode", m.NetNSInode)
	}
	for _, kv := range [...][2]string{{"container_id", m.ContainerID}, {"pod_uid", m.PodUID}, {"netns_comm", m.NetNSComm}} {
		if kv[1] != "" {
			dst = appendStr(dst, kv[0], kv[1])
		}
	}
	return dst
}
