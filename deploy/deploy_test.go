// Package deploy holds no code: its tests check the packaging beside them
// (systemd units, the Kubernetes DaemonSet, the Dockerfile, Prometheus rules
// and the Grafana dashboard) with the tools that consume them, and against the
// binary and the metric names the agent exposes.
package deploy

import (
	"bufio"
	"bytes"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// metric is one series family tcpkeep exposes.
type metric struct {
	typ    string // gauge or counter
	labels []string
}

// metrics are the names and labels tcpkeep watch's /metrics and audit -o prom
// expose (issue 12), and the only ones the rules and the dashboard may use.
// TestMetricDefinitions holds them to internal/report's definitions, to what
// the binary writes and serves, and to docs/deployment-agent.md's table.
var metrics = map[string]metric{
	"tcpkeep_sockets":                               {"gauge", []string{"netns", "state"}},
	"tcpkeep_findings":                              {"gauge", []string{"netns", "code", "severity"}},
	"tcpkeep_worst_severity":                        {"gauge", []string{"netns"}},
	"tcpkeep_keepalive_time_seconds":                {"gauge", []string{"netns"}},
	"tcpkeep_keepalive_intvl_seconds":               {"gauge", []string{"netns"}},
	"tcpkeep_keepalive_probes":                      {"gauge", []string{"netns"}},
	"tcpkeep_dead_peer_detect_seconds":              {"gauge", []string{"netns"}},
	"tcpkeep_tcp_retries2":                          {"gauge", []string{"netns"}},
	"tcpkeep_conntrack_established_timeout_seconds": {"gauge", []string{"netns"}},
	"tcpkeep_audit_duration_seconds":                {"gauge", []string{"netns"}},
	"tcpkeep_audit_success":                         {"gauge", []string{"netns"}},
	"tcpkeep_audit_timestamp_seconds":               {"gauge", []string{"netns"}},
	"tcpkeep_build_info":                            {"gauge", []string{"version", "commit", "goversion"}},
	"tcpkeep_findings_opened_total":                 {"counter", []string{"netns", "code", "severity"}},
	"tcpkeep_findings_resolved_total":               {"counter", []string{"netns", "code", "how"}},
	"tcpkeep_kernel_drops_total":                    {"counter", []string{"netns", "cause"}},
	"tcpkeep_destroy_broadcasts_lost_total":         {"counter", []string{"netns"}},
}

// dropCauses are tcpkeep_kernel_drops_total's causes: the names of
// internal/audit's End values for which End.KernelDrop holds.
var dropCauses = []string{"keepalive", "retransmit", "user_timeout", "connect_timeout"}

// port is tcpkeep watch's: the default of --listen's port and what every
// file here uses.
const port = "9977"

// bin is the tcpkeep binary the tests run, built once by TestMain.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tcpkeep-deploy-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "tcpkeep")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// tool finds a program the test needs: missing, the test skips, or fails
// where TCPKEEP_REQUIRE_ROOT=1 says every test must run (make test installs
// them: the Makefile's TEST_TOOLS).
func tool(t *testing.T, name, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("TCPKEEP_REQUIRE_ROOT") == "1" {
			t.Fatalf("%s not found: apt-get install %s (make test-deps does)", name, pkg)
		}
		t.Skipf("%s not installed (Debian package %s)", name, pkg)
	}
	return path
}

// flagsExist checks that tcpkeep accepts args: every flag known and every
// value valid. The -h at the end makes tcpkeep parse everything before it and
// then print help instead of running.
func flagsExist(t *testing.T, where string, args []string) {
	t.Helper()
	// The command is the first word that is neither a flag nor the value of
	// a global flag (-o, --netns).
	cmdName := ""
	for i := 0; i < len(args) && cmdName == ""; i++ {
		switch a := args[i]; {
		case a == "-o" || a == "--output" || a == "--netns":
			i++
		case !strings.HasPrefix(a, "-"):
			cmdName = a
		}
	}
	if out, err := exec.Command(bin, cmdName, "-h").CombinedOutput(); err != nil {
		t.Fatalf("%s runs `tcpkeep %s`: %v: %s", where, cmdName, err, firstLine(out))
	}
	out, err := exec.Command(bin, append(slices.Clone(args), "-h")...).CombinedOutput()
	if err != nil {
		t.Errorf("%s: tcpkeep %s: %v: %s", where, strings.Join(args, " "), err, firstLine(out))
	}
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return s
}

// unit is a systemd unit file: its keys by section, each with every value
// given (in order).
type unit map[string]map[string][]string

func readUnit(t *testing.T, path string) unit {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unit{}
	sec := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "["):
			sec = strings.Trim(line, "[]")
			u[sec] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || sec == "" {
				t.Fatalf("%s: not a key=value line in a section: %q", path, line)
			}
			u[sec][k] = append(u[sec][k], v)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return u
}

func (u unit) get(sec, key string) string {
	v := u[sec][key]
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

// installPath is where the units expect the binary (make install's PREFIX).
const installPath = "/usr/local/bin/tcpkeep"

var units = []string{"systemd/tcpkeep-watch.service", "systemd/tcpkeep-audit.service", "systemd/tcpkeep-audit.timer"}

// TestSystemdVerify runs systemd-analyze verify on the units, with the
// ExecStart binary pointed at the one just built (verify wants it to exist),
// and holds their exposure (systemd-analyze security) where it is.
func TestSystemdVerify(t *testing.T) {
	analyze := tool(t, "systemd-analyze", "systemd")
	dir := t.TempDir()
	var paths []string
	for _, u := range units {
		b, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(b, []byte(installPath)) && strings.HasSuffix(u, ".service") {
			t.Errorf("%s: ExecStart does not run %s", u, installPath)
		}
		p := filepath.Join(dir, filepath.Base(u))
		if err := os.WriteFile(p, bytes.ReplaceAll(b, []byte(installPath), []byte(bin)), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	out, err := exec.Command(analyze, append([]string{"verify", "--man=no"}, paths...)...).CombinedOutput()
	// verify exits 0 on a value it ignores; what it says about our units counts.
	var ours []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, dir) || strings.Contains(l, "tcpkeep") {
			ours = append(ours, l)
		}
	}
	if err != nil || len(ours) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}

	// Exposure: 2.5 (watch) and 2.1 (audit) with systemd 252. What remains is
	// what they need: host network, capabilities, /proc. A change that raises it
	// past 3.0 (OK) should be a choice.
	for _, p := range paths {
		if !strings.HasSuffix(p, ".service") {
			continue
		}
		out, err := exec.Command(analyze, "security", "--offline=yes", "--threshold=30", p).CombinedOutput()
		if err != nil {
			t.Errorf("systemd-analyze security %s: %v (exposure over 3.0)\n%s", filepath.Base(p), err, out)
		}
	}
}

// The capabilities each unit holds, and why (the units' comments say it too).
var unitCaps = map[string][]string{
	"systemd/tcpkeep-watch.service": {"CAP_NET_ADMIN", "CAP_SYS_ADMIN", "CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH"},
	"systemd/tcpkeep-audit.service": {"CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH"},
}

// TestSystemdUnits checks what the units promise: the hardening the issue
// asks for, the capabilities and nothing more, and an ExecStart tcpkeep
// accepts.
func TestSystemdUnits(t *testing.T) {
	for path, caps := range unitCaps {
		u := readUnit(t, path)
		s := "Service"
		for key, want := range map[string]string{
			"NoNewPrivileges":         "yes",
			"ProtectSystem":           "strict",
			"ProtectHome":             "yes",
			"RestrictAddressFamilies": "",
			"SystemCallArchitectures": "native",
		} {
			if got := u.get(s, key); got == "" || (want != "" && got != want) {
				t.Errorf("%s: %s=%q, want %q", path, key, got, want)
			}
		}
		fams := strings.Fields(u.get(s, "RestrictAddressFamilies"))
		for _, f := range fams {
			if !slices.Contains([]string{"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"}, f) {
				t.Errorf("%s: RestrictAddressFamilies allows %s", path, f)
			}
		}
		for _, key := range []string{"CapabilityBoundingSet", "AmbientCapabilities"} {
			got := strings.Fields(u.get(s, key))
			sort.Strings(got)
			want := slices.Sorted(slices.Values(caps))
			if !slices.Equal(got, want) {
				t.Errorf("%s: %s=%v, want %v", path, key, got, want)
			}
		}
		cmdline := strings.Fields(u.get(s, "ExecStart"))
		if len(cmdline) < 2 || cmdline[0] != installPath {
			t.Fatalf("%s: ExecStart=%q", path, u.get(s, "ExecStart"))
		}
		t.Logf("%s runs: tcpkeep %s", path, strings.Join(cmdline[1:], " "))
		t.Run(filepath.Base(path)+" flags", func(t *testing.T) { flagsExist(t, path, cmdline[1:]) })
	}

	watch := readUnit(t, "systemd/tcpkeep-watch.service")
	if got := watch.get("Service", "ExecStart"); !strings.Contains(got, "--listen 127.0.0.1:"+port) {
		t.Errorf("watch listens with %q: want 127.0.0.1:%s, localhost only", got, port)
	}
	if !slices.Equal(strings.Fields(watch.get("Service", "RestrictAddressFamilies")), []string{"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"}) {
		t.Errorf("watch: RestrictAddressFamilies=%q, want AF_UNIX AF_INET AF_INET6 AF_NETLINK", watch.get("Service", "RestrictAddressFamilies"))
	}
	if got := watch.get("Service", "RestrictNamespaces"); got != "net" {
		t.Errorf("watch: RestrictNamespaces=%q, want net (setns into network namespaces only)", got)
	}
	timer := readUnit(t, "systemd/tcpkeep-audit.timer")
	if timer.get("Timer", "OnUnitActiveSec") == "" || timer.get("Install", "WantedBy") != "timers.target" {
		t.Errorf("audit timer: OnUnitActiveSec=%q WantedBy=%q", timer.get("Timer", "OnUnitActiveSec"), timer.get("Install", "WantedBy"))
	}
	audit := readUnit(t, "systemd/tcpkeep-audit.service")
	if !strings.Contains(audit.get("Service", "ExecStart"), "--prom-file ") {
		t.Error("the audit service writes no textfile (--prom-file)")
	}
	if ok := audit.get("Service", "SuccessExitStatus"); ok != "1 2" {
		t.Errorf("audit: SuccessExitStatus=%q, want \"1 2\" (findings are not failures; 3 is)", ok)
	}
}

// k8sObject is the part of a Kubernetes manifest the test reads.
type k8sObject struct {
	Kind     string `json:"kind"`
	Metadata struct {
		Name        string            `json:"name"`
		Namespace   string            `json:"namespace"`
		Annotations map[string]string `json:"annotations"`
	} `json:"metadata"`
	AutomountServiceAccountToken *bool `json:"automountServiceAccountToken"`
	Spec                         struct {
		Template struct {
			Metadata struct {
				Annotations map[string]string `json:"annotations"`
			} `json:"metadata"`
			Spec podSpec `json:"spec"`
		} `json:"template"`
	} `json:"spec"`
}

type podSpec struct {
	HostPID            bool        `json:"hostPID"`
	HostNetwork        bool        `json:"hostNetwork"`
	ServiceAccountName string      `json:"serviceAccountName"`
	Containers         []container `json:"containers"`
	Volumes            []struct {
		Name     string `json:"name"`
		HostPath *struct {
			Path string `json:"path"`
		} `json:"hostPath"`
	} `json:"volumes"`
}

type container struct {
	Name  string   `json:"name"`
	Image string   `json:"image"`
	Args  []string `json:"args"`
	Env   []struct {
		Name string `json:"name"`
	} `json:"env"`
	Ports []struct {
		Name          string `json:"name"`
		ContainerPort int    `json:"containerPort"`
	} `json:"ports"`
	SecurityContext struct {
		Privileged               *bool `json:"privileged"`
		AllowPrivilegeEscalation *bool `json:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   *bool `json:"readOnlyRootFilesystem"`
		Capabilities             struct {
			Add  []string `json:"add"`
			Drop []string `json:"drop"`
		} `json:"capabilities"`
	} `json:"securityContext"`
	VolumeMounts []struct {
		Name             string `json:"name"`
		MountPath        string `json:"mountPath"`
		ReadOnly         bool   `json:"readOnly"`
		MountPropagation string `json:"mountPropagation"`
	} `json:"volumeMounts"`
	Resources struct {
		Requests map[string]string `json:"requests"`
		Limits   map[string]string `json:"limits"`
	} `json:"resources"`
	LivenessProbe *struct {
		HTTPGet *struct {
			Path string `json:"path"`
			Port any    `json:"port"`
		} `json:"httpGet"`
	} `json:"livenessProbe"`
}

// TestDaemonSet parses the manifest (sigs.k8s.io/yaml, Kubernetes's own YAML
// reader) and checks the DaemonSet against what the agent needs: hostPID,
// /run/netns with HostToContainer propagation, the watch unit's capabilities
// and no privileged mode, a read-only root, resources, /healthz, the scrape
// annotations, and args tcpkeep accepts.
func TestDaemonSet(t *testing.T) {
	b, err := os.ReadFile("kubernetes/daemonset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var ds *k8sObject
	kinds := map[string]k8sObject{}
	for _, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(b), -1) {
		var o k8sObject
		if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
			t.Fatalf("daemonset.yaml: %v", err)
		}
		if o.Kind == "" {
			continue
		}
		kinds[o.Kind] = o
		if o.Kind == "DaemonSet" {
			ds = &o
		}
	}
	if ds == nil {
		t.Fatal("daemonset.yaml has no DaemonSet")
	}
	if ns := kinds["Namespace"]; ns.Metadata.Name != "tcpkeep" || ds.Metadata.Namespace != "tcpkeep" {
		t.Errorf("namespace: Namespace %q, DaemonSet in %q; want tcpkeep", ns.Metadata.Name, ds.Metadata.Namespace)
	}
	pod := ds.Spec.Template.Spec
	sa := kinds["ServiceAccount"]
	if sa.Metadata.Name == "" || sa.Metadata.Name != pod.ServiceAccountName || sa.Metadata.Namespace != "tcpkeep" {
		t.Errorf("service account %q in %q, the pod uses %q", sa.Metadata.Name, sa.Metadata.Namespace, pod.ServiceAccountName)
	}
	if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
		t.Error("the service account mounts an API token the agent never uses")
	}
	if !pod.HostPID {
		t.Error("hostPID is off: the agent would see no other pod's namespace or socket owners")
	}
	if pod.HostNetwork {
		t.Error("hostNetwork is on: the agent enters namespaces with setns, it needs none")
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	sc := c.SecurityContext
	if sc.Privileged != nil && *sc.Privileged {
		t.Error("the container is privileged")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("allowPrivilegeEscalation is not false")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("readOnlyRootFilesystem is not true")
	}
	var want []string
	for _, c := range unitCaps["systemd/tcpkeep-watch.service"] {
		want = append(want, strings.TrimPrefix(c, "CAP_"))
	}
	if got := slices.Sorted(slices.Values(sc.Capabilities.Add)); !slices.Equal(got, slices.Sorted(slices.Values(want))) {
		t.Errorf("capabilities added: %v, want the watch unit's %v", got, want)
	}
	if !slices.Equal(sc.Capabilities.Drop, []string{"ALL"}) {
		t.Errorf("capabilities dropped: %v, want ALL", sc.Capabilities.Drop)
	}
	netns := false
	for _, m := range c.VolumeMounts {
		if m.MountPath != "/run/netns" {
			continue
		}
		netns = m.MountPropagation == "HostToContainer" && m.ReadOnly
		for _, v := range pod.Volumes {
			if v.Name == m.Name && (v.HostPath == nil || v.HostPath.Path != "/run/netns") {
				netns = false
			}
		}
	}
	if !netns {
		t.Error("/run/netns is not the host's, read-only, with HostToContainer propagation")
	}
	if c.Resources.Requests["cpu"] == "" || c.Resources.Requests["memory"] == "" || c.Resources.Limits["memory"] == "" {
		t.Errorf("resources: %+v, want cpu and memory requests and a memory limit", c.Resources)
	}
	if lp := c.LivenessProbe; lp == nil || lp.HTTPGet == nil || lp.HTTPGet.Path != "/healthz" {
		t.Error("no liveness probe on /healthz")
	}
	ann := ds.Spec.Template.Metadata.Annotations
	if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/port"] != port || ann["prometheus.io/path"] != "/metrics" {
		t.Errorf("scrape annotations %v, want scrape true, port %s, path /metrics", ann, port)
	}
	if len(c.Ports) != 1 || fmt.Sprint(c.Ports[0].ContainerPort) != port {
		t.Errorf("container ports %+v, want %s", c.Ports, port)
	}

	// The args, with Kubernetes's $(VAR) expansion of the env it sets.
	t.Logf("the DaemonSet runs: tcpkeep %s", strings.Join(c.Args, " "))
	args := slices.Clone(c.Args)
	for i, a := range args {
		for _, e := range c.Env {
			a = strings.ReplaceAll(a, "$("+e.Name+")", "10.1.2.3")
		}
		if strings.Contains(a, "$(") {
			t.Errorf("arg %q uses a variable the container does not set", c.Args[i])
		}
		args[i] = a
	}
	if i := slices.Index(args, "--listen"); i < 0 || i+1 == len(args) || !strings.HasSuffix(args[i+1], ":"+port) {
		t.Errorf("args %v: want --listen on port %s", c.Args, port)
	}
	t.Run("flags", func(t *testing.T) { flagsExist(t, "the DaemonSet", args) })
}

// TestDockerfile runs the Dockerfile's build step here (no Docker engine is
// needed for that) and checks that it makes a static binary carrying the
// version, and that the image is multi-stage with an empty final stage.
func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var froms []string
	var build string
	for _, l := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(l, "FROM "):
			froms = append(froms, l)
		case strings.HasPrefix(l, "RUN ") && strings.Contains(l, "go build"):
			build = strings.TrimPrefix(l, "RUN ")
		}
	}
	if len(froms) < 2 || !strings.Contains(froms[0], " AS build") || froms[len(froms)-1] != "FROM scratch" {
		t.Errorf("stages %q: want a build stage and a final FROM scratch", froms)
	}
	if !strings.Contains(build, "CGO_ENABLED=0") || !strings.Contains(build, "-o /out/tcpkeep") {
		t.Fatalf("build step %q: want CGO_ENABLED=0 and -o /out/tcpkeep", build)
	}
	if !bytes.Contains(b, []byte("COPY --from=build /out/tcpkeep /tcpkeep")) || !bytes.Contains(b, []byte(`ENTRYPOINT ["/tcpkeep"]`)) {
		t.Error("the final stage does not run /tcpkeep from the build stage")
	}
	if !bytes.Contains(b, []byte("EXPOSE "+port)) {
		t.Errorf("the image does not expose %s", port)
	}
	// The same -X targets as the Makefile's.
	mk, err := os.ReadFile("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range regexp.MustCompile(`-X (\S+)=`).FindAllStringSubmatch(string(mk), -1) {
		if !strings.Contains(build, "-X "+x[1]+"=") {
			t.Errorf("the build step does not set %s as the Makefile does", x[1])
		}
	}

	out := filepath.Join(t.TempDir(), "tcpkeep")
	cmd := exec.Command("sh", "-c", strings.ReplaceAll(build, "/out/tcpkeep", out))
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "VERSION=v9.9.9-test", "COMMIT=0123abc")
	if o, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the Dockerfile's build step: %v\n%s", err, o)
	}
	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("the binary is dynamically linked (%s): it would not run FROM scratch", p.Type)
		}
	}
	v, err := exec.Command(out, "version").CombinedOutput()
	if err != nil || !bytes.Contains(v, []byte("v9.9.9-test")) || !bytes.Contains(v, []byte("0123abc")) {
		t.Errorf("tcpkeep version: %v: %s; want the VERSION and COMMIT build args", err, v)
	}
}

// metricRe finds tcpkeep's metric names in PromQL.
var metricRe = regexp.MustCompile(`\btcpkeep_[a-z0-9_]+`)

// byRe finds the labels of by (...) and without (...) clauses.
var byRe = regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)

// checkExpr checks that a PromQL expression uses only listed metrics, and
// aggregates only by their labels (or the target's instance and job).
func checkExpr(t *testing.T, where, expr string) {
	t.Helper()
	labels := []string{"instance", "job"}
	names := metricRe.FindAllString(expr, -1)
	for _, n := range names {
		m, ok := metrics[n]
		if !ok {
			t.Errorf("%s queries %s, which is not one of tcpkeep's metrics", where, n)
			continue
		}
		labels = append(labels, m.labels...)
	}
	for _, by := range byRe.FindAllStringSubmatch(expr, -1) {
		for _, l := range strings.Split(by[1], ",") {
			if l = strings.TrimSpace(l); l != "" && !slices.Contains(labels, l) {
				t.Errorf("%s aggregates by %q, a label none of %v has", where, l, names)
			}
		}
	}
	if m := regexp.MustCompile(`cause[!=]~?"([^"]*)"`).FindStringSubmatch(expr); m != nil {
		for _, c := range strings.Split(m[1], "|") {
			if !slices.Contains(dropCauses, c) {
				t.Errorf("%s selects cause %q: causes are %v", where, c, dropCauses)
			}
		}
	}
}

// rulesFile is the part of a Prometheus rules file the test reads.
type rulesFile struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Alert  string `json:"alert"`
			Record string `json:"record"`
			Expr   string `json:"expr"`
		} `json:"rules"`
	} `json:"groups"`
}

// TestPrometheusRules checks the alerting rules with promtool (check rules,
// and the unit tests of alerts_test.yml), and that they use tcpkeep's metric
// names.
func TestPrometheusRules(t *testing.T) {
	promtool := tool(t, "promtool", "prometheus")
	for _, args := range [][]string{{"check", "rules", "alerts.yml"}, {"test", "rules", "alerts_test.yml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = "prometheus"
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	b, err := os.ReadFile("prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	var rf rulesFile
	if err := yaml.Unmarshal(b, &rf); err != nil {
		t.Fatal(err)
	}
	alerts := map[string]bool{}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			alerts[r.Alert] = true
			checkExpr(t, "alert "+r.Alert, r.Expr)
		}
	}
	// The alerts the issue asks for.
	for _, a := range []string{"TCPKeepHalfOpenConnections", "TCPKeepKernelTimeoutDropsRising", "TCPKeepKeepaliveTimeDefault", "TCPKeepAuditFailing", "TCPKeepAgentDown"} {
		if !alerts[a] {
			t.Errorf("no alert %s", a)
		}
	}
	// Every alert has a unit test.
	tb, err := os.ReadFile("prometheus/alerts_test.yml")
	if err != nil {
		t.Fatal(err)
	}
	for a := range alerts {
		if !bytes.Contains(tb, []byte("alertname: "+a+"\n")) {
			t.Errorf("alert %s has no test in alerts_test.yml", a)
		}
	}
}

// TestGrafanaDashboard parses the dashboard, checks that every query uses
// tcpkeep's metric names and labels and shows what the issue asks for, and
// has promtool parse every query (as recording rules).
func TestGrafanaDashboard(t *testing.T) {
	b, err := os.ReadFile("grafana/tcpkeep.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID    string            `json:"uid"`
		Panels []json.RawMessage `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("tcpkeep.json: %v", err)
	}
	if dash.UID == "" || len(dash.Panels) == 0 {
		t.Fatal("tcpkeep.json: no uid or no panels")
	}
	// Every "expr" and templating query anywhere in the document.
	var doc any
	json.Unmarshal(b, &doc)
	var exprs []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if s, ok := x.(string); ok && (k == "expr" || k == "definition") {
					exprs = append(exprs, s)
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(doc)
	used := map[string]bool{}
	for _, e := range exprs {
		checkExpr(t, "dashboard query "+e, e)
		for _, n := range metricRe.FindAllString(e, -1) {
			used[n] = true
		}
	}
	// What the issue asks the dashboard to show.
	for _, n := range []string{"tcpkeep_sockets", "tcpkeep_findings", "tcpkeep_kernel_drops_total",
		"tcpkeep_keepalive_time_seconds", "tcpkeep_keepalive_intvl_seconds", "tcpkeep_keepalive_probes", "tcpkeep_dead_peer_detect_seconds"} {
		if !used[n] {
			t.Errorf("the dashboard shows no %s", n)
		}
	}

	// PromQL syntax: the queries as recording rules, Grafana's variables filled in.
	promtool := tool(t, "promtool", "prometheus")
	fill := strings.NewReplacer("$__rate_interval", "5m", "$instance", ".*", "$netns", ".*")
	var rules strings.Builder
	rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	n := 0
	for _, e := range exprs {
		if strings.HasPrefix(e, "label_values(") {
			continue // Grafana's, not PromQL
		}
		q, _ := json.Marshal(fill.Replace(e))
		fmt.Fprintf(&rules, "      - record: dashboard:query_%d\n        expr: %s\n", n, q)
		n++
	}
	p := filepath.Join(t.TempDir(), "dashboard.yml")
	if err := os.WriteFile(p, []byte(rules.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", p).CombinedOutput(); err != nil {
		t.Errorf("promtool check rules on the dashboard's %d queries: %v\n%s", n, err, out)
	}
}

// TestPort9977: every file that names tcpkeep's port names the same one.
func TestPort9977(t *testing.T) {
	re := regexp.MustCompile(`(?:--listen[ =]\S*:|prometheus\.io/port: "|containerPort: |EXPOSE )(\d+)`)
	for _, f := range []string{"systemd/tcpkeep-watch.service", "kubernetes/daemonset.yaml", "Dockerfile", "../docs/deployment-agent.md"} {
		b, err := os.ReadFile(f)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s is missing", f)
				continue
			}
			t.Fatal(err)
		}
		found := false
		for _, m := range re.FindAllStringSubmatch(string(b), -1) {
			found = true
			if m[1] != port {
				t.Errorf("%s: %q: port %s, want %s", f, m[0], m[1], port)
			}
		}
		if !found && !bytes.Contains(b, []byte(port)) {
			t.Errorf("%s does not name port %s", f, port)
		}
	}
}
