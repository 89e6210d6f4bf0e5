package report

import (
	"fmt"
	"io"

	"github.com/tcpkeep/tcpkeep/internal/watch"
)

// EventWriter writes tcpkeep watch's events as ndjson, each line written as
// it comes (a log pipeline reads them live): an opened or resolved finding is
// a "finding" record with "event" (opened or resolved), and for resolved,
// "how" (closed, cleared, killed), "end" (how the connection ended, where
// known) and "open_ms" (how long it was open); a socket the agent's kill
// handled is an "action" record, as tcpkeep kill writes it.
type EventWriter struct {
	w     io.Writer
	host  string
	words Words
	buf   []byte
}

// NewEventWriter writes events to w; host is every record's host, words word
// the findings.
func NewEventWriter(w io.Writer, host string, words Words) *EventWriter {
	return &EventWriter{w: w, host: host, words: words, buf: make([]byte, 0, 4096)}
}

// Event writes one event.
func (ew *EventWriter) Event(ev *watch.Event) error {
	n := &ev.Namespace
	m := Meta{TS: ev.Time, Host: ew.host, NetNS: ev.NetNS, NetNSInode: n.Ino, ContainerID: n.ContainerID, PodUID: n.PodUID, NetNSComm: n.Comm}
	words := ew.words
	if !n.Self {
		words.NetNS = ev.NetNS // the command lines messages suggest name it
	}
	b := append(ew.buf[:0], '{')
	switch ev.Kind {
	case watch.Opened, watch.Resolved:
		b = AppendHeader(b, "finding", m)
		b = appendFindingFields(b, ev.Finding, words, false)
		if ev.Kind == watch.Opened {
			b = appendStr(b, "event", "opened")
			break
		}
		b = appendStr(b, "event", "resolved")
		b = appendStr(b, "how", ev.How.String())
		if ev.End != 0 {
			b = appendStr(b, "end", ev.End.String())
		}
		b = appendMS(b, "open_ms", ev.Open)
	case watch.Acted:
		b = AppendHeader(b, "action", m)
		msg := ""
		if ev.Action.Finding != nil {
			msg = words.Message(ev.Action.Finding)
		}
		b = appendActionFields(b, ev.Action, msg, false)
	default:
		return fmt.Errorf("event of unknown kind %d", ev.Kind)
	}
	b = append(b, '}', '\n')
	ew.buf = b
	if _, err := ew.w.Write(b); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}
