package policy

import (
	"fmt"
	"strings"
	"testing"
)

const decidePolicy = `
device "data" {
  path = "/var/lib/containerd"
}
class "bulk" {
  io {
    device    = "data"
    read_bps  = "100MiB"
    write_bps = "40MiB"
  }
}
class "fast" {
  io {
    device    = "data"
    read_iops = 8000
  }
}
class "hidden" {
  io {
    device    = "8:0"
    write_bps = "1MiB"
  }
}
class "budget" {
  io {
    device    = "data"
    write_bps = "10MiB"
  }
}
rule "batch" {
  match {
    namespaces = ["batch", "etl-*"]
    pod_labels = { team = "data" }
    qos        = ["besteffort", "burstable"]
    containers = ["worker-*"]
    images     = ["registry.example.com/*"]
  }
  class = "bulk"
}
rule "tenants" {
  match {
    namespaces = ["tenant-*"]
  }
  class = "budget"
  scope = "pod"
}
rule "annotated" {
  match {
    pod_annotations = { "example.com/speed" = "fast*" }
  }
  class = "fast"
}
annotations {
  enabled        = true
  classes        = ["bulk", "fast"]
  max_write_bps  = "200MiB"
  max_read_iops  = 5000
}
`

func mustParse(t testing.TB, src string) *Policy {
	t.Helper()
	p, diags := Parse([]byte(src), "policy.hcl")
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	return p
}

func TestDecide(t *testing.T) {
	p := mustParse(t, decidePolicy)
	const data = "/var/lib/containerd"
	bulk := []IOLimits{{Device: data, ReadBPS: 100 << 20, WriteBPS: 40 << 20}}
	batch := Workload{
		Namespace: "etl-1", PodName: "job", PodLabels: map[string]string{"team": "data"},
		ContainerName: "worker-1", Image: "registry.example.com/team/etl:1", QoS: "BestEffort",
	}
	with := func(w Workload, edit func(*Workload)) Workload {
		w.PodLabels = cloneMap(w.PodLabels)
		w.PodAnnotations = cloneMap(w.PodAnnotations)
		edit(&w)
		return w
	}
	annotate := func(kv ...string) func(*Workload) {
		return func(w *Workload) {
			if w.PodAnnotations == nil {
				w.PodAnnotations = map[string]string{}
			}
			for i := 0; i < len(kv); i += 2 {
				w.PodAnnotations[kv[i]] = kv[i+1]
			}
		}
	}
	tests := []struct {
		name        string
		w           Workload
		source      Source
		rule, class string
		scope       Scope
		io          []IOLimits
		reason      string
		ignored     []string
	}{
		{
			name: "rule matches every condition", w: batch,
			source: SourceRule, rule: "batch", class: "bulk", scope: ScopeContainer, io: bulk,
			reason: `rule "batch" (namespace "etl-1" matches "etl-*", pod label team="data", QoS besteffort, container "worker-1" matches "worker-*", image "registry.example.com/team/etl:1" matches "registry.example.com/*")`,
		},
		{
			name: "one condition fails", w: with(batch, func(w *Workload) { w.PodLabels["team"] = "web" }),
			source: SourceNone, scope: ScopeContainer, reason: "no annotation and no rule applies",
		},
		{
			name: "QoS outside the list", w: with(batch, func(w *Workload) { w.QoS = "guaranteed" }),
			source: SourceNone, scope: ScopeContainer, reason: "no annotation and no rule applies",
		},
		{
			name: "pod-scope rule for a container", w: Workload{Namespace: "tenant-a", ContainerName: "app"},
			source: SourceRule, rule: "tenants", class: "budget", scope: ScopePod,
			io: []IOLimits{{Device: data, WriteBPS: 10 << 20}}, reason: `rule "tenants" (namespace "tenant-a" matches "tenant-*")`,
		},
		{
			name: "pod-scope rule for the pod", w: Workload{Namespace: "tenant-a"},
			source: SourceRule, rule: "tenants", class: "budget", scope: ScopePod,
			io: []IOLimits{{Device: data, WriteBPS: 10 << 20}}, reason: `rule "tenants" (namespace "tenant-a" matches "tenant-*")`,
		},
		{
			name: "container rule gives the pod no budget", w: Workload{Namespace: "x", PodAnnotations: map[string]string{"example.com/speed": "faster"}},
			source: SourceNone, scope: ScopePod,
			reason: `the first rule matching the pod, "annotated", is container-scoped, so the pod has no shared budget`,
		},
		{
			name: "rule on a pod annotation glob", w: Workload{Namespace: "x", ContainerName: "c", PodAnnotations: map[string]string{"example.com/speed": "faster"}},
			source: SourceRule, rule: "annotated", class: "fast", scope: ScopeContainer,
			io: []IOLimits{{Device: data, ReadIOPS: 8000}}, reason: `rule "annotated" (pod annotation example.com/speed="faster")`,
		},
		{
			name:   "pod class annotation beats the rule",
			w:      with(batch, annotate(AnnotationPodClass, "fast")),
			source: SourcePodAnnotation, class: "fast", scope: ScopeContainer,
			io: []IOLimits{{Device: data, ReadIOPS: 8000}}, reason: `pod annotation blockio.resources.beta.kubernetes.io/pod="fast"`,
		},
		{
			name:   "container class annotation beats the pod's",
			w:      with(batch, annotate(AnnotationPodClass, "fast", AnnotationContainerClass+"worker-1", "bulk")),
			source: SourceContainerAnnotation, class: "bulk", scope: ScopeContainer, io: bulk,
			reason: `container annotation blockio.resources.beta.kubernetes.io/container.worker-1="bulk"`,
		},
		{
			name:   "another container's annotation does not apply",
			w:      with(batch, annotate(AnnotationContainerClass+"sidecar", "fast")),
			source: SourceRule, rule: "batch", class: "bulk", scope: ScopeContainer, io: bulk,
			reason: `rule "batch" (namespace "etl-1" matches "etl-*", pod label team="data", QoS besteffort, container "worker-1" matches "worker-*", image "registry.example.com/team/etl:1" matches "registry.example.com/*")`,
		},
		{
			name:   "unknown class annotation falls through to the rule",
			w:      with(batch, annotate(AnnotationPodClass, "fsat")),
			source: SourceRule, rule: "batch", class: "bulk", scope: ScopeContainer, io: bulk,
			reason:  `rule "batch" (namespace "etl-1" matches "etl-*", pod label team="data", QoS besteffort, container "worker-1" matches "worker-*", image "registry.example.com/team/etl:1" matches "registry.example.com/*")`,
			ignored: []string{`annotation blockio.resources.beta.kubernetes.io/pod="fsat" ignored: no class "fsat" in policy.hcl. Did you mean "fast"?`},
		},
		{
			name:   "class outside annotations.classes is refused",
			w:      Workload{Namespace: "x", ContainerName: "c", PodAnnotations: map[string]string{AnnotationPodClass: "hidden"}},
			source: SourceNone, scope: ScopeContainer, reason: "no annotation and no rule applies",
			ignored: []string{`annotation blockio.resources.beta.kubernetes.io/pod="hidden" ignored: class "hidden" may not be picked by annotation (annotations.classes)`},
		},
		{
			name:   "numbers: asked, clamped, and the unasked get the maxima",
			w:      Workload{Namespace: "x", ContainerName: "c", PodAnnotations: map[string]string{AnnotationWriteBPS: "1GiB", AnnotationReadIOPS: "100"}},
			source: SourcePodAnnotation, scope: ScopeContainer,
			io:      []IOLimits{{Device: data, WriteBPS: 200 << 20, ReadIOPS: 100}},
			reason:  `pod annotation criguard.io/write-bps="1GiB", criguard.io/read-iops="100"`,
			ignored: []string{`annotation criguard.io/write-bps="1GiB" clamped to 200MiB (annotations.max_write_bps)`},
		},
		{
			name:   "asking for unlimited is clamped to the maximum",
			w:      Workload{Namespace: "x", ContainerName: "c", PodAnnotations: map[string]string{AnnotationWriteBPS: "0"}},
			source: SourcePodAnnotation, scope: ScopeContainer,
			io:      []IOLimits{{Device: data, WriteBPS: 200 << 20, ReadIOPS: 5000}},
			reason:  `pod annotation criguard.io/write-bps="0"`,
			ignored: []string{`annotation criguard.io/write-bps="0" clamped to 200MiB (annotations.max_write_bps)`},
		},
		{
			name:   "numbers override the class of the same level",
			w:      Workload{Namespace: "x", ContainerName: "c", PodAnnotations: map[string]string{AnnotationPodClass: "bulk", AnnotationWriteBPS: "10MiB"}},
			source: SourcePodAnnotation, class: "bulk", scope: ScopeContainer,
			io:     []IOLimits{{Device: data, ReadBPS: 100 << 20, WriteBPS: 10 << 20}},
			reason: `pod annotation blockio.resources.beta.kubernetes.io/pod="bulk", criguard.io/write-bps="10MiB"`,
		},
		{
			name: "per-container numbers beat the pod's",
			w: Workload{Namespace: "x", ContainerName: "db", PodAnnotations: map[string]string{
				AnnotationWriteBPS: "10MiB", AnnotationWriteBPS + ".db": "20MiB"}},
			source: SourceContainerAnnotation, scope: ScopeContainer,
			io:     []IOLimits{{Device: data, WriteBPS: 20 << 20, ReadIOPS: 5000}},
			reason: `container annotation criguard.io/write-bps.db="20MiB"`,
		},
		{
			name: "absurd numbers are ignored, never applied",
			w: Workload{Namespace: "x", ContainerName: "c", PodAnnotations: map[string]string{
				AnnotationWriteBPS: "-1", AnnotationReadBPS: "1e30", AnnotationReadIOPS: "NaN", AnnotationWriteIOPS: strings.Repeat("9", 1<<20),
				"criguard.io/write-bsp": "1"}},
			source: SourceNone, scope: ScopeContainer, reason: "no annotation and no rule applies",
			ignored: []string{
				`annotation criguard.io/read-bps="1e30" ignored: not a byte quantity such as 100MiB`,
				`annotation criguard.io/write-bps="-1" ignored: not a byte quantity such as 100MiB`,
				`annotation criguard.io/read-iops="NaN" ignored: not a whole number of operations per second`,
				`annotation criguard.io/write-iops="` + strings.Repeat("9", 64) + `"…(1048576 bytes) ignored: not a whole number of operations per second`,
				`annotation criguard.io/write-bsp ignored: not a criguard.io annotation. Did you mean "criguard.io/write-bps"?`,
			},
		},
		{
			name:   "the pod's own annotations leave the pod without a budget",
			w:      Workload{Namespace: "tenant-a", PodAnnotations: map[string]string{AnnotationPodClass: "bulk"}},
			source: SourceNone, scope: ScopePod,
			reason: "the pod's own annotations throttle each container, so the pod has no shared budget",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := p.Decide(tt.w)
			if d.Source != tt.source || d.Rule != tt.rule || d.Class != tt.class || d.Scope != tt.scope {
				t.Errorf("Decide = source %s rule %q class %q scope %s; want %s %q %q %s", d.Source, d.Rule, d.Class, d.Scope, tt.source, tt.rule, tt.class, tt.scope)
			}
			if fmt.Sprint(d.IO) != fmt.Sprint(tt.io) {
				t.Errorf("IO = %+v, want %+v", d.IO, tt.io)
			}
			if d.Reason != tt.reason {
				t.Errorf("Reason = %s\nwant     %s", d.Reason, tt.reason)
			}
			if strings.Join(d.Ignored, "\n") != strings.Join(tt.ignored, "\n") {
				t.Errorf("Ignored =\n%s\nwant\n%s", strings.Join(d.Ignored, "\n"), strings.Join(tt.ignored, "\n"))
			}
		})
	}
}

func TestDecideNumbersNeedEnabled(t *testing.T) {
	p := mustParse(t, `
class "slow" {
  io {
    device    = "8:0"
    write_bps = "1MiB"
  }
}
rule "all" {
  class = "slow"
}
`)
	d := p.Decide(Workload{Namespace: "x", ContainerName: "c", PodAnnotations: map[string]string{AnnotationWriteBPS: "1GiB"}})
	if d.Source != SourceRule || d.IO[0].WriteBPS != 1<<20 || len(d.Ignored) != 1 || !strings.Contains(d.Ignored[0], "disabled") {
		t.Errorf("Decide with annotations disabled = %+v", d)
	}
}

func TestDecideDoesNotShareClassSlices(t *testing.T) {
	p := mustParse(t, decidePolicy)
	w := Workload{Namespace: "x", ContainerName: "c", PodAnnotations: map[string]string{AnnotationPodClass: "bulk", AnnotationWriteBPS: "1MiB"}}
	p.Decide(w)
	if got := p.Classes["bulk"].IO[0].WriteBPS; got != 40<<20 {
		t.Errorf("Decide changed class bulk: write_bps = %d", got)
	}
}

func TestDecideNilPolicy(t *testing.T) {
	var p *Policy
	if d := p.Decide(Workload{Namespace: "x", ContainerName: "c"}); d.Source != SourceNone || len(d.IO) != 0 {
		t.Errorf("nil policy decided %+v", d)
	}
}

func TestFirstMatchingRuleWins(t *testing.T) {
	p := mustParse(t, `
class "a" {
  io {
    device    = "8:0"
    write_bps = 1
  }
}
class "b" {
  io {
    device    = "8:0"
    write_bps = 2
  }
}
rule "specific" {
  match {
    namespaces = ["prod"]
  }
  class = "a"
}
rule "catch-all" {
  class = "b"
}
`)
	if d := p.Decide(Workload{Namespace: "prod", ContainerName: "c"}); d.Rule != "specific" {
		t.Errorf("prod got %+v, want rule specific", d)
	}
	if d := p.Decide(Workload{Namespace: "dev", ContainerName: "c"}); d.Rule != "catch-all" || d.Reason != `rule "catch-all" (it matches every workload)` {
		t.Errorf("dev got %+v, want rule catch-all", d)
	}
}

func TestGlob(t *testing.T) {
	tests := []struct {
		pattern, s string
		want       bool
	}{
		{"*", "", true},
		{"*", "anything/at/all", true},
		{"etl-*", "etl-1", true},
		{"etl-*", "etl", false},
		{"etl-?", "etl-12", false},
		{"*-backup", "db-backup", true},
		{"a*b*c", "aXXbYYc", true},
		{"a*b*c", "aXXbYY", false},
		{"registry.example.com/*", "registry.example.com/team/app:1", true},
		{"exact", "exact", true},
		{"exact", "exactly", false},
		{strings.Repeat("*a", 30), strings.Repeat("a", 1000) + "b", false},
	}
	for _, tt := range tests {
		if got := glob(tt.pattern, tt.s); got != tt.want {
			t.Errorf("glob(%q, %q) = %v, want %v", tt.pattern, tt.s, got, tt.want)
		}
	}
}

func FuzzDecideAnnotations(f *testing.F) {
	p := mustParse(f, decidePolicy)
	for _, seed := range [][4]string{
		{"100MiB", "-1", "NaN", "bulk"},
		{"1e30", "18446744073709551616", "0", "fast"},
		{"", " ", "1.5", "hidden"},
	} {
		f.Add(seed[0], seed[1], seed[2], seed[3])
	}
	f.Fuzz(func(t *testing.T, writeBPS, readIOPS, containerWrite, class string) {
		w := Workload{Namespace: "x", ContainerName: "c", PodAnnotations: map[string]string{
			AnnotationWriteBPS: writeBPS, AnnotationReadIOPS: readIOPS,
			AnnotationWriteBPS + ".c": containerWrite, AnnotationPodClass: class,
		}}
		d := p.Decide(w)
		for _, l := range d.IO {
			if l.Device == p.Annotations.Device && d.Class == "" {
				// Numbers alone: every limit is within the bounds, and never unlimited
				// where a bound exists.
				if l.WriteBPS == 0 || l.WriteBPS > p.Annotations.MaxWriteBPS || l.ReadIOPS == 0 || l.ReadIOPS > p.Annotations.MaxReadIOPS {
					t.Fatalf("Decide(%q) = %+v: outside the annotation bounds", w.PodAnnotations, l)
				}
			}
		}
		if d.Class != "" && d.Class != "bulk" && d.Class != "fast" {
			t.Fatalf("Decide(%q) picked class %q, outside annotations.classes", w.PodAnnotations, d.Class)
		}
		for _, line := range append(d.Ignored, d.Reason) {
			if len(line) > 512 {
				t.Fatalf("a %d-byte line would be logged: %.100s", len(line), line)
			}
		}
	})
}

func cloneMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
