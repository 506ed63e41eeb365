package policy

import (
	"strings"
	"testing"
)

const weightPolicy = `
device "data" {
  path = "/var/lib/containerd"
}
class "batch" {
  io {
    device    = "data"
    weight    = 50
    write_bps = "40MiB"
  }
}
class "gold" {
  io {
    device = "data"
    weight = 800
  }
}
class "light" {
  io {
    device = "data"
    weight = 10
  }
}
rule "shared" {
  match {
    namespaces = ["shared"]
  }
  class = "batch"
  scope = "pod"
}
rule "tenants" {
  match {
    namespaces = ["tenant-*"]
  }
  class = "batch"
}
rule "plain" {
  match {
    namespaces = ["plain"]
  }
  class = "nothing"
}
class "nothing" {
  io {
    device    = "data"
    read_bps  = "1GiB"
  }
}
`

func parseWeightPolicy(t *testing.T, annotations string) *Policy {
	t.Helper()
	p, diags := Parse([]byte(weightPolicy+annotations), "weights.hcl")
	if diags.HasErrors() {
		t.Fatalf("parse: %v", diags)
	}
	return p
}

func weightOn(d Decision, device string) uint64 {
	for _, l := range d.IO {
		if l.Device == device {
			return l.Weight
		}
	}
	return 0
}

func TestWeightParsesAndDecideCarriesIt(t *testing.T) {
	p := parseWeightPolicy(t, "")
	if got := p.Classes["gold"].IO; len(got) != 1 || got[0].Weight != 800 || !got[0].IsZero() {
		t.Fatalf("class gold io = %+v, want one weight-only block of 800", got)
	}
	d := p.Decide(Workload{Namespace: "tenant-a", PodName: "p", ContainerName: "c"})
	if got := weightOn(d, "/var/lib/containerd"); got != 50 || !d.HasWeights() {
		t.Fatalf("decision %+v: weight %d, want 50", d, got)
	}
	if d.IO[0].WriteBPS != 40<<20 {
		t.Fatalf("the weight lost the cap beside it: %+v", d.IO)
	}
	if d := p.Decide(Workload{Namespace: "plain", PodName: "p", ContainerName: "c"}); d.HasWeights() {
		t.Fatalf("a class without weight gave one: %+v", d.IO)
	}
}

func TestPodScopedWeightIsThePods(t *testing.T) {
	p := parseWeightPolicy(t, "")
	pod := p.Decide(Workload{Namespace: "shared", PodName: "p"})
	if pod.Scope != ScopePod || weightOn(pod, "/var/lib/containerd") != 50 {
		t.Fatalf("pod decision %+v, want scope pod with weight 50", pod)
	}
	ct := p.Decide(Workload{Namespace: "shared", PodName: "p", ContainerName: "c"})
	if ct.Scope != ScopePod {
		t.Fatalf("container of a pod-scope rule decided %q: the weight would land on the container", ct.Scope)
	}
}

// A tenant's annotations may lower a weight, never raise it: not by number, not by
// picking a class with a higher weight, not with allow_loosen.
func TestHostileAnnotationsCannotRaiseWeight(t *testing.T) {
	const data = "/var/lib/containerd"
	enabled := `
annotations {
  enabled = true
  classes = ["gold", "light"]
}`
	loosen := `
annotations {
  enabled      = true
  allow_loosen = true
  classes      = ["gold", "light"]
}`
	tests := []struct {
		name        string
		annotations string
		namespace   string
		asks        map[string]string
		want        uint64
		ignored     IgnoredReason
	}{
		{"number above the rule's", enabled, "tenant-a", map[string]string{AnnotationIOWeight: "9000"}, 50, IgnoredLooserThanRule},
		{"number above the rule's, allow_loosen", loosen, "tenant-a", map[string]string{AnnotationIOWeight: "9000"}, 50, IgnoredLooserThanRule},
		{"number below the rule's", enabled, "tenant-a", map[string]string{AnnotationIOWeight: "20"}, 20, ""},
		{"container-level number below", enabled, "tenant-a", map[string]string{AnnotationIOWeight + ".c": "5"}, 5, ""},
		{"number above the range", loosen, "tenant-a", map[string]string{AnnotationIOWeight: "10001"}, 50, IgnoredInvalid},
		{"zero", loosen, "tenant-a", map[string]string{AnnotationIOWeight: "0"}, 50, IgnoredInvalid},
		{"negative", loosen, "tenant-a", map[string]string{AnnotationIOWeight: "-5"}, 50, IgnoredInvalid},
		{"class with a higher weight", enabled, "tenant-a", map[string]string{AnnotationPodClass: "gold"}, 50, ""},
		{"class with a higher weight, allow_loosen", loosen, "tenant-a", map[string]string{AnnotationPodClass: "gold"}, 50, IgnoredLooserThanRule},
		{"class with a lower weight", loosen, "tenant-a", map[string]string{AnnotationPodClass: "light"}, 10, ""},
		{"no rule weight: a class is held to the default", loosen, "plain", map[string]string{AnnotationPodClass: "gold"}, DefaultWeight, IgnoredLooserThanRule},
		{"no rule weight: a number is held to the default", loosen, "plain", map[string]string{AnnotationIOWeight: "101"}, 0, IgnoredLooserThanRule},
		{"no rule at all: a number below the default", enabled, "elsewhere", map[string]string{AnnotationIOWeight: "60"}, 60, ""},
		{"annotations off", "", "tenant-a", map[string]string{AnnotationIOWeight: "10"}, 50, IgnoredNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := parseWeightPolicy(t, tt.annotations)
			d := p.Decide(Workload{Namespace: tt.namespace, PodName: "p", ContainerName: "c", PodAnnotations: tt.asks})
			if got := weightOn(d, data); got != tt.want {
				t.Errorf("weight %d, want %d (decision %+v)", got, tt.want, d)
			}
			var reasons []string
			for _, ig := range d.Ignored {
				reasons = append(reasons, string(ig.Reason)+": "+ig.Detail)
			}
			joined := strings.Join(reasons, "; ")
			if tt.ignored == "" && len(d.Ignored) > 0 {
				t.Errorf("ignored %s, want nothing ignored", joined)
			}
			if tt.ignored != "" && !strings.Contains(joined, string(tt.ignored)) {
				t.Errorf("ignored %q, want a %s entry", joined, tt.ignored)
			}
		})
	}
}

// On a pod-scope rule a container's own weight ask is not allowed: the weight is the
// pod's, on the pod's cgroup.
func TestContainerCannotSplitPodWeight(t *testing.T) {
	p := parseWeightPolicy(t, "\nannotations {\n  enabled = true\n}\n")
	d := p.Decide(Workload{Namespace: "shared", PodName: "p", ContainerName: "c",
		PodAnnotations: map[string]string{AnnotationIOWeight + ".c": "5"}})
	if got := weightOn(d, "/var/lib/containerd"); got != 50 {
		t.Fatalf("weight %d, want the pod's 50", got)
	}
	if len(d.Ignored) != 1 || d.Ignored[0].Reason != IgnoredNotAllowed {
		t.Fatalf("ignored %+v, want the container's ask not allowed", d.Ignored)
	}
}
