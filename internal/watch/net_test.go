package watch

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/tcpkeep/tcpkeep/internal/audit"
	"github.com/tcpkeep/tcpkeep/internal/netns"
	"github.com/tcpkeep/tcpkeep/internal/testnet"
	"github.com/tcpkeep/tcpkeep/sysctl"
)

// TestNamespaceDeletedWhileWatching: three real namespaces, watched with their
// destroy broadcasts; the second is deleted (ip netns delete) while the
// engine runs: it is logged, its open findings resolve, and the engine goes on
// auditing the others, which a change in the third shows.
func TestNamespaceDeletedWhileWatching(t *testing.T) {
	testnet.RequireRoot(t)
	nss := testnet.NewNamespaces(t, 3) // fresh: tcp_keepalive_time 7200, a finding each
	var list []netns.Namespace
	for _, ns := range nss {
		n, err := netns.Describe(ns.NetNS())
		if err != nil {
			t.Fatal(err)
		}
		list = append(list, n)
	}
	rec := &recorder{}
	w := &world{t: t, rec: rec}
	cfg := Config{Interval: 100 * time.Millisecond, Audit: audit.DefaultConfig(sysctl.Tunables{}), Emit: rec.emit, Metrics: rec,
		Log: slog.New(slog.NewJSONHandler(w, nil)), Namespaces: func() ([]netns.Namespace, error) { return list, nil }}
	e := New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	var seen []string
	collect := func(want string) func() bool {
		return func() bool {
			seen = append(seen, rec.take()...)
			for _, s := range seen {
				if s == want {
					return true
				}
			}
			return false
		}
	}
	for _, ns := range nss {
		testnet.Wait(t, 10*time.Second, "the default keepalive time flagged in "+ns.Name, collect(ns.Name+" opened sysctl_keepalive_default 0"))
	}
	nss[1].Delete()
	testnet.Wait(t, 10*time.Second, "the deleted namespace's finding resolved", collect(nss[1].Name+" resolved sysctl_keepalive_default 0 cleared unknown"))
	if !strings.Contains(w.logged(), `"msg":"namespace is gone: skipped","netns":"`+nss[1].Name+`"`) {
		t.Errorf("the deletion is not logged:\n%s", w.logged())
	}
	nss[2].Sysctl("net/ipv4/tcp_keepalive_time", "60")
	testnet.Wait(t, 10*time.Second, "the third namespace still audited", collect(nss[2].Name+" resolved sysctl_keepalive_default 0 cleared unknown"))
	if n := rec.count("forget " + nss[1].Name); n != 1 {
		t.Errorf("the deleted namespace's series were forgotten %d times, want once", n)
	}
	if strings.Contains(w.logged(), "no destroy broadcasts") {
		t.Errorf("a subscription failed:\n%s", w.logged())
	}
	for _, s := range seen {
		if strings.HasPrefix(s, nss[0].Name+" resolved") {
			t.Errorf("the first namespace, untouched, had %q", s)
		}
	}
}
