package netns

import (
	"os"
	"path/filepath"
	"testing"
)

// Fixtures read from this kernel's /proc: kthreadd (PID 2), and two processes.
func TestStatIsKthread(t *testing.T) {
	for _, tc := range []struct {
		file string
		want bool
	}{{"kthreadd", true}, {"cp", false}, {"sh", false}} {
		b, err := os.ReadFile(filepath.Join("testdata", "stat", tc.file+".txt"))
		if err != nil {
			t.Fatal(err)
		}
		if got := statIsKthread(b); got != tc.want {
			t.Errorf("%s: statIsKthread = %v, want %v", tc.file, got, tc.want)
		}
	}
	for _, s := range []string{"", ")", "2 (a) S 0 0 0 0 -1", "2 (k) S 0 0 0 0 -1 notanumber"} {
		if statIsKthread([]byte(s)) {
			t.Errorf("statIsKthread(%q) = true", s)
		}
	}
	if !statIsKthread([]byte("2 (a) b) S 0 0 0 0 -1 2129984 0")) {
		t.Error("a command with ') ' in it hides the flags")
	}
}

func FuzzStatIsKthread(f *testing.F) {
	for _, n := range []string{"kthreadd", "cp", "sh"} {
		b, err := os.ReadFile(filepath.Join("testdata", "stat", n+".txt"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) { statIsKthread(b) })
}
