package report

import (
	"strings"
	"testing"
	"time"
)

func TestTimeline(t *testing.T) {
	s := time.Second
	for _, tc := range []struct {
		name string
		tl   Timeline
		line string   // the drawn line
		key  []string // phrases of the key
	}{
		{"recommended 3/3/9 behind a 4 s path", Timeline{FirstProbe: 3 * s, Intvl: 3 * s, Probes: 9, Drop: 30 * s, Path: 4 * s, PathName: "given"},
			"  |--o!-o--o--o--o--o--o--o--o--X", []string{"the first after 3s, then every 3s", "X dropped at 30s", "! path forgets the flow at 4s (given)", "1 column = 1s"}},
		{"3/9/3 behind a 4 s path: the first probe comes too late", Timeline{FirstProbe: 9 * s, Intvl: 9 * s, Probes: 3, Drop: 36 * s, Path: 4 * s},
			"  |---!----o--------o--------o--------X", []string{"the first after 9s, then every 9s", "dies at the middlebox"}},
		{"a path far beyond the drop is said, not drawn", Timeline{FirstProbe: 7200 * s, Intvl: 75 * s, Probes: 9, Drop: 7875 * s, Path: 432000 * s, PathName: "local conntrack"},
			"", []string{"the path forgets the flow only at 5d (local conntrack)", "X dropped at 2h11m"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := string(AppendTimeline(nil, tc.tl))
			lines := strings.Split(out, "\n")
			if len(lines[0]) > 2+timelineWidth {
				t.Errorf("line %d columns wide, want at most %d", len(lines[0])-2, timelineWidth)
			}
			if tc.line != "" && lines[0] != tc.line {
				t.Errorf("drawn\n%s\nwant\n%s", lines[0], tc.line)
			}
			if strings.Count(lines[0], "X") != 1 || strings.Count(lines[0], "|") != 1 {
				t.Errorf("line %q: want one start and one drop", lines[0])
			}
			for _, k := range tc.key {
				if !strings.Contains(out, k) {
					t.Errorf("timeline lacks %q:\n%s", k, out)
				}
			}
		})
	}
}
