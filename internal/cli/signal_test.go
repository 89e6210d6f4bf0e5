package cli

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcpkeep/tcpkeep/internal/testnet"
)

// TestSignalMidDump sends SIGINT or SIGTERM to the binary at several points of
// the dump of a namespace holding thousands of sockets, in every format: the
// output is whole records, ends with a summary that says whether it was
// interrupted, and the exit code agrees (130 when it was).
//
// The points: as soon as the output begins, after 64 KiB and after 1 MiB of it
// (the test stops reading, so the command blocks in write with a pipe full of
// records, and the signal lands mid-dump), and, for formats that write only at
// the end (audit's table and prom), once the command has opened its sock_diag
// socket: its handler is in place, its dump about to start.
func TestSignalMidDump(t *testing.T) {
	ns := testnet.NewNS(t)
	testnet.Many(t, ns, 6000)
	type point struct {
		name  string
		bytes int // read this much output first; 0: wait for the netlink socket
	}
	streaming := []point{{"first output", 1}, {"64 KiB", 64 << 10}, {"1 MiB", 1 << 20}}
	atDial := []point{{"dump starting", 0}}
	interrupted, runs := 0, 0
	for _, tc := range []struct {
		args   []string
		format string
		points []point
	}{
		{[]string{"conns"}, "table", streaming},
		{[]string{"conns"}, "json", streaming},
		{[]string{"conns"}, "ndjson", streaming},
		{[]string{"audit", "--idle-limit", "1ms"}, "json", streaming},
		{[]string{"audit", "--idle-limit", "1ms"}, "ndjson", streaming},
		{[]string{"audit", "--idle-limit", "1ms"}, "table", atDial},
		{[]string{"audit", "--idle-limit", "1ms"}, "prom", atDial},
		{[]string{"kill", "--dry-run", "--state", "established"}, "table", streaming},
		{[]string{"kill", "--dry-run", "--state", "established"}, "json", streaming},
		{[]string{"kill", "--dry-run", "--state", "established"}, "ndjson", streaming},
	} {
		for i, p := range tc.points {
			sig := syscall.SIGINT
			if i%2 == 1 {
				sig = syscall.SIGTERM
			}
			where := strings.Join(tc.args, " ") + " -o " + tc.format + ", " + sig.String() + " at " + p.name
			runs++
			out, code := interrupt(t, append([]string{"--netns", ns.Name, "-o", tc.format}, tc.args...), p.bytes, sig)
			if code == exitInterrupted {
				interrupted++
			} else if code != 0 && !(tc.args[0] == "audit" && code <= 2) {
				t.Errorf("%s: exit %d, want 130 or the command's own", where, code)
			}
			wholeOutput(t, where, tc.format, out, code == exitInterrupted)
			if tc.format == "prom" {
				promtool(t, []byte(out))
			}
		}
	}
	t.Logf("%d of %d runs interrupted mid-dump", interrupted, runs)
	if interrupted < 20 {
		t.Errorf("only %d runs were interrupted mid-dump: the test no longer tests that", interrupted)
	}
}

// interrupt runs tcpkeep, reads skip bytes of its output (or, with skip 0,
// waits until it has a socket open), sends sig, reads the rest and returns the
// whole output and the exit code.
func interrupt(t *testing.T, args []string, skip int, sig syscall.Signal) (string, int) {
	t.Helper()
	cmd := exec.Command(tcpkeepBin, args...)
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReaderSize(pipe, 1)
	var out strings.Builder
	if skip > 0 {
		if _, err := io.CopyN(&out, r, int64(skip)); err != nil && err != io.EOF {
			t.Fatal(err)
		}
	} else if !testnet.Poll(5*time.Second, func() bool { return hasSocket(cmd.Process.Pid) }) {
		t.Fatalf("tcpkeep %v opened no socket", args)
	}
	cmd.Process.Signal(sig) // by PID: the process this test started
	if _, err := io.Copy(&out, r); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	code := cmd.ProcessState.ExitCode()
	if code < 0 {
		t.Fatalf("tcpkeep %v died by the signal (%v): no handler was in place", args, err)
	}
	if code == exitInterrupted && !strings.Contains(stderr.String(), "interrupted") {
		t.Errorf("exit 130, stderr %q: want a line saying it was interrupted", stderr.String())
	}
	return out.String(), code
}

// hasSocket says whether process pid holds a socket.
func hasSocket(pid int) bool {
	dir := filepath.Join("/proc", strconv.Itoa(pid), "fd")
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if l, _ := os.Readlink(filepath.Join(dir, e.Name())); strings.HasPrefix(l, "socket:") {
			return true
		}
	}
	return false
}
