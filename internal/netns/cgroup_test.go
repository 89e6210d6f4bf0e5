package netns

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The IDs the fixtures under testdata/cgroup use.
const (
	fixContainer = "d0f631ca1ddba8db3bcfcb9e057cdc98d0379f1bee00e75a545147a27dadd982"
	fixOuter     = "9c0abe51c6e6655d81de2d044d4fb194931f058c0426c67c7285d8f5657ed64a"
	fixPod       = "bb82030d-bc2b-caba-32a9-0bf2e207a84a"
	fixStaticPod = "2053dbbf6ec7135c4e994d3464c478db"
)

// cgroupCases: one row per fixture, what /proc/PID/cgroup of a process in that
// layout tells.
var cgroupCases = []struct {
	file string
	want Attribution
}{
	{"docker-v1-cgroupfs", Attribution{ContainerID: fixContainer}},
	{"docker-v1-systemd", Attribution{ContainerID: fixContainer}},
	{"docker-v2-systemd", Attribution{ContainerID: fixContainer}},
	{"docker-v2-cgroupfs", Attribution{ContainerID: fixContainer}},
	{"docker-in-docker-v1", Attribution{ContainerID: fixContainer}}, // the inner one, not fixOuter
	{"k8s-containerd-v1-cgroupfs-besteffort", Attribution{ContainerID: fixContainer, PodUID: fixPod}},
	{"k8s-containerd-v1-cgroupfs-guaranteed", Attribution{ContainerID: fixContainer, PodUID: fixPod}},
	{"k8s-containerd-v2-systemd-burstable", Attribution{ContainerID: fixContainer, PodUID: fixPod}},
	{"k8s-containerd-v2-systemd-guaranteed", Attribution{ContainerID: fixContainer, PodUID: fixPod}},
	{"k8s-containerd-v2-cgroupns", Attribution{ContainerID: fixContainer, PodUID: fixPod}},
	{"k8s-containerd-v2-subcgroup", Attribution{ContainerID: fixContainer, PodUID: fixPod}},
	{"k8s-static-pod-v2", Attribution{ContainerID: fixContainer, PodUID: fixStaticPod}},
	{"k8s-kind-v2", Attribution{ContainerID: fixContainer, PodUID: fixPod}},
	{"k8s-crio-v2-systemd", Attribution{ContainerID: fixContainer, PodUID: fixPod}},
	{"k8s-crio-v2-conmon", Attribution{PodUID: fixPod}}, // the monitor, not the container
	{"k8s-crio-v1-cgroupfs", Attribution{ContainerID: fixContainer, PodUID: fixPod}},
	{"k8s-dockershim-v1-systemd", Attribution{ContainerID: fixContainer, PodUID: fixPod}},
	{"k8s-pod-slice-only-v2", Attribution{PodUID: fixPod}},
	{"podman-v2-root", Attribution{ContainerID: fixContainer}},
	{"podman-v2-rootless", Attribution{ContainerID: fixContainer}},
	{"podman-v2-conmon", Attribution{}},
	{"containerd-v2-cgroupfs-default-ns", Attribution{ContainerID: fixContainer}},
	{"ecs-v1", Attribution{ContainerID: fixContainer}},
	{"host-v2-init", Attribution{}},
	{"host-v2-service", Attribution{}},
	{"host-v2-session", Attribution{}},
	{"host-v1-hybrid", Attribution{}},
	{"host-v1-hybrid-sandbox", Attribution{}}, // captured on the machine the tests run on
	{"empty", Attribution{}},
	{"garbage", Attribution{}},
}

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "cgroup", name+".txt"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseCgroupFixtures(t *testing.T) {
	seen := map[string]bool{}
	for _, tc := range cgroupCases {
		seen[tc.file+".txt"] = true
		t.Run(tc.file, func(t *testing.T) {
			if got := ParseCgroup(readFixture(t, tc.file)); got != tc.want {
				t.Errorf("ParseCgroup = %+v, want %+v", got, tc.want)
			}
		})
	}
	// Every fixture has a row: none is left untested.
	ents, err := os.ReadDir(filepath.Join("testdata", "cgroup"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !seen[e.Name()] {
			t.Errorf("testdata/cgroup/%s has no row in cgroupCases", e.Name())
		}
	}
}

func TestParseCgroupEdges(t *testing.T) {
	id := fixContainer
	for _, tc := range []struct {
		name, in string
		want     Attribution
	}{
		{"no newline at the end", "0::/docker/" + id, Attribution{ContainerID: id}},
		{"63 hex digits", "0::/docker/" + id[1:], Attribution{}},
		{"upper-case hex is no runtime's", "0::/docker/" + strings.ToUpper(id), Attribution{}},
		{"65 hex digits", "0::/docker/a" + id, Attribution{}},
		{"id glued to a word", "0::/dockerx" + id + ".scope", Attribution{}},
		{"prefix with a dot", "0::/sys.tem-" + id + ".scope", Attribution{}},
		{"pod uid with a bad separator", "0::/kubepods/podbb82030d.bc2b-caba-32a9-0bf2e207a84a/" + id, Attribution{ContainerID: id}},
		{"pod uid too short", "0::/kubepods/podbb82030d-bc2b-caba-32a9-0bf2e207a84/" + id, Attribution{ContainerID: id}},
		{"slice without pod", "0::/kubepods.slice/kubepods-burstable.slice", Attribution{}},
		{"colon in the path", "0::/a:b/docker-" + id + ".scope", Attribution{ContainerID: id}},
		{"v1 line tells more than v2", "1:pids:/kubepods/pod" + fixPod + "/" + id + "\n0::/\n", Attribution{ContainerID: id, PodUID: fixPod}},
		{"first of equals", "2:pids:/docker/" + id + "\n1:cpu:/docker/" + fixOuter + "\n", Attribution{ContainerID: id}},
	} {
		if got := ParseCgroup([]byte(tc.in)); got != tc.want {
			t.Errorf("%s: ParseCgroup(%q) = %+v, want %+v", tc.name, tc.in, got, tc.want)
		}
	}
}

var (
	reContainer = regexp.MustCompile(`^[0-9a-f]{64}$`)
	rePod       = regexp.MustCompile(`^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32})$`)
)

// FuzzParseCgroup: any bytes, no panic, and what comes out is well-formed and
// was in the input.
func FuzzParseCgroup(f *testing.F) {
	for _, tc := range cgroupCases {
		f.Add(readFixture(f, tc.file))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		a := ParseCgroup(b)
		if a.ContainerID != "" && (!reContainer.MatchString(a.ContainerID) || !bytes.Contains(b, []byte(a.ContainerID))) {
			t.Fatalf("container ID %q from %q", a.ContainerID, b)
		}
		if a.PodUID != "" {
			if !rePod.MatchString(a.PodUID) {
				t.Fatalf("pod UID %q from %q", a.PodUID, b)
			}
			if !bytes.Contains(b, []byte(a.PodUID)) && !bytes.Contains(b, []byte(strings.ReplaceAll(a.PodUID, "-", "_"))) &&
				!bytes.Contains(bytes.ReplaceAll(b, []byte("_"), []byte("-")), []byte(a.PodUID)) {
				t.Fatalf("pod UID %q is not in %q", a.PodUID, b)
			}
		}
	})
}
