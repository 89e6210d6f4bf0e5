package sysctl_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tcpkeep/tcpkeep/sysctl"
)

// TestApplyAllOrNothing: Apply writes the values and the file; when the file
// cannot be written, the values are put back and the error says so.
func TestApplyAllOrNothing(t *testing.T) {
	k := sysctl.Keepalive{Time: 300 * time.Second, Intvl: 30 * time.Second, Probes: 5}
	p := tree(t, defaults)
	file := filepath.Join(t.TempDir(), "90-tcpkeep.conf")
	old, err := p.Apply(sysctl.Change{Keepalive: k, PersistFile: file, Header: "A test."})
	if err != nil || old != sysctl.Defaults {
		t.Fatalf("Apply = %+v, %v; want the defaults replaced", old, err)
	}
	if got, _ := p.Read(); got.Keepalive != k {
		t.Fatalf("values %+v, want %+v", got.Keepalive, k)
	}
	if b, err := os.ReadFile(file); err != nil || !strings.Contains(string(b), "# A test.\nnet.ipv4.tcp_keepalive_time = 300\n") {
		t.Fatalf("file %q, %v", b, err)
	}

	p = tree(t, defaults)
	_, err = p.Apply(sysctl.Change{Keepalive: k, PersistFile: filepath.Join(t.TempDir(), "no-such-dir", "x.conf")})
	if err == nil || !strings.Contains(err.Error(), "the live values were restored, nothing changed") {
		t.Fatalf("a failed persist: %v", err)
	}
	if got, _ := p.Read(); got.Keepalive != sysctl.Defaults {
		t.Fatalf("after a failed persist the values are %+v, want the old ones", got.Keepalive)
	}
}
