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
		handsOff    bool
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
			name:   "a pod class annotation tightens the rule, key by key",
			w:      with(batch, annotate(AnnotationPodClass, "fast")),
			source: SourcePodAnnotation, rule: "batch", class: "fast", scope: ScopeContainer,
			io:     []IOLimits{{Device: data, ReadBPS: 100 << 20, WriteBPS: 40 << 20, ReadIOPS: 8000}},
			reason: `rule "batch" (namespace "etl-1" matches "etl-*", pod label team="data", QoS besteffort, container "worker-1" matches "worker-*", image "registry.example.com/team/etl:1" matches "registry.example.com/*")` + `; tightened by annotation blockio.resources.beta.kubernetes.io/pod="fast"`,
		},
		{
			name:   "the container's class annotation wins over the pod's",
			w:      with(batch, annotate(AnnotationPodClass, "fast", AnnotationContainerClass+"worker-1", "bulk")),
			source: SourceContainerAnnotation, rule: "batch", class: "bulk", scope: ScopeContainer, io: bulk,
			reason: `rule "batch" (namespace "etl-1" matches "etl-*", pod label team="data", QoS besteffort, container "worker-1" matches "worker-*", image "registry.example.com/team/etl:1" matches "registry.example.com/*")` + `; tightened by annotation blockio.resources.beta.kubernetes.io/container.worker-1="bulk"`,
		},
		{
			name:   "another container's annotation does not apply",
			w:      with(batch, annotate(AnnotationContainerClass+"sidecar", "fast")),
			source: SourceRule, rule: "batch", class: "bulk", scope: ScopeContainer, io: bulk,
			reason: `rule "batch" (namespace "etl-1" matches "etl-*", pod label team="data", QoS besteffort, container "worker-1" matches "worker-*", image "registry.example.com/team/etl:1" matches "registry.example.com/*")`,
		},
		{
			name:   "a class the policy does not know is the runtime's: the rule still holds",
			w:      with(batch, annotate(AnnotationPodClass, "fsat")),
			source: SourceRule, rule: "batch", class: "bulk", scope: ScopeContainer, io: bulk,
			reason: `rule "batch" (namespace "etl-1" matches "etl-*", pod label team="data", QoS besteffort, container "worker-1" matches "worker-*", image "registry.example.com/team/etl:1" matches "registry.example.com/*")`,
		},
		{
			name:   "a class the policy does not know, and no rule: hands off",
			w:      Workload{Namespace: "x", ContainerName: "c", PodAnnotations: map[string]string{AnnotationPodClass: "runtime-gold"}},
			source: SourceRuntime, scope: ScopeContainer, handsOff: true,
			reason: `class "runtime-gold" is not in this policy: it is the runtime's blockio class, and criguard leaves the cgroup alone`,
		},
		{
			name:   "class outside annotations.classes is refused",
			w:      Workload{Namespace: "x", ContainerName: "c", PodAnnotations: map[string]string{AnnotationPodClass: "hidden"}},
			source: SourceNone, scope: ScopeContainer, reason: "no annotation and no rule applies",
			ignored: []string{`annotation blockio.resources.beta.kubernetes.io/pod="hidden" ignored (not_allowed): class "hidden" may not be picked by annotation (annotations.classes)`},
		},
		{
			name:   "numbers: one above the maximum is ignored, the other applies",
			w:      Workload{Namespace: "x", ContainerName: "c", PodAnnotations: map[string]string{AnnotationWriteBPS: "1GiB", AnnotationReadIOPS: "100"}},
			source: SourcePodAnnotation, scope: ScopeContainer,
			io:      []IOLimits{{Device: data, ReadIOPS: 100}},
			reason:  `annotation criguard.io/read-iops="100"`,
			ignored: []string{`annotation criguard.io/write-bps="1GiB" ignored (above_max): above annotations.max_write_bps = 200MiB`},
		},
		{
			name:   "asking for zero (unlimited) is invalid",
			w:      Workload{Namespace: "x", ContainerName: "c", PodAnnotations: map[string]string{AnnotationWriteBPS: "0"}},
			source: SourceNone, scope: ScopeContainer, reason: "no annotation and no rule applies",
			ignored: []string{`annotation criguard.io/write-bps="0" ignored (invalid): not a byte quantity above 0 such as 100MiB`},
		},
		{
			name:   "numbers tighten the class of the same level",
			w:      Workload{Namespace: "x", ContainerName: "c", PodAnnotations: map[string]string{AnnotationPodClass: "bulk", AnnotationWriteBPS: "10MiB"}},
			source: SourcePodAnnotation, class: "bulk", scope: ScopeContainer,
			io:     []IOLimits{{Device: data, ReadBPS: 100 << 20, WriteBPS: 10 << 20}},
			reason: `annotation blockio.resources.beta.kubernetes.io/pod="bulk", criguard.io/write-bps="10MiB"`,
		},
		{
			name: "per-container numbers win over the pod's",
			w: Workload{Namespace: "x", ContainerName: "db", PodAnnotations: map[string]string{
				AnnotationWriteBPS: "10MiB", AnnotationWriteBPS + ".db": "20MiB"}},
			source: SourceContainerAnnotation, scope: ScopeContainer,
			io:     []IOLimits{{Device: data, WriteBPS: 20 << 20}},
			reason: `annotation criguard.io/write-bps.db="20MiB"`,
		},
		{
			name: "absurd numbers are ignored, never applied",
			w: Workload{Namespace: "x", ContainerName: "c", PodAnnotations: map[string]string{
				AnnotationWriteBPS: "-1", AnnotationReadBPS: "1e30", AnnotationReadIOPS: "NaN", AnnotationWriteIOPS: strings.Repeat("9", 1<<20),
				"criguard.io/write-bsp": "1"}},
			source: SourceNone, scope: ScopeContainer, reason: "no annotation and no rule applies",
			ignored: []string{
				`annotation criguard.io/read-bps="1e30" ignored (invalid): not a byte quantity above 0 such as 100MiB`,
				`annotation criguard.io/write-bps="-1" ignored (invalid): not a byte quantity above 0 such as 100MiB`,
				`annotation criguard.io/read-iops="NaN" ignored (invalid): not a whole number of operations per second above 0`,
				`annotation criguard.io/write-iops="` + strings.Repeat("9", 64) + `"…(1048576 bytes) ignored (invalid): longer than any a whole number of operations per second above 0`,
				`annotation criguard.io/write-bsp="1" ignored (invalid): not a criguard.io annotation. Did you mean "criguard.io/write-bps"?`,
			},
		},
		{
			name:   "the pod's own class annotation tightens its budget",
			w:      Workload{Namespace: "tenant-a", PodAnnotations: map[string]string{AnnotationPodClass: "bulk"}},
			source: SourcePodAnnotation, rule: "tenants", class: "bulk", scope: ScopePod,
			io:     []IOLimits{{Device: data, ReadBPS: 100 << 20, WriteBPS: 10 << 20}},
			reason: `rule "tenants" (namespace "tenant-a" matches "tenant-*"); tightened by annotation blockio.resources.beta.kubernetes.io/pod="bulk"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := p.Decide(tt.w)
			if d.Source != tt.source || d.Rule != tt.rule || d.Class != tt.class || d.Scope != tt.scope || d.HandsOff != tt.handsOff {
				t.Errorf("Decide = source %s rule %q class %q scope %s hands off %v; want %s %q %q %s %v",
					d.Source, d.Rule, d.Class, d.Scope, d.HandsOff, tt.source, tt.rule, tt.class, tt.scope, tt.handsOff)
			}
			if fmt.Sprint(d.IO) != fmt.Sprint(tt.io) {
				t.Errorf("IO = %+v, want %+v", d.IO, tt.io)
			}
			if d.Reason != tt.reason {
				t.Errorf("Reason = %s\nwant     %s", d.Reason, tt.reason)
			}
			if got := ignoredLines(d); got != strings.Join(tt.ignored, "\n") {
				t.Errorf("Ignored =\n%s\nwant\n%s", got, strings.Join(tt.ignored, "\n"))
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
	if d.Source != SourceRule || d.IO[0].WriteBPS != 1<<20 || len(d.Ignored) != 1 || d.Ignored[0].Reason != IgnoredNotAllowed {
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
	if d := p.Decide(Workload{Namespace: "x", ContainerName: "c"}); d.Source != SourceNone || len(d.IO) != 0 || !d.HandsOff {
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
		// A workload rule "batch" throttles (bulk: read 100MiB/s, write 40MiB/s).
		w := Workload{Namespace: "etl-1", PodLabels: map[string]string{"team": "data"}, QoS: "burstable",
			ContainerName: "worker-1", Image: "registry.example.com/x", PodAnnotations: map[string]string{
				AnnotationWriteBPS: writeBPS, AnnotationReadIOPS: readIOPS,
				AnnotationWriteBPS + ".worker-1": containerWrite, AnnotationPodClass: class,
			}}
		d := p.Decide(w)
		var got IOLimits
		for _, l := range d.IO {
			if l.Device == p.Annotations.Device {
				got.ReadBPS, got.WriteBPS = tightest(got.ReadBPS, l.ReadBPS), tightest(got.WriteBPS, l.WriteBPS)
				got.ReadIOPS = tightest(got.ReadIOPS, l.ReadIOPS)
			}
		}
		// Whatever the tenant writes, the rule's limits never loosen and never vanish.
		if got.ReadBPS == 0 || got.ReadBPS > 100<<20 || got.WriteBPS == 0 || got.WriteBPS > 40<<20 {
			t.Fatalf("Decide(%q) = %+v: looser than the rule", w.PodAnnotations, d.IO)
		}
		// A number is bounded by max_read_iops; the operator's class "fast" (8000) may be picked.
		if got.ReadIOPS > max(p.Annotations.MaxReadIOPS, 8000) {
			t.Fatalf("Decide(%q) = %+v: above annotations.max_read_iops", w.PodAnnotations, d.IO)
		}
		if d.Class != "" && d.Class != "bulk" && d.Class != "fast" {
			t.Fatalf("Decide(%q) picked class %q, outside annotations.classes", w.PodAnnotations, d.Class)
		}
		lines := []string{d.Reason}
		for _, ig := range d.Ignored {
			lines = append(lines, ig.String())
		}
		for _, line := range lines {
			if len(line) > 512 {
				t.Fatalf("a %d-byte line would be logged: %.100s", len(line), line)
			}
		}
	})
}

func ignoredLines(d Decision) string {
	lines := make([]string, len(d.Ignored))
	for i, ig := range d.Ignored {
		lines[i] = ig.String()
	}
	return strings.Join(lines, "\n")
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
