package cli

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tcpkeep/tcpkeep/internal/testnet"
	"github.com/tcpkeep/tcpkeep/probe"
)

// TestProbeBusyServerExits1: a full server's busy answer is an error (exit 1, one
// stderr line that says busy), never a dead verdict (exit 2).
func TestProbeBusyServerExits1(t *testing.T) {
	ns := testnet.NewNS(t)
	l, err := probe.Listen(ns.NetNS(), "127.0.0.1:7077")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- (&probe.Server{MaxClients: 1}).Serve(ctx, l) }()
	defer func() {
		cancel()
		<-done
	}()
	holder, err := probe.Dial(ctx, ns.NetNS(), "127.0.0.1:7077", probe.SocketOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	if _, err := probe.NewPinger(holder).Ping(ctx, time.Second); err != nil {
		t.Fatal(err)
	}
	for _, o := range []string{"table", "ndjson"} {
		res := runBin(t, "--netns", ns.Name, "-o", o, "probe", "127.0.0.1:7077", "--count", "3", "--interval", "100ms")
		if res.code != 1 || !strings.HasPrefix(res.stderr, "tcpkeep: ") || strings.Count(res.stderr, "\n") != 1 ||
			!strings.Contains(res.stderr, "busy") || strings.Contains(res.stdout, "DEAD") || strings.Contains(res.stdout, "verdict") {
			t.Fatalf("-o %s against a full server: exit %d, stdout %q, stderr %q; want 1, no verdict, one line saying busy", o, res.code, res.stdout, res.stderr)
		}
		t.Logf("-o %s: %s", o, strings.TrimSpace(res.stderr))
	}
}
