package main

import (
	"strings"
	"testing"

	"github.com/criguard/criguard/policy"
)

// resourceHost is a fakeHost that answers for the pids, memory and cpu blocks.
type resourceHost struct {
	fakeHost
	problems func(policy.Resources) []string
}

func (h resourceHost) ResourceSupport(r policy.Resources) ([]string, error) {
	return h.problems(r), nil
}

func TestCheckHostRefusesWhatTheHostCannotEnforce(t *testing.T) {
	path := writePolicy(t, "policy.hcl", `
class "soft" {
  memory { high = "90%" }
}
class "few" {
  pids { max = 20 }
}
`)
	v1 := resourceHost{problems: func(r policy.Resources) []string {
		if r.MemoryHighSet() {
			return []string{"memory.high: cgroup v1 has no soft memory ceiling (memory.high is v2 only)"}
		}
		return nil
	}}
	stdout, stderr, code := runCheckWith(t, v1, "--host", path)
	if code != 1 || stdout != "" {
		t.Errorf("check --host = %d, stdout %q; want 1 and nothing", code, stdout)
	}
	if want := path + `: class "soft": this host cannot enforce memory.high: cgroup v1 has no soft memory ceiling`; !strings.Contains(stderr, want) {
		t.Errorf("stderr does not contain %q:\n%s", want, stderr)
	}
	if strings.Contains(stderr, `"few"`) {
		t.Errorf("a class the host can enforce was refused:\n%s", stderr)
	}
	v2 := resourceHost{problems: func(policy.Resources) []string { return nil }}
	if _, stderr, code := runCheckWith(t, v2, "--host", path); code != 0 {
		t.Errorf("check --host on a host that can enforce it = %d:\n%s", code, stderr)
	}
}
