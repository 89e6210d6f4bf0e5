package netns

import (
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary --netns spellings to the parser (which touches no
// file): it never panics, and what it accepts names a path.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"", "web", "pid:1", "pid:", "/proc/self/ns/net", "..", "a/b", "pid:-1", "pid:99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ns, err := parse(s)
		if err != nil {
			return
		}
		if ns.Path == "" {
			t.Fatalf("parse(%q) gave no path", s)
		}
		if s != "" && !strings.Contains(s, "/") && !strings.HasPrefix(s, "pid:") && !strings.HasPrefix(ns.Path, RunDir+"/") {
			t.Fatalf("parse(%q) = %s: a name must stay under %s", s, ns.Path, RunDir)
		}
	})
}
