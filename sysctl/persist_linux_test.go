package sysctl_test

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpkeep/tcpkeep/sysctl"
)

// persistLoopEnv makes the test binary a child that persists in a loop (see
// TestMain): "unnamed:PATH" or "named:PATH".
const persistLoopEnv = "TCPKEEP_TEST_PERSIST_LOOP"

func TestMain(m *testing.M) {
	if spec := os.Getenv(persistLoopEnv); spec != "" {
		persistLoop(spec)
	}
	os.Exit(m.Run())
}

// The two versions the child alternates between: different values and lengths,
// the second long enough that writing it takes more than one page.
var versions = [2]struct {
	k      sysctl.Keepalive
	header string
}{
	{sysctl.Keepalive{Time: 300 * time.Second, Intvl: 30 * time.Second, Probes: 5}, "version A"},
	{sysctl.Keepalive{Time: 60 * time.Second, Intvl: 10 * time.Second, Probes: 3}, "version B\n" + strings.Repeat("padding line to make the file span pages\n", 200)},
}

func persistWith(named bool) func(string, sysctl.Keepalive, string) error {
	if named {
		return sysctl.PersistNamed
	}
	return sysctl.Persist
}

// persistLoop persists the two versions in turn until killed, and says "ready"
// on stdout after the first.
func persistLoop(spec string) {
	mode, path, _ := strings.Cut(spec, ":")
	persist := persistWith(mode == "named")
	for i := 0; ; i++ {
		v := versions[i%2]
		if err := persist(path, v.k, v.header); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3)
		}
		if i == 0 {
			os.Stdout.WriteString("ready\n")
		}
	}
}

// TestPersistSurvivesKill9 kills a process that persists in a loop with SIGKILL at
// random points, many times, on both paths (O_TMPFILE and the named fallback). After
// every kill the file holds one whole version, and the directory holds at most one
// temporary file: the killed run's own, each run having removed those of the runs
// before it. A last clean run leaves exactly one file.
func TestPersistSurvivesKill9(t *testing.T) {
	kills := 150
	if testing.Short() {
		kills = 20
	}
	whole := []string{
		string(sysctl.PersistFile(versions[0].k, versions[0].header)),
		string(sysctl.PersistFile(versions[1].k, versions[1].header)),
	}
	for _, named := range []bool{false, true} {
		mode := map[bool]string{false: "unnamed", true: "named"}[named]
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "90-tcpkeep.conf")
			strayAfter := 0 // kills after which a temporary file was there
			for i := 0; i < kills; i++ {
				cmd := exec.Command(os.Args[0], "-test.run=^$")
				cmd.Env = append(os.Environ(), persistLoopEnv+"="+mode+":"+path)
				out, err := cmd.StdoutPipe()
				if err != nil {
					t.Fatal(err)
				}
				var stderr strings.Builder
				cmd.Stderr = &stderr
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				if line, err := bufio.NewReader(out).ReadString('\n'); line != "ready\n" {
					cmd.Process.Kill()
					cmd.Wait()
					t.Fatalf("child: %q, %v; stderr %s", line, err, stderr.String())
				}
				// A random point in the loop: one write takes about a millisecond
				// or two here (two fsyncs).
				time.Sleep(time.Duration(rand.IntN(4000)) * time.Microsecond)
				if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				if err := cmd.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
					t.Fatalf("child ended with %v, want killed; stderr %s", err, stderr.String())
				}
				b, err := os.ReadFile(path)
				if err != nil || !slices.Contains(whole, string(b)) {
					t.Fatalf("after kill %d the file holds %d bytes (%v), not one whole version", i+1, len(b), err)
				}
				strays := temps(t, dir)
				if len(strays) > 1 {
					t.Fatalf("after kill %d: %d temporary files %v; want at most the killed run's own", i+1, len(strays), strays)
				}
				strayAfter += len(strays)
			}
			t.Logf("%s: %d kills, a temporary file left by %d of them, each removed by the next run", mode, kills, strayAfter)
			if err := persistWith(named)(path, versions[0].k, versions[0].header); err != nil {
				t.Fatal(err)
			}
			entries, _ := os.ReadDir(dir)
			if len(entries) != 1 || entries[0].Name() != "90-tcpkeep.conf" {
				t.Fatalf("after a clean run the directory holds %v; want 90-tcpkeep.conf alone", names(entries))
			}
			if b, _ := os.ReadFile(path); string(b) != whole[0] {
				t.Fatalf("after a clean run the file holds %q", b)
			}
		})
	}
}

// temps lists the directory's entries other than the target, failing on any that
// is not one of Persist's temporary names.
func temps(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if e.Name() == "90-tcpkeep.conf" {
			continue
		}
		if !strings.HasPrefix(e.Name(), ".90-tcpkeep.conf.tcpkeep-tmp-") {
			t.Fatalf("unexpected file %s", e.Name())
		}
		out = append(out, e.Name())
	}
	return out
}

func names(entries []os.DirEntry) []string {
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// TestPersistNamedFallback: without O_TMPFILE the file is written whole with mode
// 0644 whatever the umask, and no temporary file stays.
func TestPersistNamedFallback(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	dir := t.TempDir()
	path := filepath.Join(dir, "90-tcpkeep.conf")
	for _, v := range versions {
		if err := sysctl.PersistNamed(path, v.k, v.header); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(path); string(b) != string(sysctl.PersistFile(v.k, v.header)) {
			t.Fatalf("file holds %q", b)
		}
		st, _ := os.Stat(path)
		if st.Mode().Perm() != 0o644 {
			t.Fatalf("mode %v under umask 077, want 0644", st.Mode().Perm())
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 1 {
			t.Fatalf("directory holds %v, want the file alone", names(entries))
		}
	}
	// The rename fails onto a non-empty directory: the temporary file goes.
	target := filepath.Join(dir, "adir")
	if err := os.MkdirAll(filepath.Join(target, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := sysctl.PersistNamed(target, sysctl.Defaults, "x"); err == nil {
		t.Fatal("persisting over a non-empty directory succeeded")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Fatalf("directory holds %v, want no temporary file left", names(entries))
	}
}

// TestPersistRemovesOnlyStaleTempFiles: a run removes this file's temporary files
// that no live writer holds (a killed run's), and nothing else: not one a live
// writer holds locked, not another file's, not a look-alike name, not a symlink or
// a directory under the name.
func TestPersistRemovesOnlyStaleTempFiles(t *testing.T) {
	for _, named := range []bool{false, true} {
		t.Run(map[bool]string{false: "unnamed", true: "named"}[named], func(t *testing.T) {
			dir := t.TempDir()
			outside := filepath.Join(t.TempDir(), "outside")
			if err := os.WriteFile(outside, []byte("not ours\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			write := func(name string) {
				if err := os.WriteFile(filepath.Join(dir, name), []byte("half a fi"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			const p = ".90-tcpkeep.conf.tcpkeep-tmp-"
			stale := []string{p + "0123456789abcdef", p + "fedcba9876543210"}
			for _, n := range stale {
				write(n)
			}
			live := p + "00000000000000ff"
			write(live)
			lf, err := os.Open(filepath.Join(dir, live))
			if err != nil {
				t.Fatal(err)
			}
			defer lf.Close()
			if err := unix.Flock(int(lf.Fd()), unix.LOCK_EX); err != nil {
				t.Fatal(err)
			}
			kept := []string{
				live,
				".90-tcpkeep.conf.tmp123456", // another tool's pattern
				p + "0123456789ABCDEF",       // not our spelling
				p + "0123456789abcde",        // too short
				".10-other.conf.tcpkeep-tmp-0123456789abcdef",  // another file's
				"90-tcpkeep.conf.tcpkeep-tmp-0123456789abcdef", // no leading dot
				"10-other.conf",
			}
			for _, n := range kept[1:] {
				write(n)
			}
			link := p + "1111111111111111"
			if err := os.Symlink(outside, filepath.Join(dir, link)); err != nil {
				t.Fatal(err)
			}
			sub := p + "2222222222222222"
			if err := os.Mkdir(filepath.Join(dir, sub), 0o755); err != nil {
				t.Fatal(err)
			}
			kept = append(kept, link, sub)

			before := sysctl.NamedFallbacks()
			path := filepath.Join(dir, "90-tcpkeep.conf")
			if err := persistWith(named)(path, versions[0].k, versions[0].header); err != nil {
				t.Fatal(err)
			}
			if !named && sysctl.NamedFallbacks() != before {
				t.Fatal("fell back to a named temporary file: this file system should have O_TMPFILE")
			}
			entries, _ := os.ReadDir(dir)
			got := names(entries)
			want := append(slices.Clone(kept), "90-tcpkeep.conf")
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("directory holds\n%v\nwant\n%v", got, want)
			}
			if b, _ := os.ReadFile(outside); string(b) != "not ours\n" {
				t.Fatal("the symlink's target was touched")
			}
		})
	}
}
