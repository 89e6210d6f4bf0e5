package netns

import (
	"bytes"
	"strings"
)

// Attribution is who a process belongs to, as its cgroup path tells without
// asking a container runtime. Empty fields are unknown.
type Attribution struct {
	// ContainerID is the 64-hex-digit ID of the innermost container the
	// process runs in (docker, containerd, cri-o, podman).
	ContainerID string
	// PodUID is the Kubernetes pod's UID, with dashes (36 characters), or the
	// 32 hex digits the kubelet uses for a static pod.
	PodUID string
}

// ParseCgroup reads the contents of /proc/PID/cgroup, one line per hierarchy
// ("ID:CONTROLLERS:PATH"; cgroup v2's is "0::PATH"), and finds the container
// and pod the process belongs to in the path. The layouts it knows:
//
//	/docker/ID                                    docker, cgroupfs driver
//	/system.slice/docker-ID.scope                 docker, systemd driver
//	/kubepods/burstable/podUID/ID                 kubelet cgroupfs driver (containerd, docker)
//	/kubepods/podUID/crio-ID                      cri-o, cgroupfs driver
//	/kubepods.slice/kubepods-burstable.slice/
//	  kubepods-burstable-podU_I_D.slice/
//	  cri-containerd-ID.scope                     kubelet systemd driver (crio-ID.scope, docker-ID.scope)
//	/machine.slice/libpod-ID.scope/container      podman
//
// and the same under a cgroup namespace ("/../../kubepods-...") or nested
// ("/docker/OUTER/docker/INNER": the innermost wins). A runtime's monitor
// (crio-conmon-ID, libpod-conmon-ID) is not its container. Where hierarchies
// disagree (cgroup v1 beside v2), the line that tells the most wins, the first
// of equals.
func ParseCgroup(b []byte) Attribution {
	var best Attribution
	bestScore := 0
	for len(b) > 0 {
		var line []byte
		line, b, _ = bytes.Cut(b, []byte{'\n'})
		// ID:CONTROLLERS:PATH; the path may itself hold colons.
		_, rest, ok := bytes.Cut(line, []byte{':'})
		if !ok {
			continue
		}
		_, path, ok := bytes.Cut(rest, []byte{':'})
		if !ok {
			continue
		}
		a := parseCgroupPath(path)
		score := 0
		if a.ContainerID != "" {
			score += 2
		}
		if a.PodUID != "" {
			score++
		}
		if score > bestScore {
			best, bestScore = a, score
		}
	}
	return best
}

// parseCgroupPath finds the innermost container and pod elements of one path.
func parseCgroupPath(path []byte) Attribution {
	var a Attribution
	for len(path) > 0 {
		var el []byte
		el, path, _ = bytes.Cut(path, []byte{'/'})
		if id, ok := containerElement(el); ok {
			a.ContainerID = id
		}
		if uid, ok := podElement(el); ok {
			a.PodUID = uid
		}
	}
	return a
}

const idLen = 64 // docker, containerd, cri-o and podman IDs: 64 hex digits

// containerElement recognises "ID", "PREFIX-ID" and "PREFIX-ID.scope".
func containerElement(el []byte) (string, bool) {
	el = bytes.TrimSuffix(el, []byte(".scope"))
	if len(el) < idLen {
		return "", false
	}
	id := el[len(el)-idLen:]
	if !isHex(id) {
		return "", false
	}
	if prefix := el[:len(el)-idLen]; len(prefix) > 0 {
		// PREFIX-: the runtime's name (docker, cri-containerd, crio, libpod),
		// never its monitor process (crio-conmon, libpod-conmon).
		if prefix[len(prefix)-1] != '-' || bytes.HasSuffix(prefix, []byte("conmon-")) || !isName(prefix[:len(prefix)-1]) {
			return "", false
		}
	}
	return string(id), true
}

// podElement recognises the kubelet's pod cgroup: "podUID" (cgroupfs driver) or
// "...-podU_I_D.slice" (systemd driver, which cannot have dashes in a name's
// last part and writes them as underscores).
func podElement(el []byte) (string, bool) {
	var uid []byte
	switch {
	case bytes.HasPrefix(el, []byte("pod")):
		uid = el[len("pod"):]
	case bytes.HasSuffix(el, []byte(".slice")):
		i := bytes.LastIndex(el, []byte("-pod"))
		if i < 0 {
			return "", false
		}
		uid = el[i+len("-pod") : len(el)-len(".slice")]
	default:
		return "", false
	}
	return podUID(uid)
}

// podUID accepts a UUID (8-4-4-4-12 hex digits, dashes or underscores) or the
// 32 hex digits of a static pod's UID, and returns it with dashes.
func podUID(b []byte) (string, bool) {
	switch len(b) {
	case 32:
		if isHex(b) {
			return string(b), true
		}
	case 36:
		var s strings.Builder
		s.Grow(36)
		for i, c := range b {
			switch i {
			case 8, 13, 18, 23:
				if c != '-' && c != '_' {
					return "", false
				}
				s.WriteByte('-')
			default:
				if !isHexDigit(c) {
					return "", false
				}
				s.WriteByte(c)
			}
		}
		return s.String(), true
	}
	return "", false
}

func isHexDigit(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' }

func isHex(b []byte) bool {
	for _, c := range b {
		if !isHexDigit(c) {
			return false
		}
	}
	return true
}

// isName accepts a runtime's prefix: letters, digits and dashes.
func isName(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
