package main

import (
	"strings"
	"testing"

	"github.com/criguard/criguard/cgroup"
	"github.com/criguard/criguard/criservice"
)

// weightHost is a fakeHost whose disks enforce weights or not.
type weightHost struct {
	fakeHost
	support map[string]cgroup.WeightSupport
}

func (h weightHost) WeightSupport(disk string) (cgroup.WeightSupport, error) {
	return h.support[disk], nil
}

const weightHostPolicy = `
device "data" {
  path = "/var/lib/containerd"
}
device "logs" {
  path = "/var/log"
}
class "gold" {
  io {
    device = "data"
    weight = 400
  }
  io {
    device = "logs"
    weight = 50
  }
}
`

func TestCheckHostSaysWhereWeightsAreEnforced(t *testing.T) {
	host := weightHost{
		fakeHost: fakeHost{devices: map[string]string{"/var/lib/containerd": "8:0", "/var/log": "7:0"}},
		support: map[string]cgroup.WeightSupport{
			"8:0": {Scheduler: "bfq", File: "io.bfq.weight", Enforced: true},
			"7:0": {Scheduler: "none", Note: "not enforced: 7:0's scheduler none ignores weights and io.cost is not enabled on it"},
		},
	}
	path := writePolicy(t, "w.hcl", weightHostPolicy)
	stdout, stderr, code := runCheckWith(t, host, "--host", path)
	if code != 0 {
		t.Fatalf("check --host = %d, want 0: a weight a disk ignores is a warning\nstderr: %s", code, stderr)
	}
	if !strings.Contains(stdout, "weights 8:0 enforced (io.bfq.weight), 7:0 not enforced (scheduler none)") {
		t.Errorf("stdout = %q, want each disk's weight support", stdout)
	}
	if !strings.Contains(stderr, `warning: class "gold": weight 50 on /var/log: not enforced: 7:0's scheduler none`) {
		t.Errorf("stderr = %q, want the unenforced weight named", stderr)
	}
}

func TestExplainWeightLine(t *testing.T) {
	got := weightLine(criservice.WeightState{Device: "254:0", Weight: 1000, File: "io.bfq.weight", Value: 181, Have: 181,
		Enforced: true, Note: "enforced: 254:0 uses BFQ", Siblings: "the children of /sys/fs/cgroup/kubepods: 2 sibling(s) (a, b)"})
	want := "1000 on 254:0 (io.bfq.weight 181; in force 181); enforced: 254:0 uses BFQ; competes with the children of /sys/fs/cgroup/kubepods: 2 sibling(s) (a, b)"
	if got != want {
		t.Errorf("weightLine =\n%s\nwant\n%s", got, want)
	}
}
