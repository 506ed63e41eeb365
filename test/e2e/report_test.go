//go:build e2e

package e2e

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/criguard/criguard/criservice"
	"github.com/criguard/criguard/test/e2e/lab"
)

// criguardCLI runs a criguard subcommand and returns its stdout.
func criguardCLI(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(os.Getenv("CRIGUARD_BIN"), args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("criguard %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}

// TestExplainAndStatusContainerd checks explain and status against the real
// containerd and the real cgroup files, with the daemon running and stopped.
func TestExplainAndStatusContainerd(t *testing.T) {
	ctrd := lab.Containerd(t)
	dev := lab.WholeDisk(t, ctrd.Root)
	policyPath := newPolicyFile(t, throttlePolicy(ctrd.Root, "1MiB"))
	cg := lab.Criguard(t, ctrd.Endpoint, "--policy", policyPath, "--containerd-address", ctrd.Socket,
		"--metrics-addr", "", "--reconcile-interval", "1h")
	slow := startWorker(t, cg.Endpoint, "throttled-report", "slow")
	free := startWorker(t, cg.Endpoint, "free-report", "free")
	flags := []string{"--runtime-endpoint", ctrd.Endpoint, "--containerd-address", ctrd.Socket, "--policy", policyPath}

	var ex criservice.Explanation
	lab.DecodeJSON(t, criguardCLI(t, append(append([]string{"explain", "-o", "json"}, flags...), slow.id)...), &ex)
	if ex.Decision.Rule != "throttled" || ex.Workload.Namespace != "throttled-report" || ex.Workload.QoS != "burstable" {
		t.Errorf("explain decision/workload = %+v / %+v", ex.Decision, ex.Workload)
	}
	if ex.Dir != slow.dir {
		t.Errorf("explain cgroup dir = %q, want %q", ex.Dir, slow.dir)
	}
	if len(ex.Current) != 1 || ex.Current[0].Device.String() != dev || ex.Current[0].WriteBPS != 1*mib || len(ex.Pending) != 0 {
		t.Errorf("explain read back %+v pending %+v, want %s at 1 MiB/s and nothing pending", ex.Current, ex.Pending, dev)
	}
	text := criguardCLI(t, append(append([]string{"explain"}, flags...), slow.id)...)
	for _, want := range []string{`decision:     rule "throttled"`, "buffered writes", "wbps=1MiB"} {
		if !strings.Contains(text, want) {
			t.Errorf("explain text lacks %q:\n%s", want, text)
		}
	}

	statusOf := func() map[string]criservice.Report {
		var reports []criservice.Report
		lab.DecodeJSON(t, criguardCLI(t, append([]string{"status", "-o", "json"}, flags...)...), &reports)
		byID := map[string]criservice.Report{}
		for _, r := range reports {
			byID[r.ID] = r
		}
		return byID
	}
	rows := statusOf()
	if r := rows[slow.id]; !r.Match || len(r.Have) != 1 || r.Have[0].WriteBPS != 1*mib || r.Dir != slow.dir {
		t.Errorf("status of the throttled container = %+v", r)
	}
	if r := rows[free.id]; !r.Match || len(r.Have) != 0 {
		t.Errorf("status of the free container = %+v", r)
	}

	// With the daemon down, status still reads the files, and sees drift.
	if err := cg.Stop(t, 10*time.Second); err != nil {
		t.Fatalf("stop criguard: %v", err)
	}
	lab.SetThrottle(t, slow.dir, writeBPSFile, dev, 0)
	if r := statusOf()[slow.id]; r.Match || len(r.Have) != 1 || r.Have[0].WriteBPS != 0 || r.Have[0].ReadBPS != 2*mib {
		t.Errorf("status after drift with the daemon down = %+v, want a mismatch read from the file", r)
	}
	// The default table fits a terminal: the row, the mismatch and what is in force.
	table := criguardCLI(t, append([]string{"status"}, flags...)...)
	row := lineWith(table, slow.id[:13])
	if !strings.Contains(row, "throttled-report/") || !strings.Contains(row, " no ") ||
		!strings.Contains(row, "rbps=2MiB") || strings.Contains(row, "wbps") {
		t.Errorf("status table does not show the mismatch (rbps=2MiB in force, no wbps):\n%s", table)
	}
	// -o wide has the rest: in force and wanted in full, and the cgroup directory.
	wide := lineWith(criguardCLI(t, append([]string{"status", "-o", "wide"}, flags...)...), slow.id[:13])
	for _, want := range []string{"rbps=2MiB wbps=- riops=- wiops=-", "rbps=2MiB wbps=1MiB riops=- wiops=-", slow.dir} {
		if !strings.Contains(wide, want) {
			t.Errorf("status -o wide row lacks %q:\n%s", want, wide)
		}
	}
}

// lineWith is the line of text that contains s, or "".
func lineWith(text, s string) string {
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			return l
		}
	}
	return ""
}
