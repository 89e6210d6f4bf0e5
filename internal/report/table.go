package report

import "unicode/utf8"

// The window a table measures before it prints its first line: enough rows to
// size the columns for most runs, bounded in memory.
const (
	windowRows  = 1000
	windowBytes = 128 << 10
)

// table lays out rows in aligned columns as they stream in, without holding
// them all. It keeps a bounded window of rows, sizes each column for the
// widest cell there (or its head), and prints the header and the window. A
// later row with a cell wider than its column widens it and prints the header
// again above itself, so every block of rows lines up under its own header,
// whatever the contents. The last column is never padded: no line ends in
// spaces. Widths count runes (a process name may be UTF-8). Building a row
// allocates nothing once the buffers have grown.
type table struct {
	heads  []string
	widths []int
	// headless: no header (and nothing at all) until the first row.
	headless bool
	// noHeader: rows only.
	noHeader bool

	c    []byte // the row being built: its cells back to back
	ends []int  // where each cell of c ends
	note []byte // whole lines printed under the row being built

	win     []byte // rows not laid out yet: cells, then note
	winEnds []int  // per row: the cells' ends, then the note's end
	rows    int
	out     bool // the window has been laid out
}

func newTable(heads ...string) *table {
	t := &table{heads: heads, widths: make([]int, len(heads))}
	for i, h := range heads {
		t.widths[i] = utf8.RuneCountInString(h)
	}
	return t
}

// end closes the current cell.
func (t *table) end() { t.ends = append(t.ends, len(t.c)) }

// cell adds a cell.
func (t *table) cell(s string) {
	t.c = append(t.c, s...)
	t.end()
}

// row finishes the row being built and appends to dst what can be laid out.
func (t *table) row(dst []byte) []byte {
	if !t.out {
		start := len(t.win)
		t.win = append(t.win, t.c...)
		for _, e := range t.ends {
			t.winEnds = append(t.winEnds, start+e)
		}
		t.win = append(t.win, t.note...)
		t.winEnds = append(t.winEnds, len(t.win))
		t.rows++
		t.reset()
		if t.rows >= windowRows || len(t.win) >= windowBytes {
			dst = t.flush(dst)
		}
		return dst
	}
	if t.widen(t.c, 0, t.ends) && !t.noHeader {
		dst = t.appendHeader(dst)
	}
	dst = t.appendLine(dst, t.c, t.ends, 0)
	dst = append(dst, t.note...)
	t.rows++
	t.reset()
	return dst
}

func (t *table) reset() { t.c, t.ends, t.note = t.c[:0], t.ends[:0], t.note[:0] }

// flush lays out the window: the header, sized for it, then its rows.
func (t *table) flush(dst []byte) []byte {
	if t.out {
		return dst
	}
	t.out = true
	n := len(t.heads) + 1 // per row: the cells' ends, then the note's end
	start := func(r int) int {
		if r == 0 {
			return 0
		}
		return t.winEnds[r*n-1]
	}
	for r := 0; r < t.rows; r++ {
		t.widen(t.win, start(r), t.winEnds[r*n:r*n+n-1])
	}
	if !t.noHeader && (t.rows > 0 || !t.headless) {
		dst = t.appendHeader(dst)
	}
	for r := 0; r < t.rows; r++ {
		e := t.winEnds[r*n : (r+1)*n]
		dst = t.appendLine(dst, t.win, e[:n-1], start(r))
		dst = append(dst, t.win[e[n-2]:e[n-1]]...)
	}
	t.win, t.winEnds = nil, nil
	return dst
}

// widen grows the columns for a row whose cells are in b from start, ending at
// ends, and reports whether any grew. The last column is never padded, so its
// width does not count.
func (t *table) widen(b []byte, start int, ends []int) bool {
	wider := false
	for i := 0; i < len(ends)-1; i++ {
		if w := utf8.RuneCount(b[start:ends[i]]); w > t.widths[i] {
			t.widths[i], wider = w, true
		}
		start = ends[i]
	}
	return wider
}

func (t *table) appendHeader(dst []byte) []byte {
	for i, h := range t.heads {
		dst = append(dst, h...)
		if i < len(t.heads)-1 {
			dst = pad(dst, t.widths[i]-utf8.RuneCountInString(h)+2)
		}
	}
	return append(dst, '\n')
}

// appendLine lays out one row whose cells are in b from start, ending at ends.
// Trailing empty cells are left out, and the last cell written is not padded.
func (t *table) appendLine(dst, b []byte, ends []int, start int) []byte {
	last := len(ends) - 1
	for last > 0 && ends[last] == ends[last-1] {
		last--
	}
	for i, e := range ends[:last+1] {
		cell := b[start:e]
		start = e
		dst = append(dst, cell...)
		if i < last {
			dst = pad(dst, t.widths[i]-utf8.RuneCount(cell)+2)
		}
	}
	return append(dst, '\n')
}

func pad(dst []byte, n int) []byte {
	for ; n > 0; n-- {
		dst = append(dst, ' ')
	}
	return dst
}
