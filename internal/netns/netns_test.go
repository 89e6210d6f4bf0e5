package netns_test

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/tcpkeep/tcpkeep/internal/netns"
	"github.com/tcpkeep/tcpkeep/internal/testnet"
)

func TestResolveSpellings(t *testing.T) {
	ns := testnet.NewNS(t)
	want, err := ns.NetNS().Inode()
	if err != nil {
		t.Fatal(err)
	}
	for _, spec := range []string{ns.Name, netns.RunDir + "/" + ns.Name} {
		got, err := netns.Resolve(spec)
		if err != nil {
			t.Fatalf("Resolve(%q): %v", spec, err)
		}
		if ino, _ := got.Inode(); ino != want || got.String() != spec {
			t.Fatalf("Resolve(%q) = %+v (inode %d), want inode %d named as given", spec, got, ino, want)
		}
	}
	self, err := netns.Resolve(fmt.Sprintf("pid:%d", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	if a, _ := self.Inode(); a != mustInode(t, netns.Self()) {
		t.Fatal("pid:OWN-PID is not our namespace")
	}
}

func mustInode(t *testing.T, ns netns.NS) uint64 {
	t.Helper()
	n, err := ns.Inode()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestResolveSaysWhatIsWrong(t *testing.T) {
	for _, tc := range []struct{ spec, says string }{
		{"tk-no-such", "ip netns list"},
		{"pid:0", "positive process ID"},
		{"pid:abc", "positive process ID"},
		{"pid:999999999", "is the process running"},
		{"/etc/hostname", "not a network namespace"},
		{"/no/such/file", "does not exist"},
		{"..", "not a namespace name"},
	} {
		_, err := netns.Resolve(tc.spec)
		if err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("Resolve(%q) = %v, want an error saying %q", tc.spec, err, tc.says)
		}
	}
	if _, err := netns.Resolve("tk-no-such"); !errors.Is(err, netns.ErrNotExist) {
		t.Errorf("a missing namespace is not ErrNotExist: %v", err)
	}
}

func TestDoEntersAndComesBack(t *testing.T) {
	ns := testnet.NewNS(t)
	before := mustInode(t, netns.Self())
	var inside uint64
	if err := ns.NetNS().Do(func() error {
		inside = mustInode(t, netns.Self())
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if inside != mustInode(t, ns.NetNS()) {
		t.Fatal("fn did not run inside the namespace")
	}
	// Every thread is back: run many goroutines and check where they are.
	for range 50 {
		if got := mustInode(t, netns.Self()); got != before {
			t.Fatalf("a thread stayed in another namespace: %d, want %d", got, before)
		}
	}
	want := errors.New("fn failed")
	if err := ns.NetNS().Do(func() error { return want }); !errors.Is(err, want) {
		t.Fatalf("Do = %v, want fn's error", err)
	}
}

func TestIsHost(t *testing.T) {
	ns := testnet.NewNS(t)
	if h, err := netns.Self().IsHost(); err != nil || !h {
		t.Fatalf("our own namespace: IsHost = %v, %v; want true", h, err)
	}
	if h, err := ns.NetNS().IsHost(); err != nil || h {
		t.Fatalf("a throwaway namespace: IsHost = %v, %v; want false", h, err)
	}
}
