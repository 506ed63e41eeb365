package policy

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestResourcesDecode(t *testing.T) {
	p, err := Load("testdata/good/resources.hcl")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Resources{
		"batch":  {PidsMax: 512, MemoryHighPercent: 90, CPUWeight: 50, CPUMaxMilli: 1500},
		"capped": {PidsMax: 64, MemoryHigh: 512 << 20, CPUMaxMilli: 500},
	}
	for name, r := range want {
		if got := p.Classes[name].Resources; got != r {
			t.Errorf("class %s resources = %+v, want %+v", name, got, r)
		}
	}
	if len(p.Classes["batch"].IO) != 0 || len(p.Classes["capped"].IO) != 1 {
		t.Errorf("io blocks beside resources: %+v", p.Classes)
	}
}

func TestResourcesDiagnosticDetails(t *testing.T) {
	_, err := Load(filepath.Join("testdata/bad", "resources_values.hcl"))
	if err == nil {
		t.Fatal("want an error")
	}
	for _, want := range []string{
		`resources_values.hcl:3,11: Invalid max; max is refused: outside 1 to 4194304`,
		`high = "150%" is refused: a share of the container's memory limit is a whole percentage from 1% to 100%`,
		`weight is refused: outside 1 to 10000`,
		`"12XB"`,
		`Did you mean "weight"?`,
		`max is refused: not a whole number`,
		`Class "c" already has a pids block at testdata/bad/resources_values.hcl:24`,
		`Set weight (1 to 10000, 100 is a default share), max`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not contain %q:\n%s", want, err)
		}
	}
	_, err = Load(filepath.Join("testdata/bad", "resources_misspelt_block.hcl"))
	if err == nil || !strings.Contains(err.Error(), `Did you mean "pids"?`) {
		t.Errorf("misspelt block: %v", err)
	}
}

func resourcesPolicy(t *testing.T, annotations string) *Policy {
	t.Helper()
	src := `
class "loose" {
  pids { max = 1000 }
  cpu { weight = 200 }
}
class "tight" {
  pids { max = 20 }
  memory { high = "80%" }
  cpu {
    weight = 10
    max    = "250m"
  }
}
class "mixed" {
  pids { max = 5000 }
  cpu { weight = 5 }
}
rule "batch" {
  match { namespaces = ["batch"] }
  class = "tight"
  scope = "pod"
}
rule "rest" {
  class = "loose"
}
` + annotations
	p, diags := Parse([]byte(src), "resources.hcl")
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	return p
}

// A tenant's class annotation tightens the rule's resources setting by setting and
// never loosens one, even when the operator lets I/O numbers loosen.
func TestResourcesAnnotationsOnlyTighten(t *testing.T) {
	for _, loosen := range []bool{false, true} {
		p := resourcesPolicy(t, `annotations {
  enabled      = true
  allow_loosen = `+map[bool]string{false: "false", true: "true"}[loosen]+`
  device       = "/dev/vda"
  classes      = ["loose", "tight", "mixed"]
}`)
		tests := []struct {
			ns, class string
			want      Resources
		}{
			{"batch", "", Resources{PidsMax: 20, MemoryHighPercent: 80, CPUWeight: 10, CPUMaxMilli: 250}},
			{"batch", "loose", Resources{PidsMax: 20, MemoryHighPercent: 80, CPUWeight: 10, CPUMaxMilli: 250}},
			{"web", "", Resources{PidsMax: 1000, CPUWeight: 200}},
			{"web", "tight", Resources{PidsMax: 20, MemoryHighPercent: 80, CPUWeight: 10, CPUMaxMilli: 250}},
			{"web", "mixed", Resources{PidsMax: 1000, CPUWeight: 5}},
		}
		for _, tt := range tests {
			w := Workload{Namespace: tt.ns, ContainerName: "c", PodAnnotations: map[string]string{}}
			if tt.class != "" {
				w.PodAnnotations[AnnotationPodClass] = tt.class
			}
			if got := p.Decide(w).Resources; got != tt.want {
				t.Errorf("allow_loosen=%v ns=%s class=%q: resources %+v, want %+v", loosen, tt.ns, tt.class, got, tt.want)
			}
		}
	}
}

func TestResourcesTightenAndString(t *testing.T) {
	a := Resources{PidsMax: 100, MemoryHigh: 1 << 30, CPUWeight: 50}
	b := Resources{PidsMax: 200, MemoryHighPercent: 90, CPUWeight: 20, CPUMaxMilli: 1500}
	got := a.Tighten(b)
	want := Resources{PidsMax: 100, MemoryHigh: 1 << 30, MemoryHighPercent: 90, CPUWeight: 20, CPUMaxMilli: 1500}
	if got != want || b.Tighten(a) != want {
		t.Fatalf("Tighten = %+v, want %+v both ways", got, want)
	}
	if s := got.String(); s != "pids.max=100 memory.high=1GiB memory.high=90% of the limit cpu.weight=20 cpu.max=1500m" {
		t.Errorf("String() = %q", s)
	}
}

// Values the kernel cannot hold are refused with file:line,col and the kernel's bound
// (issue 21, finding 6): a pids.max runc cannot write fails the container's creation,
// a v1 IOPS above 32 bits wraps to a stricter value, and 2^64-1 bytes/s is "no limit".
func TestKernelBoundsAreRefused(t *testing.T) {
	_, err := Load(filepath.Join("testdata/bad", "kernel_bounds.hcl"))
	if err == nil {
		t.Fatal("want an error")
	}
	for _, want := range []string{
		`kernel_bounds.hcl:8,18: Invalid byte quantity; write_bps = 18446744073709551615 is refused: 18446744073709551615 is the kernel's "no limit"; a limit is at most 18446744073709551614 bytes per second`,
		`kernel_bounds.hcl:9,18: Invalid byte quantity; read_bps = "18446744073709551615" is refused: 18446744073709551615 is the kernel's "no limit"`,
		`kernel_bounds.hcl:10,18: Invalid operation count; write_iops = 4294967396 is refused: above 4294967295, the most the kernel holds`,
		`kernel_bounds.hcl:11,18: Invalid operation count; read_iops = "4294967296" is refused: above 4294967295`,
		`kernel_bounds.hcl:14,11: Invalid max; max is refused: outside 1 to 4194304. Write a whole number of processes and threads, at most 4194304 (the kernel's PID_MAX_LIMIT)`,
		`kernel_bounds.hcl:20,20: Invalid operation count; max_write_iops = 4294967296 is refused: above 4294967295`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not contain %q:\n%s", want, err)
		}
	}

	// The bounds themselves are limits the kernel holds.
	p := mustParse(t, `
class "edge" {
  io {
    device     = "8:0"
    write_bps  = 18446744073709551614
    write_iops = 4294967295
  }
  pids {
    max = 4194304
  }
}
annotations {
  enabled = true
  device  = "8:0"
}
rule "all" {
  class = "edge"
}
`)
	io, res := p.Classes["edge"].IO[0], p.Classes["edge"].Resources
	if io.WriteBPS != MaxBPS || io.WriteIOPS != MaxIOPS || res.PidsMax != MaxPids {
		t.Errorf("edge values = %+v %+v, want the kernel's bounds kept", io, res)
	}

	// A tenant's ask beyond the kernel's bounds is ignored, not written.
	d := p.Decide(Workload{Namespace: "t", ContainerName: "app", PodAnnotations: map[string]string{
		AnnotationReadIOPS: "4294967396", AnnotationReadBPS: "18446744073709551615"}})
	if got := d.IO[0]; got.ReadIOPS != 0 || got.ReadBPS != 0 {
		t.Errorf("asks beyond the kernel's bounds were applied: %+v", got)
	}
	if len(d.Ignored) != 2 || d.Ignored[0].Reason != IgnoredInvalid || d.Ignored[1].Reason != IgnoredInvalid {
		t.Errorf("ignored = %v, want two invalid asks", d.Ignored)
	}
}
