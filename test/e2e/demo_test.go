//go:build e2e && demo

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/criguard/criguard/test/e2e/lab"
)

// TestDemo is `make demo`: a real containerd, criguard in front of it with a
// policy, one throttled and one free pod, their measured throughput side by
// side, then `criguard status`.
func TestDemo(t *testing.T) {
	lab.RequireRoot(t)
	ctrd := lab.Containerd(t)
	disk := lab.DiskDir(t)
	policyText := fmt.Sprintf(`# demo policy: pods in namespace "demo-slow" get 4 MiB/s write, 8 MiB/s read
device "data" {
  path = %q
}

class "slow" {
  io {
    device    = "data"
    write_bps = "4MiB"
    read_bps  = "8MiB"
  }
}

rule "demo" {
  match {
    namespaces = ["demo-slow"]
  }
  class = "slow"
}
`, disk)
	policyPath := newPolicyFile(t, policyText)
	cg := lab.Criguard(t, ctrd.Endpoint, "--policy", policyPath, "--metrics-addr", "")

	say := func(format string, args ...any) { fmt.Printf(format+"\n", args...) }
	say("\n== criguard in front of containerd %s", ctrd.Endpoint)
	say("== policy %s:\n%s", policyPath, policyText)

	slow := startWorker(t, cg.Endpoint, "demo-slow", "slow")
	free := startWorker(t, cg.Endpoint, "demo-free", "free")
	const mib = 16
	write := fmt.Sprintf("dd if=/dev/zero of=/data/f bs=64k count=%d oflag=direct 2>/dev/null", mib*16)
	read := fmt.Sprintf("dd if=/data/f of=/dev/null bs=64k count=%d iflag=direct 2>/dev/null", mib*16)
	rate := func(w *worker, cmd string) string {
		timing, err := lab.TimedExec(t, cg.Endpoint, w.id, "", cmd)
		if err != nil {
			t.Fatalf("%s: %v", w.pod, err)
		}
		secs := timing.Elapsed.Seconds()
		if secs < 0.01 {
			secs = 0.01 // /proc/uptime has 10 ms resolution
		}
		return fmt.Sprintf("%6.1f MiB/s (%5.2f s)", float64(mib)/secs, timing.Elapsed.Seconds())
	}
	say("\n== %d MiB written with oflag=direct, then read back with iflag=direct, inside each container", mib)
	say("%-22s %-26s %-26s", "POD", "WRITE", "READ")
	for _, w := range []*worker{slow, free} {
		wr := rate(w, write)
		rd := rate(w, read)
		say("%-22s %-26s %-26s", w.pod.String(), wr, rd)
	}

	say("\n== criguard status (limits read back from the cgroup files)")
	out, err := exec.Command(os.Getenv("CRIGUARD_BIN"), "status", "--runtime-endpoint", ctrd.Endpoint,
		"--containerd-address", ctrd.Socket, "--policy", policyPath, "--state-dir", cg.StateDir).CombinedOutput()
	if err != nil {
		t.Fatalf("criguard status: %v\n%s", err, out)
	}
	say("%s", strings.TrimRight(string(out), "\n"))
	say("\n== criguard explain %s", slow.id[:13])
	out, err = exec.Command(os.Getenv("CRIGUARD_BIN"), "explain", "--runtime-endpoint", ctrd.Endpoint,
		"--containerd-address", ctrd.Socket, "--policy", policyPath, "--state-dir", cg.StateDir, slow.id).CombinedOutput()
	if err != nil {
		t.Fatalf("criguard explain: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "another tool") || strings.Contains(string(out), "owner:") {
		t.Errorf("explain with the daemon's state dir does not know criguard's own limit as criguard's")
	}
	say("%s", strings.TrimRight(string(out), "\n"))
}
