package report

import "time"

// Timeline is the life of an idle keepalive connection whose peer dies right
// after its last answer, as sysctl.Keepalive and sysctl.Socket model it: the
// first probe a cadence after that answer, one every interval after it, the
// drop, and where the path forgets an idle flow.
type Timeline struct {
	// FirstProbe is when the first unanswered probe goes out: the cadence,
	// max(time, intvl).
	FirstProbe time.Duration
	// Intvl is the time between probes; Probes how many go out before the drop.
	Intvl  time.Duration
	Probes int
	// Drop is when the kernel drops the connection.
	Drop time.Duration
	// Path is when the path forgets an idle flow; 0 when unknown.
	Path time.Duration
	// PathName says whose timeout Path is ("aws-nlb's default").
	PathName string
}

// timelineWidth is how many columns the drawn line spans.
const timelineWidth = 60

// timelineUnits are the scales a timeline is drawn at: round numbers.
var timelineUnits = []time.Duration{
	10 * time.Millisecond, 20 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond,
	200 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second,
	5 * time.Second, 10 * time.Second, 15 * time.Second, 30 * time.Second, time.Minute, 2 * time.Minute,
	5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute, time.Hour, 2 * time.Hour,
	6 * time.Hour, 12 * time.Hour, 24 * time.Hour,
}

// timelineUnit is the smallest round unit that fits end in the line.
func timelineUnit(end time.Duration) time.Duration {
	for _, u := range timelineUnits {
		if end/u < timelineWidth {
			return u
		}
	}
	return max(end/(timelineWidth-1)+1, time.Millisecond)
}

// AppendTimeline draws tl to scale on one line, with a key under it:
//
//	|--o!-o--o--o--o--o--o--o--o--X
//	| last answer   o probe: the first after 3s, then every 3s   X dropped at 30s
//	! path forgets the flow at 4s (given)   1 column = 1s
//
// A path that forgets the flow after more than twice the drop is not drawn but
// said in the key. Probes the scale puts in one column share it.
func AppendTimeline(dst []byte, tl Timeline) []byte {
	end := tl.Drop
	drawPath := tl.Path > 0 && tl.Path <= 2*tl.Drop
	if drawPath {
		end = max(end, tl.Path)
	}
	unit := timelineUnit(end)
	col := func(d time.Duration) int { return min(int(d/unit), timelineWidth-1) }
	var line [timelineWidth]byte
	last := col(end)
	for i := range line[:last+1] {
		line[i] = '-'
	}
	line[0] = '|'
	for j := range tl.Probes {
		at := tl.FirstProbe + time.Duration(j)*tl.Intvl
		if at < tl.Drop {
			line[max(col(at), 1)] = 'o'
		}
	}
	if drawPath {
		line[max(col(tl.Path), 1)] = '!'
	}
	line[max(col(tl.Drop), 1)] = 'X'
	dst = append(dst, "  "...)
	dst = append(dst, line[:last+1]...)
	dst = append(dst, "\n  | last answer   o probe: the first after "...)
	dst = AppendDuration(dst, tl.FirstProbe)
	if tl.Probes > 1 {
		dst = append(dst, ", then every "...)
		dst = AppendDuration(dst, tl.Intvl)
	}
	dst = append(dst, "   X dropped at "...)
	dst = AppendDuration(dst, tl.Drop)
	dst = append(dst, "\n  "...)
	if tl.Path > 0 {
		if drawPath {
			dst = append(dst, "! path forgets the flow at "...)
		} else {
			dst = append(dst, "the path forgets the flow only at "...)
		}
		dst = AppendDuration(dst, tl.Path)
		if tl.PathName != "" {
			dst = append(dst, " ("...)
			dst = append(dst, tl.PathName...)
			dst = append(dst, ')')
		}
		dst = append(dst, "   "...)
	}
	dst = append(dst, "1 column = "...)
	dst = AppendDuration(dst, unit)
	dst = append(dst, '\n')
	if tl.Path > 0 && tl.FirstProbe >= tl.Path {
		dst = append(dst, "  The first probe comes after the path has forgotten the flow: the connection dies at the middlebox.\n"...)
	}
	return dst
}
