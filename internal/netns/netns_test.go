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

// TestResolveSpellings: a path and pid:PID name our own namespace, as given,
// without privilege.
func TestResolveSpellings(t *testing.T) {
	want := mustInode(t, netns.Self())
	for _, spec := range []string{fmt.Sprintf("pid:%d", os.Getpid()), fmt.Sprintf("/proc/%d/ns/net", os.Getpid()), "/proc/self/ns/net"} {
		got, err := netns.Resolve(spec)
		if err != nil {
			t.Fatalf("Resolve(%q): %v", spec, err)
		}
		if ino, _ := got.Inode(); ino != want || got.String() != spec {
			t.Fatalf("Resolve(%q) = %+v (inode %d), want inode %d named as given", spec, got, ino, want)
		}
	}
	if ns, err := netns.Resolve(""); err != nil || ns.String() != "self" {
		t.Fatalf(`Resolve("") = %+v, %v; want the namespace tcpkeep runs in, "self"`, ns, err)
	}
}

// TestResolveNames: a name under /run/netns, and its path, name the namespace
// `ip netns add` made.
func TestResolveNames(t *testing.T) {
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
	for _, tc := range []struct {
		spec, says string
		is         error
	}{
		{"tk-no-such", "/run/netns/tk-no-such does not exist", netns.ErrNotExist},
		{"pid:0", "positive process ID", netns.ErrSpelling},
		{"pid:abc", "positive process ID", netns.ErrSpelling},
		{"pid:999999999", "/proc/999999999/ns/net does not exist", netns.ErrNotExist},
		{"/etc/hostname", "not a network namespace", netns.ErrNotNetNS},
		{"/no/such/file", "does not exist", netns.ErrNotExist},
		{"..", "not a namespace name", netns.ErrSpelling},
	} {
		_, err := netns.Resolve(tc.spec)
		if err == nil || !strings.Contains(err.Error(), tc.says) || !errors.Is(err, tc.is) {
			t.Errorf("Resolve(%q) = %v, want %v saying %q", tc.spec, err, tc.is, tc.says)
		}
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
