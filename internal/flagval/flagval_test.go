package flagval

import (
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func TestValues(t *testing.T) {
	var d, a, sec time.Duration
	var n int
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	Duration(fs, &d, "d", "")
	AtLeast(fs, &a, time.Second, "a", "")
	Seconds(fs, &sec, 10*time.Second, "s", "")
	Count(fs, &n, 1, 5, "n", "")
	for _, tc := range []struct {
		flag, v string
		ok      bool
	}{
		{"d", "90", true}, {"d", "1h30m", true}, {"d", "5 minutes", false},
		{"a", "1s", true}, {"a", "999ms", false},
		{"s", "10", true}, {"s", "11", false}, {"s", "1.5s", false},
		{"n", "5", true}, {"n", "0", false}, {"n", "+3", false}, {"n", "x", false},
	} {
		if err := fs.Set(tc.flag, tc.v); (err == nil) != tc.ok {
			t.Errorf("--%s %q: %v, want ok %v", tc.flag, tc.v, err, tc.ok)
		}
	}
	if d != 90*time.Minute || a != time.Second || sec != 10*time.Second || n != 5 {
		t.Errorf("values %v %v %v %d: a refused value changed one", d, a, sec, n)
	}
	if got := fs.Lookup("d").Value.String(); got != "1h30m" {
		t.Errorf("shown as %q", got)
	}
}
