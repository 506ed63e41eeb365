package examples

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func requireLines(t *testing.T, file, text string, want ...string) {
	t.Helper()
	lines := map[string]bool{}
	for _, l := range strings.Split(text, "\n") {
		lines[strings.TrimSpace(l)] = true
	}
	for _, w := range want {
		if !lines[w] {
			t.Errorf("%s lacks the line %q", file, w)
		}
	}
}

// The socket stays with systemd across restarts, criguard says when it is
// ready, and nothing ties kubelet's lifetime to criguard's.
func TestSystemdUnits(t *testing.T) {
	socket := read(t, "systemd/criguard.socket")
	service := read(t, "systemd/criguard.service")
	dropIn := read(t, "systemd/20-criguard.conf")
	requireLines(t, "criguard.socket", socket,
		"ListenStream="+strings.TrimPrefix(criguardSocket, "unix://"), "SocketMode=0660", "WantedBy=sockets.target")
	requireLines(t, "criguard.service", service,
		"Type=notify", "NotifyAccess=main", "Requires=criguard.socket", "Restart=always", "WatchdogSec=30",
		"ExecStart=/usr/local/bin/criguard serve", "ExecReload=/bin/kill -HUP $MAINPID")
	requireLines(t, "20-criguard.conf", dropIn, "After=criguard.socket", "Wants=criguard.socket criguard.service")
	requireLines(t, "criguard.service", service, "After=criguard.socket containerd.service docker.service cri-docker.service crio.service")
	// Ordered after the runtimes, never pulling one in: the node's runtime may be
	// another than the unit named (containerd 2.x under its own name, CRI-O).
	for _, l := range strings.Split(service, "\n") {
		key, units, ok := strings.Cut(strings.TrimSpace(l), "=")
		if !ok || (key != "Wants" && key != "Requires" && key != "BindsTo" && key != "Requisite") {
			continue
		}
		for _, unit := range strings.Fields(units) {
			if unit != "criguard.socket" {
				t.Errorf("criguard.service: %q would start %s on a node that may run another runtime", l, unit)
			}
		}
	}
	// A unit that requires another is restarted with it: kubelet must not require criguard.
	for _, c := range []struct{ file, text, banned string }{
		{"criguard.service", service, "RequiredBy=kubelet.service"},
		{"20-criguard.conf", dropIn, "Requires=criguard"},
	} {
		for _, l := range strings.Split(c.text, "\n") {
			if strings.HasPrefix(l, c.banned) {
				t.Errorf("%s: %q would restart kubelet whenever criguard restarts", c.file, l)
			}
		}
	}
}

// systemd-analyze verify loads the socket, the service and kubelet with the
// drop-in together, as systemd would.
func TestSystemdUnitsVerify(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed (Debian: systemd)")
	}
	dir := t.TempDir()
	// verify insists that ExecStart exists; point it at a real executable.
	fake := filepath.Join(dir, "criguard")
	write := func(name, text string, mode os.FileMode) {
		t.Helper()
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(text), mode); err != nil {
			t.Fatal(err)
		}
	}
	write("criguard", "#!/bin/sh\n", 0o755)
	write("criguard.socket", read(t, "systemd/criguard.socket"), 0o644)
	write("criguard.service", strings.ReplaceAll(read(t, "systemd/criguard.service"), "/usr/local/bin/criguard", fake), 0o644)
	write("kubelet.service", "[Service]\nExecStart="+fake+"\n", 0o644)
	write("kubelet.service.d/20-criguard.conf", strings.ReplaceAll(read(t, "systemd/20-criguard.conf"), "/usr/bin/kubelet", fake), 0o644)
	cmd := exec.Command(analyze, "verify", "criguard.socket", "criguard.service", "kubelet.service")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	// verify exits 0 on unknown keys and bad values: any line is a finding. Units the
	// service orders itself after (containerd, docker, CRI-O) need not exist on a test host.
	var problems []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line == "" || strings.Contains(line, "containerd.service") || strings.Contains(line, "docker.service") || strings.Contains(line, "crio.service") {
			continue
		}
		problems = append(problems, line)
	}
	if err != nil || len(problems) > 0 {
		t.Errorf("systemd-analyze verify (exit %v):\n%s", err, strings.Join(problems, "\n"))
	}
}
