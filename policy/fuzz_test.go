package policy

import (
	"os"
	"path/filepath"
	"testing"
)

func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*/*.hcl")
	examples, _ := filepath.Glob("../examples/*.hcl")
	for _, file := range append(seeds, examples...) {
		src, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(src)
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		p, diags := Parse(src, "fuzz.hcl")
		if diags.HasErrors() {
			if p != nil {
				t.Fatalf("Parse returned a policy with errors: %v", diags)
			}
			for _, d := range diags {
				if d.Subject == nil || d.Subject.Filename != "fuzz.hcl" {
					t.Fatalf("diagnostic without a position in fuzz.hcl: %s", FormatDiagnostic(d))
				}
			}
			return
		}
		// A policy without errors is consistent: what it references exists.
		for _, rule := range p.Rules {
			if p.Classes[rule.Class] == nil {
				t.Fatalf("rule %q names class %q, which is not in the policy", rule.Name, rule.Class)
			}
			if rule.Scope != ScopeContainer && rule.Scope != ScopePod {
				t.Fatalf("rule %q has scope %q", rule.Name, rule.Scope)
			}
		}
		for name, class := range p.Classes {
			if len(class.IO) == 0 && class.Resources.IsZero() {
				t.Fatalf("class %q limits nothing", name)
			}
			for _, l := range class.IO {
				if l.Device == "" || l.SetsNothing() {
					t.Fatalf("class %q has an empty io entry %+v", name, l)
				}
			}
		}
		p.Decide(Workload{Namespace: "ns", ContainerName: "c", PodAnnotations: map[string]string{AnnotationPodClass: "bulk", AnnotationWriteBPS: "1Mi"}})
		p.Decide(Workload{Namespace: "ns"})
	})
}
