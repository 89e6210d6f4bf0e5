package sysctl_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tcpkeep/tcpkeep/internal/netns"
	"github.com/tcpkeep/tcpkeep/internal/testnet"
	"github.com/tcpkeep/tcpkeep/sysctl"
)

// tree makes a /proc/sys look-alike holding the given files.
func tree(t *testing.T, files map[string]string) sysctl.ProcSys {
	t.Helper()
	root := t.TempDir()
	for name, v := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return sysctl.ProcSys(root)
}

func read(t *testing.T, p sysctl.ProcSys, file string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(string(p), file))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

var defaults = map[string]string{
	sysctl.FileTime: "7200", sysctl.FileIntvl: "75", sysctl.FileProbes: "9",
	sysctl.FileRetries2: "15", sysctl.FileFinTimeout: "60",
}

func TestReadLeavesMissingTunablesAbsent(t *testing.T) {
	p := tree(t, defaults) // no nf_conntrack: the module is not loaded
	got, err := p.Read()
	if err != nil {
		t.Fatal(err)
	}
	if got.Keepalive != sysctl.Defaults {
		t.Fatalf("keepalive = %+v, want %+v", got.Keepalive, sysctl.Defaults)
	}
	if got.Retries2 == nil || *got.Retries2 != 15 || got.FinTimeout == nil || *got.FinTimeout != time.Minute {
		t.Fatalf("related tunables = %v %v, want 15 and 1m", got.Retries2, got.FinTimeout)
	}
	if got.ConntrackEstablished != nil {
		t.Fatalf("conntrack timeout = %v, want absent", *got.ConntrackEstablished)
	}
}

func TestReadRejectsGarbage(t *testing.T) {
	files := map[string]string{sysctl.FileTime: "lots", sysctl.FileIntvl: "75", sysctl.FileProbes: "9"}
	if _, err := tree(t, files).Read(); err == nil || !strings.Contains(err.Error(), "net.ipv4.tcp_keepalive_time") {
		t.Fatalf("Read of a non-integer = %v, want an error naming the tunable", err)
	}
}

// A write that fails part way restores what it had written: all or none.
func TestWriteRollsBackWhenALaterWriteFails(t *testing.T) {
	p := tree(t, defaults)
	// Make the last write fail for real: the probes file becomes a read-only
	// kernel tunable, which reads as an integer and refuses writes even from root.
	probes := filepath.Join(string(p), sysctl.FileProbes)
	if err := os.Remove(probes); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/proc/sys/kernel/ngroups_max", probes); err != nil {
		t.Fatal(err)
	}
	_, err := p.Write(sysctl.Keepalive{Time: 60 * time.Second, Intvl: 10 * time.Second, Probes: 5})
	var rb *sysctl.RollbackError
	if !errors.As(err, &rb) {
		t.Fatalf("Write = %v, want a *RollbackError", err)
	}
	if rb.RestoreErr != nil || len(rb.Restored) != 2 {
		t.Fatalf("restored %v (restore error %v), want time and intvl restored", rb.Restored, rb.RestoreErr)
	}
	if got := read(t, p, sysctl.FileTime) + "/" + read(t, p, sysctl.FileIntvl); got != "7200/75" {
		t.Fatalf("after the failed write time/intvl = %s, want the old 7200/75", got)
	}
	if !strings.Contains(err.Error(), "nothing changed") {
		t.Fatalf("error %q does not say nothing changed", err)
	}
}

func TestWriteRefusesInvalidValuesBeforeWriting(t *testing.T) {
	p := tree(t, defaults)
	if _, err := p.Write(sysctl.Keepalive{Time: 60 * time.Second, Intvl: 10 * time.Second, Probes: 128}); err == nil {
		t.Fatal("Write accepted 128 probes")
	}
	if got := read(t, p, sysctl.FileTime); got != "7200" {
		t.Fatalf("time = %s after a refused write, want 7200 untouched", got)
	}
}

func TestWriteOnlyTouchesWhatDiffers(t *testing.T) {
	p := tree(t, defaults)
	// Probes stays 9, so its file is never written: its modification time stays.
	probes := filepath.Join(string(p), sysctl.FileProbes)
	past := time.Now().Add(-time.Hour).Truncate(time.Second)
	if err := os.Chtimes(probes, past, past); err != nil {
		t.Fatal(err)
	}
	old, err := p.Write(sysctl.Keepalive{Time: 300 * time.Second, Intvl: 30 * time.Second, Probes: 9})
	if err != nil {
		t.Fatal(err)
	}
	if old != sysctl.Defaults {
		t.Fatalf("old = %+v, want the defaults", old)
	}
	if got := read(t, p, sysctl.FileTime); got != "300" {
		t.Fatalf("time = %s, want 300", got)
	}
	if st, err := os.Stat(probes); err != nil || !st.ModTime().Equal(past) {
		t.Fatalf("probes file was written (mtime %v, err %v), want it untouched", st.ModTime(), err)
	}
}

// A new namespace starts at the kernel defaults, and a write reaches exactly the
// namespace it names.
func TestWriteChangesOnlyItsNamespace(t *testing.T) {
	ns := testnet.NewNS(t)
	got, err := sysctl.Read(ns.NetNS())
	if err != nil {
		t.Fatal(err)
	}
	if got.Keepalive != sysctl.Defaults {
		t.Fatalf("fresh namespace reads %+v, want the kernel defaults %+v", got.Keepalive, sysctl.Defaults)
	}
	host, err := sysctl.Read(netns.Self())
	if err != nil {
		t.Fatal(err)
	}
	want := sysctl.Keepalive{Time: 61 * time.Second, Intvl: 7 * time.Second, Probes: 4}
	old, err := sysctl.Write(ns.NetNS(), want)
	if err != nil {
		t.Fatal(err)
	}
	if old != sysctl.Defaults {
		t.Fatalf("Write returned old %+v, want the defaults", old)
	}
	if v := ns.ReadSysctl(sysctl.FileTime) + "/" + ns.ReadSysctl(sysctl.FileIntvl) + "/" + ns.ReadSysctl(sysctl.FileProbes); v != "61/7/4" {
		t.Fatalf("namespace reads %s, want 61/7/4", v)
	}
	after, err := sysctl.Read(netns.Self())
	if err != nil {
		t.Fatal(err)
	}
	if after.Keepalive != host.Keepalive {
		t.Fatalf("host values changed from %+v to %+v", host.Keepalive, after.Keepalive)
	}
}
