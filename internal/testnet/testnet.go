// Package testnet builds real network topologies for tests: throwaway network
// namespaces, veth pairs between them, and sockets inside them. Everything a test
// builds is removed by t.Cleanup.
//
// Tests that need root call RequireRoot first: it skips without root, and fails
// instead when TCPKEEP_REQUIRE_ROOT=1, as in CI, so privileged tests always run there.
package testnet

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"runtime"
	"testing"

	vnl "github.com/vishvananda/netlink"
	vns "github.com/vishvananda/netns"

	"github.com/tcpkeep/tcpkeep/internal/netns"
)

// RequireRoot skips t unless the process can build namespaces (it runs as root),
// or fails it when TCPKEEP_REQUIRE_ROOT=1 says the privileged tests must run.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("TCPKEEP_REQUIRE_ROOT") == "1" {
		t.Fatal("this test needs root and TCPKEEP_REQUIRE_ROOT=1 forbids skipping it: run as root")
	}
	t.Skip("needs root (network namespaces, veth pairs)")
}

// NS is a throwaway named network namespace, registered under /run/netns like
// `ip netns add` does, with loopback up.
type NS struct {
	// Name is the name under /run/netns, usable as tcpkeep's --netns value.
	Name string
	t    testing.TB
}

// NewNS creates a namespace that lives until the test ends.
func NewNS(t testing.TB) *NS {
	t.Helper()
	RequireRoot(t)
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	name := "tk-" + hex.EncodeToString(b[:])
	err := onLockedThread(func() error {
		orig, err := vns.Get()
		if err != nil {
			return err
		}
		defer orig.Close()
		h, err := vns.NewNamed(name)
		if err != nil {
			return fmt.Errorf("create netns %s: %w", name, err)
		}
		h.Close()
		return vns.Set(orig)
	})
	if err != nil {
		t.Fatal(err)
	}
	ns := &NS{Name: name, t: t}
	t.Cleanup(func() {
		if err := vns.DeleteNamed(name); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Errorf("remove netns %s: %v", name, err)
		}
	})
	ns.Do(func() error {
		lo, err := vnl.LinkByName("lo")
		if err != nil {
			return err
		}
		return vnl.LinkSetUp(lo)
	})
	return ns
}

// onLockedThread runs fn on a locked thread that dies afterwards, so a namespace
// change fn makes and fails to undo never leaks to other goroutines.
func onLockedThread(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		errc <- fn()
	}()
	return <-errc
}

// NetNS is the namespace as tcpkeep's own code names it.
func (ns *NS) NetNS() netns.NS {
	return netns.NS{Spec: ns.Name, Path: netns.RunDir + "/" + ns.Name}
}

// Do runs fn inside the namespace and fails the test if fn fails. Sockets and
// /proc/sys/net files made or opened in fn belong to this namespace.
func (ns *NS) Do(fn func() error) {
	ns.t.Helper()
	if err := ns.NetNS().Do(fn); err != nil {
		ns.t.Fatalf("in netns %s: %v", ns.Name, err)
	}
}

// Sysctl writes a /proc/sys value (path relative to /proc/sys, with slashes) in the
// namespace.
func (ns *NS) Sysctl(path, value string) {
	ns.t.Helper()
	ns.Do(func() error {
		return os.WriteFile("/proc/sys/"+path, []byte(value), 0)
	})
}

// ReadSysctl reads a /proc/sys value in the namespace, without the newline.
func (ns *NS) ReadSysctl(path string) string {
	ns.t.Helper()
	var v string
	ns.Do(func() error {
		b, err := os.ReadFile("/proc/sys/" + path)
		if len(b) > 0 && b[len(b)-1] == '\n' {
			b = b[:len(b)-1]
		}
		v = string(b)
		return err
	})
	return v
}

// handle returns a vishvananda netlink handle operating inside ns.
func (ns *NS) handle() *vnl.Handle {
	ns.t.Helper()
	h, err := vns.GetFromName(ns.Name)
	if err != nil {
		ns.t.Fatalf("open netns %s: %v", ns.Name, err)
	}
	defer h.Close()
	nh, err := vnl.NewHandleAt(h)
	if err != nil {
		ns.t.Fatalf("netlink handle in %s: %v", ns.Name, err)
	}
	ns.t.Cleanup(nh.Close)
	return nh
}

// Fd opens the namespace file for APIs that take a namespace descriptor.
func (ns *NS) Fd() int {
	ns.t.Helper()
	f, err := os.Open(netns.RunDir + "/" + ns.Name)
	if err != nil {
		ns.t.Fatal(err)
	}
	ns.t.Cleanup(func() { f.Close() })
	return int(f.Fd())
}
