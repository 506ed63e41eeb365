//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/criguard/criguard/criservice"
	"github.com/criguard/criguard/test/e2e/lab"
)

// weightsPolicy weights a loop device: per container in one namespace, per pod in
// another.
func weightsPolicy(loop string) string {
	return fmt.Sprintf(`device "loop" {
  path = %q
}

class "heavy" {
  io {
    device = "loop"
    weight = 400
  }
}

class "light-pods" {
  io {
    device = "loop"
    weight = 50
  }
}

rule "heavy" {
  match {
    namespaces = ["weighted-*"]
  }
  class = "heavy"
}

rule "light-pods" {
  match {
    namespaces = ["podweight-*"]
  }
  class = "light-pods"
  scope = "pod"
}
`, loop)
}

// v1 weight files: BFQ's, and CFQ's (gone since kernel 5.0).
var v1WeightFiles = []string{"blkio.bfq.weight_device", "blkio.weight_device", "blkio.bfq.weight", "blkio.weight"}

// TestWeightsContainerd proves on the real v1 kernel that a weight goes where the
// loop device's scheduler reads it, and that explain says whether it is enforced
// there: "not enforced" under none and mq-deadline (which ignore weights, and v1 has
// no io.cost), with nothing written; under BFQ, when the kernel offers it, the line
// in blkio.bfq.weight_device. It follows a scheduler switch at run time.
func TestWeightsContainerd(t *testing.T) {
	ctrd := lab.Containerd(t)
	loop := lab.LoopVolume(t, filepath.Join(t.TempDir(), "weighted"), 64)
	schedulerFile := filepath.Join("/sys/dev/block", loop.Dev, "queue", "scheduler")
	policyPath := newPolicyFile(t, weightsPolicy(loop.Device))
	cg := lab.Criguard(t, ctrd.Endpoint, "--policy", policyPath, "--containerd-address", ctrd.Socket,
		"--metrics-addr", "", "--reconcile-interval", "1s")
	flags := []string{"--runtime-endpoint", ctrd.Endpoint, "--containerd-address", ctrd.Socket, "--policy", policyPath}

	explainWeight := func(id string) (criservice.Explanation, string) {
		t.Helper()
		var ex criservice.Explanation
		lab.DecodeJSON(t, criguardCLI(t, append(append([]string{"explain", "-o", "json"}, flags...), id)...), &ex)
		return ex, criguardCLI(t, append(append([]string{"explain"}, flags...), id)...)
	}
	setScheduler := func(name string) {
		t.Helper()
		if err := os.WriteFile(schedulerFile, []byte(name), 0o644); err != nil {
			t.Fatalf("set %s to %s: %v", schedulerFile, name, err)
		}
	}
	original := readScheduler(t, schedulerFile)
	t.Cleanup(func() { os.WriteFile(schedulerFile, []byte(original), 0o644) })
	offered, _ := os.ReadFile(schedulerFile)
	t.Logf("%s offers %q", schedulerFile, strings.TrimSpace(string(offered)))

	w := startWorker(t, cg.Endpoint, "weighted-e2e", "app")
	for _, scheduler := range []string{"none", "mq-deadline"} {
		setScheduler(scheduler)
		ex, text := explainWeight(w.id)
		if len(ex.Weights) != 1 {
			t.Fatalf("explain weights = %+v, want one on %s", ex.Weights, loop.Dev)
		}
		got := ex.Weights[0]
		wantNote := fmt.Sprintf("not enforced: %s's scheduler %s ignores weights, and io.cost exists only on cgroup v2", loop.Dev, scheduler)
		if got.Enforced || got.Device != loop.Dev || got.Weight != 400 || !strings.HasPrefix(got.Note, wantNote) {
			t.Errorf("under %s: explain weight %+v, want 400 on %s, %q", scheduler, got, loop.Dev, wantNote)
		}
		if want := "the children of " + filepath.Dir(w.dir); !strings.HasPrefix(got.Siblings, want) {
			t.Errorf("siblings %q, want %q… (the containers of the pod)", got.Siblings, want)
		}
		if !strings.Contains(text, "weight:       400 on "+loop.Dev+"; not enforced") {
			t.Errorf("explain text under %s lacks the weight line:\n%s", scheduler, text)
		}
		t.Logf("explain under %s: %s", scheduler, got.Note)
	}
	// Nothing written where nothing enforces: no weight file holds the loop's line.
	for _, file := range v1WeightFiles {
		if b, err := os.ReadFile(filepath.Join(w.dir, file)); err == nil && strings.Contains(string(b), loop.Dev+" ") {
			t.Errorf("%s holds %q: a weight was written where the scheduler ignores it", file, b)
		}
	}
	if log := cg.Log(200); !strings.Contains(log, "weight not enforced on this device") {
		t.Errorf("criguard never said the weight is not enforced:%s", criguardLog(cg))
	}

	// A pod-scope weight is explained on the pod's cgroup, among its sibling pods.
	pw := startWorker(t, cg.Endpoint, "podweight-e2e", "app")
	ex, _ := explainWeight(pw.id)
	if ex.Pod == nil || len(ex.Pod.Weights) != 1 || ex.Pod.Weights[0].Weight != 50 {
		t.Fatalf("explain of a pod-scope weight: pod part %+v, want weight 50 on the pod", ex.Pod)
	}
	podDir := lab.BlkioDir(t, pw.pod.CgroupParent())
	if want := "the children of " + filepath.Dir(podDir); !strings.HasPrefix(ex.Pod.Weights[0].Siblings, want) {
		t.Errorf("pod weight siblings %q, want %q… (the pods of its QoS class)", ex.Pod.Weights[0].Siblings, want)
	}
	if len(ex.Weights) != 0 {
		t.Errorf("container of a pod-scope rule carries weights %+v: the weight is the pod's", ex.Weights)
	}

	// BFQ, where the kernel has it: the weight lands in blkio.bfq.weight_device.
	if !strings.Contains(string(offered), "bfq") {
		t.Logf("this kernel offers no BFQ for %s: the enforced path is proved by the unit tests over a fake sysfs (criservice/weight_test.go)", loop.Dev)
		return
	}
	setScheduler("bfq")
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(filepath.Join(w.dir, "blkio.bfq.weight_device"))
		if strings.Contains(string(b), loop.Dev+" 181") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("blkio.bfq.weight_device = %q, want %s 181 (400 on BFQ's scale)%s", b, loop.Dev, criguardLog(cg))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if ex, _ := explainWeight(w.id); len(ex.Weights) != 1 || !ex.Weights[0].Enforced || ex.Weights[0].Have != 181 {
		t.Errorf("explain under bfq = %+v, want enforced with 181 in force", ex.Weights)
	}
}

func readScheduler(t *testing.T, file string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range strings.Fields(string(b)) {
		if strings.HasPrefix(f, "[") {
			return strings.Trim(f, "[]")
		}
	}
	return strings.TrimSpace(string(b))
}
