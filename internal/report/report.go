// Package report renders tcpkeep's records for people (table), for programs (json,
// ndjson) and for Prometheus (the node_exporter textfile format).
//
// The schema is DESIGN.md's and README's: snake_case keys, durations as integers
// with the unit in the key, every ndjson record with type, ts, host and netns.
package report

import "time"

// Meta is what every ndjson record carries besides its own fields.
type Meta struct {
	// TS is when the run started, written as RFC 3339 in UTC.
	TS time.Time
	// Host is the host name.
	Host string
	// NetNS names the namespace the records are about.
	NetNS string
}

// TSString is TS as records write it.
func (m Meta) TSString() string { return m.TS.UTC().Format(time.RFC3339) }
