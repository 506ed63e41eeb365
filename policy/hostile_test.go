package policy

import (
	"fmt"
	"strings"
	"testing"
)

// The README's own examples tried as a hostile pod author would: a rule gives write
// 1MiB/s and read 2MiB/s on two disks; nothing a pod writes in its annotations may
// loosen that, drop a key it did not ask about, or drop the other disk.
func TestHostileAnnotationsCannotLoosen(t *testing.T) {
	const rules = `
device "data" {
  path = "/var/lib/containerd"
}
class "slow" {
  io {
    device    = "data"
    write_bps = "1MiB"
    read_bps  = "2MiB"
  }
  io {
    device     = "8:16"
    write_iops = 50
  }
}
class "fast" {
  io {
    device    = "data"
    write_bps = "500MiB"
  }
}
rule "tenants" {
  match {
    namespaces = ["tenant-*"]
  }
  class = "slow"
}
`
	const data = "/var/lib/containerd"
	ruleIO := fmt.Sprint([]IOLimits{{Device: data, ReadBPS: 2 << 20, WriteBPS: 1 << 20}, {Device: "8:16", WriteIOPS: 50}})
	tests := []struct {
		name        string
		annotations string // the annotations block, if any
		asks        map[string]string
		io          string
		reasons     []IgnoredReason
	}{
		{name: "no annotations block: a class annotation does nothing",
			asks: map[string]string{AnnotationPodClass: "fast"}, io: ruleIO, reasons: []IgnoredReason{IgnoredNotAllowed}},
		{name: "enabled, but the class is not listed",
			annotations: `annotations {
  enabled = true
}`, asks: map[string]string{AnnotationPodClass: "fast"}, io: ruleIO, reasons: []IgnoredReason{IgnoredNotAllowed}},
		{name: "listed class: it can only tighten",
			annotations: `annotations {
  enabled = true
  classes = ["fast"]
}`, asks: map[string]string{AnnotationPodClass: "fast"}, io: ruleIO},
		{name: "numbers while annotations are off",
			asks: map[string]string{AnnotationWriteBPS: "100KiB"}, io: ruleIO, reasons: []IgnoredReason{IgnoredNotAllowed}},
		{name: "read-bps 0 does not lift anything",
			annotations: enabledMax, asks: map[string]string{AnnotationReadBPS: "0"}, io: ruleIO, reasons: []IgnoredReason{IgnoredInvalid}},
		{name: "1000PiB is not clamped to the maximum: it is ignored",
			annotations: enabledMax, asks: map[string]string{AnnotationWriteBPS: "1000PiB"}, io: ruleIO, reasons: []IgnoredReason{IgnoredAboveMax}},
		{name: "looser than the rule",
			annotations: enabledMax, asks: map[string]string{AnnotationWriteBPS: "100MiB"}, io: ruleIO, reasons: []IgnoredReason{IgnoredLooserThanRule}},
		{name: "stricter write keeps the read limit and the other disk",
			annotations: enabledMax, asks: map[string]string{AnnotationWriteBPS: "512KiB"},
			io: fmt.Sprint([]IOLimits{{Device: data, ReadBPS: 2 << 20, WriteBPS: 512 << 10}, {Device: "8:16", WriteIOPS: 50}})},
		{name: "a container-level ask cannot loosen either",
			annotations: enabledMax, asks: map[string]string{AnnotationWriteBPS: "512KiB", AnnotationWriteBPS + ".app": "100MiB"},
			io: ruleIO, reasons: []IgnoredReason{IgnoredLooserThanRule}},
		{name: "negative, overflowing, fractional, hex, spaces",
			annotations: enabledMax, asks: map[string]string{AnnotationWriteBPS: "-1", AnnotationReadBPS: "18446744073709551616",
				AnnotationReadIOPS: "0.5", AnnotationWriteIOPS: "0x10"},
			io: ruleIO, reasons: []IgnoredReason{IgnoredInvalid, IgnoredInvalid, IgnoredInvalid, IgnoredInvalid}},
		{name: "a class the policy does not know does not escape the rule",
			annotations: enabledMax, asks: map[string]string{AnnotationPodClass: "runtime-gold"}, io: ruleIO},
		{name: "allow_loosen: up to the maximum",
			annotations: `annotations {
  enabled       = true
  allow_loosen  = true
  max_write_bps = "200MiB"
}`, asks: map[string]string{AnnotationWriteBPS: "100MiB"},
			io: fmt.Sprint([]IOLimits{{Device: data, ReadBPS: 2 << 20, WriteBPS: 100 << 20}, {Device: "8:16", WriteIOPS: 50}})},
		{name: "allow_loosen: above the maximum is ignored",
			annotations: `annotations {
  enabled       = true
  allow_loosen  = true
  max_write_bps = "200MiB"
}`, asks: map[string]string{AnnotationWriteBPS: "201MiB"}, io: ruleIO, reasons: []IgnoredReason{IgnoredAboveMax}},
		{name: "allow_loosen: a class pick sets its own keys and disks, no others",
			annotations: `annotations {
  enabled      = true
  allow_loosen = true
  classes      = ["fast"]
}`, asks: map[string]string{AnnotationPodClass: "fast"},
			io: fmt.Sprint([]IOLimits{{Device: data, ReadBPS: 2 << 20, WriteBPS: 500 << 20}, {Device: "8:16", WriteIOPS: 50}})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustParse(t, rules+tt.annotations)
			d := p.Decide(Workload{Namespace: "tenant-a", ContainerName: "app", PodAnnotations: tt.asks})
			if got := fmt.Sprint(d.IO); got != tt.io {
				t.Errorf("IO = %s\nwant %s\n(%s)", got, tt.io, d.Reason)
			}
			if d.HandsOff {
				t.Errorf("hands off for a workload a rule throttles")
			}
			var reasons []IgnoredReason
			for _, ig := range d.Ignored {
				reasons = append(reasons, ig.Reason)
			}
			if fmt.Sprint(reasons) != fmt.Sprint(tt.reasons) {
				t.Errorf("ignored = %v, want reasons %v", d.Ignored, tt.reasons)
			}
		})
	}
}

const enabledMax = `annotations {
  enabled       = true
  max_write_bps = "200MiB"
}`

// A pod budget is one number for the pod: a tenant may tighten it from the pod's
// annotations, and can never split it per container into more than the budget.
func TestHostileAnnotationsKeepThePodBudget(t *testing.T) {
	p := mustParse(t, `
device "data" {
  path = "8:0"
}
class "budget" {
  io {
    device    = "data"
    write_bps = "10MiB"
  }
}
rule "tenants" {
  class = "budget"
  scope = "pod"
}
`+enabledMax)
	asks := map[string]string{AnnotationWriteBPS: "5MiB", AnnotationWriteBPS + ".app": "9MiB"}
	pod := p.Decide(Workload{Namespace: "t", PodAnnotations: asks})
	ct := p.Decide(Workload{Namespace: "t", ContainerName: "app", PodAnnotations: asks})
	want := fmt.Sprint([]IOLimits{{Device: "8:0", WriteBPS: 5 << 20}})
	if pod.Scope != ScopePod || fmt.Sprint(pod.IO) != want {
		t.Errorf("pod: %s %v, want a pod budget %s", pod.Scope, pod.IO, want)
	}
	if ct.Scope != ScopePod || fmt.Sprint(ct.IO) != want {
		t.Errorf("container: %s %v, want the pod's budget %s", ct.Scope, ct.IO, want)
	}
	if len(ct.Ignored) != 1 || ct.Ignored[0].Reason != IgnoredNotAllowed {
		t.Errorf("container-level ask under a pod budget: ignored %v, want one not_allowed", ct.Ignored)
	}
}

// With allow_loosen, an ask under a pod-scoped rule changes only the keys and disks it
// names, within max_*, and the budget stays the pod's: one number for the pod, never
// a per-container limit, never the rule's other keys or disks dropped.
func TestHostileLoosenKeepsThePodBudget(t *testing.T) {
	p := mustParse(t, `
device "data" {
  path = "8:0"
}
class "budget" {
  io {
    device    = "data"
    write_bps = "10MiB"
    read_bps  = "20MiB"
  }
  io {
    device     = "8:16"
    write_iops = 50
  }
}
class "fast" {
  io {
    device    = "data"
    write_bps = "500MiB"
  }
}
rule "tenants" {
  class = "budget"
  scope = "pod"
}
annotations {
  enabled       = true
  allow_loosen  = true
  classes       = ["fast"]
  max_write_bps = "200MiB"
}
`)
	budget := func(writeBPS uint64) string {
		return fmt.Sprint([]IOLimits{{Device: "8:0", ReadBPS: 20 << 20, WriteBPS: writeBPS}, {Device: "8:16", WriteIOPS: 50}})
	}
	tests := []struct {
		name    string
		asks    map[string]string
		io      string
		reasons []IgnoredReason // on the container's decision
	}{
		{name: "no ask", io: budget(10 << 20)},
		{name: "tighter write keeps the read limit and the other disk",
			asks: map[string]string{AnnotationWriteBPS: "5MiB"}, io: budget(5 << 20)},
		{name: "looser write within max_write_bps",
			asks: map[string]string{AnnotationWriteBPS: "100MiB"}, io: budget(100 << 20)},
		{name: "above max_write_bps is ignored",
			asks: map[string]string{AnnotationWriteBPS: "300MiB"}, io: budget(10 << 20), reasons: []IgnoredReason{IgnoredAboveMax}},
		{name: "a container cannot split the budget",
			asks: map[string]string{AnnotationWriteBPS + ".app": "150MiB"}, io: budget(10 << 20), reasons: []IgnoredReason{IgnoredNotAllowed}},
		{name: "a class pick sets only its own keys",
			asks: map[string]string{AnnotationPodClass: "fast"}, io: budget(500 << 20)},
		{name: "a container's class pick cannot split the budget",
			asks: map[string]string{AnnotationContainerClass + "app": "fast"}, io: budget(10 << 20), reasons: []IgnoredReason{IgnoredNotAllowed}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := p.Decide(Workload{Namespace: "t", PodAnnotations: tt.asks})
			ct := p.Decide(Workload{Namespace: "t", ContainerName: "app", PodAnnotations: tt.asks})
			for _, d := range []struct {
				who string
				Decision
			}{{"pod", pod}, {"container", ct}} {
				if d.Scope != ScopePod || fmt.Sprint(d.IO) != tt.io || d.HandsOff {
					t.Errorf("%s: scope %s IO %v (%s)\nwant the pod budget %s", d.who, d.Scope, d.IO, d.Reason, tt.io)
				}
			}
			var reasons []IgnoredReason
			for _, ig := range ct.Ignored {
				reasons = append(reasons, ig.Reason)
			}
			if fmt.Sprint(reasons) != fmt.Sprint(tt.reasons) {
				t.Errorf("container: ignored %v, want reasons %v", ct.Ignored, tt.reasons)
			}
		})
	}
}

// junkAnnotations is what a tenant fits in Kubernetes' 256 KiB of annotations:
// about 14,000 criguard.io keys that are none of criguard's.
func junkAnnotations(n int) map[string]string {
	a := make(map[string]string, n)
	for i := range n {
		a[fmt.Sprintf("criguard.io/junk-%05d", i)] = "x"
	}
	return a
}

// A tenant's junk criguard.io/* annotations cost a bounded amount whatever they
// write (issue 21, finding 5): a few entries per reason, the rest counted.
func TestHostileJunkAnnotationsAreBounded(t *testing.T) {
	p := mustParse(t, rulesWithAnnotations)
	const junk = 14059
	asks := junkAnnotations(junk)
	asks[AnnotationWriteBPS] = "-1"        // a real ask, invalid
	asks[AnnotationReadBPS+".app"] = "1e9" // another
	asks["criguard.io/write-bsp"] = "1MiB" // a typo
	d := p.Decide(Workload{Namespace: "batch", ContainerName: "app", PodAnnotations: asks})

	if len(d.Ignored) > 4*MaxIgnoredPerReason {
		t.Fatalf("%d ignored entries kept, want at most %d", len(d.Ignored), 4*MaxIgnoredPerReason)
	}
	counted, text := 0, 0
	for _, ig := range d.Ignored {
		if ig.Reason != IgnoredInvalid {
			t.Errorf("unexpected %v", ig)
		}
		counted += 1 + ig.More
		text += len(ig.String())
	}
	if want := junk + 3; counted != want {
		t.Errorf("ignored annotations counted %d, want %d", counted, want)
	}
	if text > 16<<10 {
		t.Errorf("the ignored entries render to %d bytes, want a few KiB", text)
	}
	// The real asks come first, then the smallest unknown keys in order.
	var keys []string
	for _, ig := range d.Ignored {
		keys = append(keys, ig.Key)
	}
	want := []string{AnnotationWriteBPS, AnnotationReadBPS + ".app", "criguard.io/junk-00000", "criguard.io/junk-00001",
		"criguard.io/junk-00002", "criguard.io/junk-00003", "criguard.io/junk-00004", "criguard.io/junk-00005"}
	if fmt.Sprint(keys) != fmt.Sprint(want) {
		t.Errorf("kept %v\nwant %v", keys, want)
	}
	last := d.Ignored[len(d.Ignored)-1]
	if last.More != junk+1-6 || !strings.Contains(last.String(), fmt.Sprintf("and %d more ignored as invalid", junk+1-6)) {
		t.Errorf("last entry %q does not count the %d others", last.String(), junk+1-6)
	}
	// The rule still holds: junk changes nothing.
	if d.Rule != "batch" || d.HandsOff {
		t.Errorf("decision %+v, want rule batch", d)
	}
}

// A typo among a few keys is still named with its suggestion.
func TestHostileFewUnknownKeysAreAllListed(t *testing.T) {
	p := mustParse(t, rulesWithAnnotations)
	d := p.Decide(Workload{Namespace: "batch", ContainerName: "app", PodAnnotations: map[string]string{
		"criguard.io/write-bsp": "1MiB", "criguard.io/reed-bps": "1MiB"}})
	if len(d.Ignored) != 2 || d.Ignored[0].More != 0 || d.Ignored[1].More != 0 ||
		!strings.Contains(d.Ignored[1].String(), `Did you mean "criguard.io/write-bps"?`) {
		t.Errorf("ignored = %v, want both typos listed with suggestions", d.Ignored)
	}
}

func BenchmarkDecideWithJunkAnnotations(b *testing.B) {
	p, diags := Parse([]byte(rulesWithAnnotations), "bench.hcl")
	if diags.HasErrors() {
		b.Fatal(diags)
	}
	w := Workload{Namespace: "batch", ContainerName: "app", PodAnnotations: junkAnnotations(14059)}
	for b.Loop() {
		p.Decide(w)
	}
}

const rulesWithAnnotations = `
class "slow" {
  io {
    device    = "8:0"
    write_bps = "1MiB"
  }
}
rule "batch" {
  match {
    namespaces = ["batch"]
  }
  class = "slow"
}
annotations {
  enabled = true
  device  = "8:0"
}
`
