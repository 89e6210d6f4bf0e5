package cli

// --all-netns against real namespaces: named ones and an unnamed one (a
// process in a namespace of its own, as a container's), one tuned and the
// rest at the kernel's defaults, with loopback connections in them. Other
// tests on the machine make and remove namespaces of their own meanwhile, so
// a host-wide run is checked on the test's namespaces; runs in-process keep to
// the test's namespaces (env.tweak) where exit codes and whole outputs are
// checked.

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/tcpkeep/tcpkeep/internal/netns"
	"github.com/tcpkeep/tcpkeep/internal/sweep"
	"github.com/tcpkeep/tcpkeep/internal/testnet"
	"github.com/tcpkeep/tcpkeep/sysctl"
)

// hostWide is a test's namespaces for --all-netns.
type hostWide struct {
	named  []*testnet.NS   // by name, as Enumerate lists them; the first tuned
	holder *testnet.Holder // an unnamed namespace
	inodes []uint64        // in Enumerate's order: the named, then the unnamed
	names  map[uint64]string
	paths  map[uint64]string
}

// tunedTime is the first namespace's tcp_keepalive_time.
const tunedTime = "600"

// newHostWide makes three named namespaces and an unnamed one, tunes the
// first, and fills all but the last named with conns loopback connections.
func newHostWide(t *testing.T, conns int) *hostWide {
	t.Helper()
	h := &hostWide{named: testnet.NewNamespaces(t, 3), holder: testnet.Unnamed(t), names: map[uint64]string{}, paths: map[uint64]string{}}
	slices.SortFunc(h.named, func(a, b *testnet.NS) int { return strings.Compare(a.Name, b.Name) })
	h.named[0].Sysctl("net/ipv4/tcp_keepalive_time", tunedTime)
	for _, ns := range h.named {
		ino := inode(t, ns.NetNS().Path)
		h.inodes, h.names[ino], h.paths[ino] = append(h.inodes, ino), ns.Name, ns.NetNS().Path
	}
	ino := h.holder.Inode()
	h.inodes, h.names[ino], h.paths[ino] = append(h.inodes, ino), "pid:"+strconv.Itoa(h.holder.PID), h.holder.Path()
	testnet.Fill(t, []netns.NS{h.named[0].NetNS(), h.named[1].NetNS(), h.holder.NetNS()}, conns)
	return h
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Sys().(*syscall.Stat_t).Ino
}

// untuned are the namespaces at the kernel's default tcp_keepalive_time.
func (h *hostWide) untuned() []uint64 { return h.inodes[1:] }

// only keeps an in-process --all-netns run to the test's namespaces (in
// Enumerate's order) and to parallel visits at once (0: the default).
func (h *hostWide) only(parallel int, visited func(netns.Result)) func(*env) {
	return func(e *env) {
		e.tweak = func(c *sweep.Config, f *netns.Found) {
			f.Namespaces = slices.DeleteFunc(f.Namespaces, func(n netns.Namespace) bool { return !slices.Contains(h.inodes, n.Ino) })
			f.Skipped = nil
			c.Parallel, c.Visited = parallel, visited
		}
	}
}

// ssAll counts the TCP sockets ss sees in the namespace at path, all states.
func ssAll(t *testing.T, path string) int {
	t.Helper()
	out, err := exec.Command("nsenter", "--net="+path, "ss", "-tanH").Output()
	if err != nil {
		t.Fatalf("nsenter --net=%s ss: %v", path, err)
	}
	return strings.Count(string(out), "\n")
}

// ofInode keeps the records about namespace ino.
func ofInode(recs []map[string]any, ino uint64) []map[string]any {
	var out []map[string]any
	for _, r := range recs {
		if r["netns_inode"] == float64(ino) {
			out = append(out, r)
		}
	}
	return out
}

// TestAllNetnsEndToEnd: the built binary, host-wide. Each of the test's
// namespaces is audited and listed under its name and inode (the unnamed one
// as pid:PID, with its process's command), its socket count is ss's there,
// sysctl_keepalive_default is flagged in exactly the untuned ones, the json
// output is one document and the table groups by namespace.
func TestAllNetnsEndToEnd(t *testing.T) {
	h := newHostWide(t, 20)

	r := runBin(t, "--all-netns", "audit", "-o", "ndjson")
	if r.code < 1 || r.code > 3 {
		t.Fatalf("audit --all-netns: exit %d, want 1 to 3 (this host has findings):\n%s", r.code, r.stderr)
	}
	recs := records(t, r.stdout, "")
	if last := recs[len(recs)-1]; last["type"] != "netns_total" || last["netns"] != "*" || last["command"] != "audit" {
		t.Errorf("last record %v, want the netns_total", last)
	}
	var flagged []uint64
	for _, ino := range h.inodes {
		mine := ofInode(recs, ino)
		sums := ofType(mine, "audit_summary")
		if len(sums) != 1 {
			t.Fatalf("netns %s: %d audit summaries, want 1", h.names[ino], len(sums))
		}
		for _, m := range mine {
			if m["netns"] != h.names[ino] {
				t.Errorf("a record of inode %d names netns %v, want %s", ino, m["netns"], h.names[ino])
			}
			if m["type"] == "finding" && m["code"] == "sysctl_keepalive_default" {
				flagged = append(flagged, ino)
			}
		}
		if want := ssAll(t, h.paths[ino]); sums[0]["sockets"] != float64(want) {
			t.Errorf("netns %s: audit counted %v sockets, ss %d", h.names[ino], sums[0]["sockets"], want)
		}
	}
	if !slices.Equal(flagged, h.untuned()) {
		t.Errorf("sysctl_keepalive_default in %v, want in the untuned %v", flagged, h.untuned())
	}
	unnamed := ofInode(recs, h.holder.Inode())[0]
	if unnamed["netns_comm"] != "sleep" {
		t.Errorf("the unnamed namespace's netns_comm is %v, want sleep", unnamed["netns_comm"])
	}

	r = runBin(t, "--all-netns", "conns", "--state", "all", "-o", "ndjson")
	recs = records(t, r.stdout, "")
	for _, ino := range h.inodes {
		socks := ofType(ofInode(recs, ino), "socket")
		if want := ssAll(t, h.paths[ino]); len(socks) != want {
			t.Errorf("netns %s: conns listed %d sockets, ss %d", h.names[ino], len(socks), want)
		}
	}

	r = runBin(t, "--all-netns", "audit", "-o", "json")
	var doc struct {
		Type       string
		Namespaces []map[string]any
		Summary    map[string]any
	}
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	if err := dec.Decode(&doc); err != nil || dec.More() || doc.Type != "all_netns" {
		t.Fatalf("audit --all-netns -o json is not one all_netns document (%v):\n%.500s", err, r.stdout)
	}
	var order []uint64
	for _, d := range doc.Namespaces {
		if ino, _ := d["netns_inode"].(float64); slices.Contains(h.inodes, uint64(ino)) && d["type"] == "audit" {
			order = append(order, uint64(ino))
		}
	}
	if !slices.Equal(order, h.inodes) {
		t.Errorf("the test's namespaces in the document: %v, want %v", order, h.inodes)
	}

	// The table: each namespace under its heading, its own findings in its
	// group (the tuned one's has no sysctl_keepalive_default).
	r = runBin(t, "--all-netns", "audit")
	groups := map[string]string{}
	for _, g := range strings.Split(r.stdout, "\n== netns ")[1:] {
		name, _, _ := strings.Cut(g, " ")
		groups[name] = g
	}
	for i, ino := range h.inodes {
		g, ok := groups[h.names[ino]]
		if !ok || !strings.HasPrefix(g, fmt.Sprintf("%s (inode %d", h.names[ino], ino)) {
			t.Fatalf("no heading for netns %s (inode %d) in:\n%s", h.names[ino], ino, r.stdout)
		}
		if has := strings.Contains(g, "sysctl_keepalive_default"); has != (i > 0) {
			t.Errorf("netns %s's group has sysctl_keepalive_default: %v, want %v:\n%s", h.names[ino], has, i > 0, g)
		}
	}
	if !strings.Contains(r.stdout, "\nTotal over ") {
		t.Errorf("table without its total line:\n%s", r.stdout)
	}
}

// TestAllNetnsDeletedMidRun: a namespace that goes away after the walk
// started and before it reached it (one namespace at a time; it goes once the
// first is written) is one netns_error record and one stderr line; the rest
// are audited, and the exit code is theirs. Named (its name deleted) and
// unnamed (its process ended), in ndjson and in json, which stays one
// document.
func TestAllNetnsDeletedMidRun(t *testing.T) {
	h := newHostWide(t, 5)
	for _, tc := range []struct {
		o      string
		victim uint64
		vanish func()
	}{
		{"ndjson", h.inodes[2], h.named[2].Delete},
		{"json", h.inodes[3], h.holder.Kill},
	} {
		done := false
		first := func(r netns.Result) {
			if r.Index == 0 && !done {
				tc.vanish()
				done = true
			}
		}
		name := h.names[tc.victim]
		r := runCLI(t, h.only(1, first), "--all-netns", "audit", "-o", tc.o)
		if r.code != auditWarning {
			t.Fatalf("-o %s: exit %d, want %d (warnings; a namespace that went away is not a failure):\n%s", tc.o, r.code, auditWarning, r.stderr)
		}
		if want := "tcpkeep: netns " + name + ": gone since it was found; the others were read\n"; r.stderr != want {
			t.Errorf("-o %s: stderr %q, want %q", tc.o, r.stderr, want)
		}
		var recs []map[string]any
		if tc.o == "ndjson" {
			recs = records(t, r.stdout, "")
		} else {
			var doc struct{ Namespaces []map[string]any }
			if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
				t.Fatalf("not one document: %v\n%s", err, r.stdout)
			}
			recs = doc.Namespaces
		}
		for _, ino := range h.inodes {
			mine := ofInode(recs, ino)
			switch {
			case ino == tc.victim:
				if len(mine) != 1 || mine[0]["type"] != "netns_error" || mine[0]["reason"] != "gone" || mine[0]["netns"] != name {
					t.Errorf("-o %s: the vanished namespace's records: %v", tc.o, mine)
				}
			case tc.o == "json" && ino == h.inodes[2]: // gone in the first round
			case tc.o == "ndjson" && len(ofType(mine, "audit_summary")) != 1, tc.o == "json" && (len(mine) != 1 || mine[0]["type"] != "audit"):
				t.Errorf("-o %s: netns %s was not audited: %v", tc.o, h.names[ino], mine)
			}
		}
	}
}

// TestAllNetnsExitCodes: in-process over the test's namespaces alone, each
// command's convention holds over all of them: audit's worst; kill's and
// conns' 0; a usage error names the conflict.
func TestAllNetnsExitCodes(t *testing.T) {
	h := newHostWide(t, 3)
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"--all-netns", "audit"}, auditWarning},
		{[]string{"--all-netns", "audit", "--fail-on", "critical"}, auditOK},
		{[]string{"--all-netns", "conns"}, exitOK},
		{[]string{"--all-netns", "sysctl", "-o", "json"}, exitOK},
		{[]string{"sysctl", "--all-netns", "recommend", "-o", "ndjson"}, exitOK},
		{[]string{"--all-netns", "kill", "--dport", "7000", "--dry-run", "-o", "ndjson"}, exitOK},
	} {
		r := runCLI(t, h.only(0, nil), tc.args...)
		if r.code != tc.code || r.stderr != "" {
			t.Errorf("%v: exit %d, want %d; stderr %q", tc.args, r.code, tc.code, r.stderr)
		}
		if strings.Contains(strings.Join(tc.args, " "), "kill") {
			// Every connection Fill made, in each of its namespaces, would
			// be closed (both ends: one has dport 7000, its peer sport).
			recs := records(t, r.stdout, "")
			for _, ino := range h.inodes {
				if a := ofType(ofInode(recs, ino), "action"); len(a) != ssAll(t, h.paths[ino])/2 {
					t.Errorf("kill --dry-run selected %d in %s, want %d", len(a), h.names[ino], ssAll(t, h.paths[ino])/2)
				}
			}
		}
	}
}

// TestAllNetnsSysctl: every namespace's tunables under its name; a dry run of
// sysctl set writes nothing, and --persist would go to the host's namespace
// only, as the record and a note say.
func TestAllNetnsSysctl(t *testing.T) {
	h := newHostWide(t, 1)
	r := runBin(t, "--all-netns", "sysctl", "-o", "ndjson")
	recs := records(t, r.stdout, "")
	for i, ino := range h.inodes {
		m := ofType(ofInode(recs, ino), "sysctl")
		want := 7200.0
		if i == 0 {
			want, _ = strconv.ParseFloat(tunedTime, 64)
		}
		if len(m) != 1 || m[0]["keepalive_time_s"] != want {
			t.Errorf("netns %s: %v, want keepalive_time_s %v", h.names[ino], m, want)
		}
	}
	file := filepath.Join(t.TempDir(), "99-tcpkeep.conf")
	r = runBin(t, "--all-netns", "sysctl", "set", "--time", "300", "--dry-run", "--persist="+file, "-o", "ndjson")
	recs = records(t, r.stdout, "")
	persisted := 0
	for _, m := range ofType(recs, "sysctl_set") {
		if m["dry_run"] != true {
			t.Errorf("not a dry run: %v", m)
		}
		if m["persist_file"] != nil {
			persisted++
		}
	}
	for _, ino := range h.inodes {
		if m := ofType(ofInode(recs, ino), "sysctl_set"); len(m) != 1 || m[0]["persist_file"] != nil {
			t.Errorf("netns %s: %v, want one record without persist_file", h.names[ino], m)
		}
	}
	if persisted != 1 || !strings.Contains(r.stderr, "for the host's namespace only") {
		t.Errorf("%d records persist, stderr %q; want the host's alone, and a note", persisted, r.stderr)
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Errorf("a dry run wrote %s: %v", file, err)
	}
	if got := h.named[1].ReadSysctl(sysctl.FileTime); got != "7200" {
		t.Errorf("a dry run changed tcp_keepalive_time to %s", got)
	}
}

// TestAllNetnsWithoutCaps: without CAP_SYS_ADMIN no other namespace can be
// entered, and without CAP_SYS_PTRACE another user's process's namespace
// cannot be opened: each is a record naming the capability, stderr has one
// line per capability, the namespace tcpkeep runs in is audited, and the exit
// code says not everything could be audited.
func TestAllNetnsWithoutCaps(t *testing.T) {
	h := newHostWide(t, 1)
	other := testnet.UnnamedAs(t, 65534)
	for _, tc := range []struct {
		drop    string
		missing map[uint64]string
	}{
		{"-sys_admin", map[uint64]string{h.inodes[0]: "CAP_SYS_ADMIN", h.holder.Inode(): "CAP_SYS_ADMIN"}},
		{"-sys_admin,-sys_ptrace", map[uint64]string{h.inodes[0]: "CAP_SYS_ADMIN", 0: "CAP_SYS_PTRACE"}},
	} {
		out, err := exec.Command("setpriv", "--bounding-set", tc.drop, "--inh-caps", tc.drop, "--",
			tcpkeepBin, "--all-netns", "audit", "-o", "ndjson").Output()
		ee, _ := err.(*exec.ExitError)
		if ee == nil || (ee.ExitCode() != auditUnknown && ee.ExitCode() != auditCritical) {
			t.Fatalf("without %s: %v, want exit 3 (2 if something critical was found)", tc.drop, err)
		}
		stderr := string(ee.Stderr)
		recs := records(t, string(out), "")
		audited := ofType(recs, "audit_summary")
		if len(audited) == 0 {
			t.Errorf("without %s: the namespace tcpkeep runs in was not audited", tc.drop)
		}
		for ino, c := range tc.missing {
			var m []map[string]any
			if ino == 0 { // the other user's: skipped at enumeration, named by its process
				for _, r := range ofType(recs, "netns_error") {
					if r["netns"] == "pid:"+strconv.Itoa(other.PID) {
						m = append(m, r)
					}
				}
			} else {
				m = ofInode(recs, ino)
			}
			if len(m) != 1 || m[0]["type"] != "netns_error" || m[0]["missing_capability"] != c || m[0]["reason"] != "denied" {
				t.Errorf("without %s: records %v, want one netns_error missing %s", tc.drop, m, c)
			}
			if !strings.Contains(stderr, "needs "+c) {
				t.Errorf("without %s: stderr does not name %s:\n%s", tc.drop, c, stderr)
			}
		}
		if n := strings.Count(stderr, "needs CAP_SYS_ADMIN"); n != 1 {
			t.Errorf("without %s: %d stderr lines name CAP_SYS_ADMIN, want one for all:\n%s", tc.drop, n, stderr)
		}
	}
}

// TestAllNetnsKillWithoutNetAdmin: a namespace where the kernel refuses to
// close a selected socket is a record naming CAP_NET_ADMIN, and the exit is 1;
// with it, the socket is closed, in its namespace alone.
func TestAllNetnsKillWithoutNetAdmin(t *testing.T) {
	h := newHostWide(t, 1)
	ns := h.named[1]
	l := ns.Listen("127.0.0.1:0")
	go acceptAll(l)
	c := ns.Dial(l.Addr().String())
	defer c.Close()
	sport := strconv.Itoa(c.LocalAddr().(*net.TCPAddr).Port)
	dport := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	args := []string{"--all-netns", "kill", "--sport", sport, "--dport", dport, "-o", "ndjson"}
	out, err := exec.Command("setpriv", append([]string{"--bounding-set", "-net_admin", "--inh-caps", "-net_admin", "--", tcpkeepBin}, args...)...).Output()
	ee, _ := err.(*exec.ExitError)
	if ee == nil || ee.ExitCode() != exitError {
		t.Fatalf("kill without CAP_NET_ADMIN: %v, want exit 1", err)
	}
	mine := ofInode(records(t, string(out), ""), h.inodes[1])
	if a := ofType(mine, "action"); len(a) != 1 || a[0]["result"] != "denied" {
		t.Errorf("actions %v, want one denied", a)
	}
	if e := ofType(mine, "netns_error"); len(e) != 1 || e[0]["missing_capability"] != "CAP_NET_ADMIN" {
		t.Errorf("records %v, want a netns_error missing CAP_NET_ADMIN", e)
	}
	if !strings.Contains(string(ee.Stderr), "closing sockets needs CAP_NET_ADMIN") {
		t.Errorf("stderr does not say CAP_NET_ADMIN is missing:\n%s", ee.Stderr)
	}
	r := runCLI(t, h.only(0, nil), args...)
	recs := records(t, r.stdout, "")
	if a := ofType(recs, "action"); r.code != exitOK || len(a) != 1 || a[0]["result"] != "closed" || a[0]["netns"] != ns.Name {
		t.Errorf("kill: exit %d, actions %v; want the one socket closed in %s", r.code, a, ns.Name)
	}
}

// TestAllNetnsPod: the namespace of a process in a Kubernetes pod's cgroup is
// attributed to the pod and container, and its sysctl_keepalive_default
// finding gives the pod's securityContext.sysctls with the values sysctl
// recommend gives there, beside the command that sets them now.
func TestAllNetnsPod(t *testing.T) {
	h := testnet.Unnamed(t)
	const pod, ctr = "6f1b7a0c-3d2e-4f5a-9b8c-7d6e5f4a3b2c", "4c1e0f9a8b7d6c5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e"
	testnet.InCgroup(t, h.PID, "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod"+strings.ReplaceAll(pod, "-", "_")+".slice/cri-containerd-"+ctr+".scope")
	spec := "pid:" + strconv.Itoa(h.PID)
	r := runBin(t, "--netns", spec, "sysctl", "recommend", "-o", "json")
	rec := decode(t, r.stdout)
	snippet := fmt.Sprintf(`securityContext: {sysctls: [{name: net.ipv4.tcp_keepalive_time, value: "%v"}, {name: net.ipv4.tcp_keepalive_intvl, value: "%v"}, {name: net.ipv4.tcp_keepalive_probes, value: "%v"}]}`,
		rec["keepalive_time_s"], rec["keepalive_intvl_s"], rec["keepalive_probes"])
	for _, args := range [][]string{{"--netns", spec, "audit", "-o", "ndjson"}, {"--all-netns", "audit", "-o", "ndjson"}} {
		r := runBin(t, args...)
		var f []map[string]any
		for _, m := range ofType(ofInode(records(t, r.stdout, ""), h.Inode()), "finding") {
			if m["code"] == "sysctl_keepalive_default" {
				f = append(f, m)
			}
		}
		if len(f) != 1 {
			t.Fatalf("%v: %d sysctl_keepalive_default findings for the pod's namespace, want 1", args, len(f))
		}
		if f[0]["pod_uid"] != pod || f[0]["container_id"] != ctr || f[0]["netns_comm"] != "sleep" {
			t.Errorf("%v: the finding's header: %v", args, f[0])
		}
		msg := f[0]["message"].(string)
		if !strings.Contains(msg, snippet) || !strings.Contains(msg, "tcpkeep --netns "+spec+" sysctl set --time") {
			t.Errorf("%v: message without the pod's sysctls %s and the command:\n%s", args, snippet, msg)
		}
	}
}
