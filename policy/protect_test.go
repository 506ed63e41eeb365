package policy

import (
	"fmt"
	"strings"
	"testing"
)

func TestParseProtect(t *testing.T) {
	p, err := Load("testdata/good/protect.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Classes["latency"].IO[0].Protect; got != (IOProtect{PressureSomeAvg10: 12.5}) {
		t.Errorf("protect = %+v, want a 12.5%% target", got)
	}
	batch := p.Classes["batch"].IO[0]
	if batch.Yield != (IOYield{Floor: 20 << 20, Ceiling: 800 << 20}) {
		t.Errorf("yield = %+v", batch.Yield)
	}
	// write_bps yields under its cap; read_bps, uncapped, under the ceiling.
	want := fmt.Sprint([]YieldKey{{Key: KeyReadBPS, Floor: 20 << 20, Ceiling: 800 << 20}, {Key: KeyWriteBPS, Floor: 20 << 20, Ceiling: 200 << 20, Capped: true}})
	if got := fmt.Sprint(batch.YieldKeys()); got != want {
		t.Errorf("YieldKeys = %s, want %s", got, want)
	}
	web := p.Decide(Workload{Namespace: "web", ContainerName: "app"})
	if !web.Protected() || web.Yields() {
		t.Errorf("web decision = %+v, want protected, not yielding", web.IO)
	}
	if d := p.Decide(Workload{Namespace: "jobs", ContainerName: "app"}); d.Protected() || !d.Yields() {
		t.Errorf("jobs decision = %+v, want yielding, not protected", d.IO)
	}
}

func TestProtectDiagnosticDetails(t *testing.T) {
	tests := []struct{ file, want string }{
		{"protect_target_out_of_range.hcl", `testdata/bad/protect_target_out_of_range.hcl:5,29: Invalid pressure target; pressure_some_avg10 = 100 is refused: it is a percentage of wall time, above 0 and below 100`},
		{"protect_pod_scope.hcl", `testdata/bad/protect_pod_scope.hcl:12,11: Protection in a pod-scope rule; Class "latency" is protected`},
		{"yield_floor_above_cap.hcl", `floor = 40MiB is not below write_bps = 20MiB`},
		{"yield_without_ceiling.hcl", `or ceiling = "500MiB" (the disk's speed) in the yield block`},
		{"yield_with_burst.hcl", `Keep one of them on 8:0`},
		{"protect_and_yield.hcl", `Put yield in the class of the neighbours`},
		{"yield_misspelt.hcl", `Did you mean "floor"?`},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			_, err := Load("testdata/bad/" + tt.file)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v\ndoes not contain %q", err, tt.want)
			}
		})
	}
}

// A tenant tries, with every annotation it controls, to escape yielding, to buy
// protection (which would tighten its neighbours) or to widen what it may take while
// it yields. The rule makes it yield on "data" down to 20MiB/s under a 100MiB/s cap.
func TestHostileAnnotationsCannotEscapeYieldOrBuyProtection(t *testing.T) {
	const rules = `
device "data" {
  path = "/var/lib/containerd"
}
class "batch" {
  io {
    device    = "data"
    write_bps = "100MiB"
    yield {
      floor = "20MiB"
    }
  }
}
class "free" {
  io {
    device    = "data"
    write_bps = "90MiB"
  }
}
class "vip" {
  io {
    device = "data"
    protect {
      pressure_some_avg10 = 1
    }
  }
  io {
    device = "8:16"
    protect {
      pressure_some_avg10 = 1
    }
  }
}
class "roomy" {
  io {
    device    = "data"
    write_bps = "90MiB"
    yield {
      floor = "80MiB"
    }
  }
}
class "bursty" {
  io {
    device    = "data"
    write_bps = "90MiB"
    burst {
      credit = "1TiB"
    }
  }
}
rule "tenants" {
  class = "batch"
}
`
	loosen := `annotations {
  enabled       = true
  allow_loosen  = true
  max_write_bps = "1GiB"
  classes       = ["free", "vip", "roomy", "bursty"]
}`
	tighten := strings.Replace(loosen, "allow_loosen  = true", "allow_loosen  = false", 1)
	asks := []map[string]string{
		{AnnotationPodClass: "free"},
		{AnnotationContainerClass + "app": "free"},
		{AnnotationPodClass: "vip"},
		{AnnotationPodClass: "roomy"},
		{AnnotationPodClass: "bursty"},
		{AnnotationWriteBPS: "1GiB"},
		{AnnotationWriteBPS: "1GiB", AnnotationPodClass: "free"},
		{AnnotationWriteBPS: "0"},
		{AnnotationReadBPS: "1GiB", AnnotationContainerClass + "app": "vip"},
		{AnnotationPodClass: "runtime-class-unknown-here"},
	}
	for _, settings := range []string{loosen, tighten} {
		p := mustParse(t, rules+settings)
		for _, ask := range asks {
			d := p.Decide(Workload{Namespace: "tenant", ContainerName: "app", PodAnnotations: ask})
			name := fmt.Sprintf("loosen=%v %v", p.Annotations.AllowLoosen, ask)
			if d.Protected() {
				t.Errorf("%s: the tenant bought protection: %+v", name, d.IO)
			}
			found := false
			for _, l := range d.IO {
				if l.Device != "/var/lib/containerd" {
					continue
				}
				found = true
				if l.Yield.IsZero() || l.Yield.Floor > 20<<20 {
					t.Errorf("%s: yield on data = %+v, want the rule's floor of 20MiB or lower", name, l.Yield)
				}
				if len(l.BurstKeys()) != 0 {
					t.Errorf("%s: a yielding key bursts: %+v", name, l.Burst)
				}
				if keys := l.YieldKeys(); len(keys) == 0 || keys[0].Floor > 20<<20 {
					t.Errorf("%s: keys = %+v, want write_bps yielding to 20MiB or lower", name, keys)
				}
				if !p.Annotations.AllowLoosen && l.WriteBPS > 100<<20 {
					t.Errorf("%s: cap raised to %d without allow_loosen", name, l.WriteBPS)
				}
				if l.WriteBPS > 1<<30 || l.WriteBPS == 0 {
					t.Errorf("%s: cap %d beyond the operator's max_write_bps", name, l.WriteBPS)
				}
			}
			if !found {
				t.Errorf("%s: the yielding device is gone from the decision: %+v", name, d.IO)
			}
		}
	}
}

// Without a rule, a class picked by annotation never brings protection.
func TestAnnotationAloneBringsNoProtection(t *testing.T) {
	p := mustParse(t, `
class "vip" {
  io {
    device = "8:0"
    protect {
      pressure_some_avg10 = 1
    }
  }
}
annotations {
  enabled = true
  device  = "8:0"
  classes = ["vip"]
}
`)
	d := p.Decide(Workload{Namespace: "x", ContainerName: "app", PodAnnotations: map[string]string{AnnotationPodClass: "vip"}})
	if d.Protected() {
		t.Errorf("an annotation-picked class brought protection without a rule: %+v", d.IO)
	}
}
