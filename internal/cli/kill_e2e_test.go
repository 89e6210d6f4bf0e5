package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcpkeep/tcpkeep/internal/testnet"
)

// killRecords splits kill's ndjson output into its action records and its
// summary, which must come last.
func killRecords(t *testing.T, out, netns string) (acts []map[string]any, sum map[string]any) {
	t.Helper()
	for _, r := range records(t, out, netns) {
		switch r["type"] {
		case "action":
			if sum != nil {
				t.Fatalf("action after the summary: %v", r)
			}
			acts = append(acts, r)
		case "kill_summary":
			sum = r
		default:
			t.Fatalf("unexpected record %v", r)
		}
	}
	if sum == nil {
		t.Fatalf("no summary in:\n%s", out)
	}
	return acts, sum
}

func cookieOf(a map[string]any) string {
	s, _ := a["socket"].(map[string]any)
	c, _ := s["cookie"].(string)
	return c
}

// TestKillEndToEnd runs the built binary against a namespace with known
// sockets: dry run, filters, listeners, json, nothing selected, findings,
// --max-per-peer, and a caller without CAP_NET_ADMIN.
func TestKillEndToEnd(t *testing.T) {
	ns := testnet.NewNS(t)
	kill := func(args ...string) (string, string, int) {
		r := runBin(t, append([]string{"--netns", ns.Name, "kill"}, args...)...)
		return r.stdout, r.stderr, r.code
	}
	l := ns.Listen("127.0.0.1:7100")
	go acceptAll(l)
	cookies := map[string]bool{}
	for range 3 {
		c := ns.Dial("127.0.0.1:7100")
		cookies[sprintf16(testnet.Cookie(t, c))] = true
	}
	waitSockets := func(want int) {
		t.Helper()
		if !testnet.Poll(5*time.Second, func() bool { return ssCount(t, ns.Name) == want }) {
			t.Fatalf("%d sockets in the namespace, want %d", ssCount(t, ns.Name), want)
		}
	}
	waitSockets(7) // a listener, 3 clients, 3 accepted

	// 1. A dry run: the three clients would close; nothing does.
	out, errOut, code := kill("--dry-run", "--dport", "7100", "-o", "ndjson")
	acts, sum := killRecords(t, out, ns.Name)
	if code != 0 || errOut != "" || len(acts) != 3 {
		t.Fatalf("dry run: exit %d, %d actions, stderr %q:\n%s", code, len(acts), errOut, out)
	}
	for _, a := range acts {
		if a["result"] != "would_close" || a["reason"] != "filter" || !cookies[cookieOf(a)] {
			t.Errorf("dry run action %v, want would_close for filter on a client", a)
		}
		if s := a["socket"].(map[string]any); s["pid"] != nil {
			t.Errorf("socket record with a pid without -p: %v", s)
		}
	}
	if sum["selected"] != 3.0 || sum["closed"] != 0.0 || sum["dry_run"] != true || sum["stopped"] != false || sum["sockets"] != 3.0 {
		t.Errorf("dry run summary %v", sum)
	}
	waitSockets(7)

	// 2. --max-per-peer 1 (dry run): the accepted ends are one peer's three
	// connections to port 7100: two are surplus.
	out, _, code = kill("--dry-run", "--max-per-peer", "1", "-o", "ndjson")
	acts, _ = killRecords(t, out, ns.Name)
	if code != 0 || len(acts) != 2 {
		t.Fatalf("--max-per-peer 1: exit %d, %d actions:\n%s", code, len(acts), out)
	}
	for _, a := range acts {
		s := a["socket"].(map[string]any)
		if a["reason"] != "peer_limit_exceeded" || s["local"] != "127.0.0.1:7100" || !strings.Contains(a["message"].(string), "holds 3 connections") {
			t.Errorf("--max-per-peer action %v", a)
		}
	}

	// 3. A broad filter (all states, port 7100 local) closes the accepted
	// ends, never the listener.
	out, errOut, code = kill("--state", "all", "--sport", "7100", "-o", "ndjson", "-p")
	acts, sum = killRecords(t, out, ns.Name)
	if code != 0 || errOut != "" || len(acts) != 3 || sum["closed"] != 3.0 || sum["failed"] != 0.0 {
		t.Fatalf("--state all --sport 7100: exit %d stderr %q:\n%s", code, errOut, out)
	}
	for _, a := range acts {
		if s := a["socket"].(map[string]any); a["result"] != "closed" || s["state"] == "LISTEN" || s["pid"] == nil {
			t.Errorf("action %v, want a closed accepted connection with its owner", a)
		}
	}
	lsOut, _ := exec.Command("ip", "netns", "exec", ns.Name, "ss", "-tlnH").Output()
	if !strings.Contains(string(lsOut), "127.0.0.1:7100") {
		t.Fatalf("the listener did not survive a broad filter: %s", lsOut)
	}
	waitSockets(1) // the clients got a RST

	// 4. -o json, and the owner's next read fails with ECONNABORTED.
	c := ns.Dial("127.0.0.1:7100")
	waitSockets(3)
	out, _, code = kill("--dport", "7100", "-o", "json")
	var doc struct {
		Type    string           `json:"type"`
		DryRun  bool             `json:"dry_run"`
		Actions []map[string]any `json:"actions"`
		Summary map[string]any   `json:"summary"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("-o json: %v\n%s", err, out)
	}
	if code != 0 || doc.Type != "kill" || len(doc.Actions) != 1 || doc.Actions[0]["result"] != "closed" || doc.Summary["closed"] != 1.0 {
		t.Fatalf("-o json: exit %d: %+v", code, doc)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNABORTED) {
		t.Fatalf("owner's read after kill: %v, want ECONNABORTED", err)
	}

	// 5. Nothing selected: exit 0, and the table says so in one line.
	out, _, code = kill("--dport", "7100")
	if code != 0 || !strings.HasPrefix(out, "Nothing to close: ") || strings.Count(out, "\n") != 1 {
		t.Fatalf("nothing selected: exit %d:\n%s", code, out)
	}

	// 6. --finding: the client without keepalive goes once idle for --max-idle;
	// the one with keepalive, and the accepted ends (Go sets keepalive), stay.
	bare := ns.Dial("127.0.0.1:7100")
	kept := ns.Dial("127.0.0.1:7100", testnet.Keepalive(30*time.Second, 5*time.Second, 3))
	bareCookie := sprintf16(testnet.Cookie(t, bare))
	if !testnet.Poll(10*time.Second, func() bool {
		out, _, code = kill("--finding", "idle_no_keepalive", "--max-idle", "1s", "-o", "ndjson", "-p")
		acts, _ = killRecords(t, out, ns.Name)
		return len(acts) > 0
	}) {
		t.Fatalf("idle_no_keepalive selected nothing within 10s:\n%s", out)
	}
	if code != 0 || len(acts) != 1 || cookieOf(acts[0]) != bareCookie || acts[0]["reason"] != "idle_no_keepalive" || acts[0]["result"] != "closed" || !strings.Contains(fmt.Sprint(acts[0]["message"]), "(held by ") {
		t.Fatalf("--finding idle_no_keepalive -p: exit %d, actions %v; want only the client without keepalive, its owner named", code, acts)
	}
	kept.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := kept.Write([]byte("x")); err != nil {
		t.Fatalf("the keepalive client after kill: %v", err)
	}

	// 7. Without CAP_NET_ADMIN: one error line, one action, exit 1.
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Fatal("setpriv (util-linux) runs tcpkeep without CAP_NET_ADMIN")
	}
	ns.Dial("127.0.0.1:7100")
	cmd := exec.Command("setpriv", "--bounding-set", "-net_admin", "--inh-caps", "-net_admin", "--",
		tcpkeepBin, "--netns", ns.Name, "kill", "--dport", "7100", "-o", "ndjson")
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("without CAP_NET_ADMIN: %v, want exit 1\n%s%s", err, so.String(), se.String())
	}
	if strings.Count(se.String(), "\n") != 1 || !strings.Contains(se.String(), "CAP_NET_ADMIN") || !strings.Contains(se.String(), "nothing else was tried") {
		t.Errorf("without CAP_NET_ADMIN, stderr %q: want one line naming CAP_NET_ADMIN", se.String())
	}
	acts, sum = killRecords(t, so.String(), ns.Name)
	if len(acts) != 1 || acts[0]["result"] != "denied" || acts[0]["error"] == nil || sum["failed"] != 1.0 || sum["selected"] != 1.0 || sum["stopped"] != true {
		t.Errorf("without CAP_NET_ADMIN: actions %v summary %v, want one denied action", acts, sum)
	}
}
