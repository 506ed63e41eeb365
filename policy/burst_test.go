package policy

import (
	"fmt"
	"strings"
	"testing"
)

func TestParseBurst(t *testing.T) {
	p, err := Load("testdata/good/burst.hcl")
	if err != nil {
		t.Fatal(err)
	}
	io := p.Classes["bursty"].IO
	if len(io) != 1 {
		t.Fatalf("io = %+v", io)
	}
	want := IOBurst{Credit: 1 << 30, CreditOps: 50000, ReadBPS: Unthrottled, WriteBPS: 200 << 20}
	if io[0].Burst != want {
		t.Errorf("burst = %+v, want %+v", io[0].Burst, want)
	}
	got := fmt.Sprint(io[0].BurstKeys())
	wantKeys := fmt.Sprint([]BurstKey{
		{Key: KeyReadBPS, Sustained: 100 << 20, Rate: 0, Credit: 1 << 30},
		{Key: KeyWriteBPS, Sustained: 40 << 20, Rate: 200 << 20, Credit: 1 << 30},
		{Key: KeyWriteIOPS, Sustained: 1000, Rate: 0, Credit: 50000},
	})
	if got != wantKeys {
		t.Errorf("BurstKeys = %s\nwant %s", got, wantKeys)
	}
}

func TestBurstDiagnosticDetails(t *testing.T) {
	tests := []struct{ file, want string }{
		{"burst_rate_below_sustained.hcl", `testdata/bad/burst_rate_below_sustained.hcl:6,19: Burst rate below the sustained rate; burst write_bps = 20MiB is below the sustained write_bps = 40MiB`},
		{"burst_credit_too_large.hcl", `credit = 2TiB is above 1TiB, the largest credit criguard keeps`},
		{"burst_rate_without_sustained.hcl", `this io block sets no read_bps`},
		{"burst_rate_without_credit.hcl", `add credit_ops = 100000`},
		{"burst_unknown_attribute.hcl", `Did you mean "credit"?`},
		{"burst_pod_scope.hcl", `Use scope = "container"`},
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

// A tenant tries to buy a burst with annotations: the rule bursts write_bps to
// 100MiB/s on "data" for 1GiB of credit and gives the other disk no burst at all.
// Whatever the pod asks, no burst is added, raised, or made longer.
func TestHostileAnnotationsCannotRaiseOrAddABurst(t *testing.T) {
	const rules = `
device "data" {
  path = "/var/lib/containerd"
}
class "bursty" {
  io {
    device    = "data"
    write_bps = "10MiB"
    burst {
      write_bps = "100MiB"
      credit    = "1GiB"
    }
  }
  io {
    device    = "8:16"
    write_bps = "5MiB"
  }
}
class "greedy" {
  io {
    device    = "data"
    write_bps = "10MiB"
    burst {
      credit = "1TiB"
    }
  }
  io {
    device    = "8:16"
    write_bps = "5MiB"
    burst {
      credit = "1TiB"
    }
  }
  io {
    device    = "8:32"
    write_bps = "5MiB"
    burst {
      credit = "1TiB"
    }
  }
}
class "shorter" {
  io {
    device    = "data"
    write_bps = "10MiB"
    burst {
      write_bps = "50MiB"
      credit    = "100MiB"
    }
  }
}
rule "tenants" {
  class = "bursty"
}
`
	ruleBurst := IOBurst{Credit: 1 << 30, WriteBPS: 100 << 20}
	tests := []struct {
		name        string
		annotations string
		asks        map[string]string
		data, other IOBurst // the bursts on "data" and on 8:16
		dataKeys    int     // keys of "data" that still burst
		noThird     bool    // 8:32 gets no burst (or no entry)
	}{
		{name: "no annotation: the rule's burst", data: ruleBurst, dataKeys: 1, noThird: true},
		{name: "a class with bigger, unthrottled bursts everywhere",
			annotations: `annotations {
  enabled = true
  classes = ["greedy"]
}`, asks: map[string]string{AnnotationPodClass: "greedy"}, data: ruleBurst, dataKeys: 1, noThird: true},
		{name: "the same with allow_loosen",
			annotations: `annotations {
  enabled      = true
  allow_loosen = true
  classes      = ["greedy"]
}`, asks: map[string]string{AnnotationPodClass: "greedy"}, data: ruleBurst, dataKeys: 1, noThird: true},
		{name: "a class with a shorter, slower burst narrows it",
			annotations: `annotations {
  enabled = true
  classes = ["shorter"]
}`, asks: map[string]string{AnnotationContainerClass + "app": "shorter"},
			data: IOBurst{Credit: 100 << 20, WriteBPS: 50 << 20}, dataKeys: 1, noThird: true},
		{name: "a tighter sustained rate keeps the burst as it is",
			annotations: enabledMax, asks: map[string]string{AnnotationWriteBPS: "1MiB"}, data: ruleBurst, dataKeys: 1, noThird: true},
		{name: "allow_loosen raising the sustained rate to the burst rate ends the burst",
			annotations: `annotations {
  enabled       = true
  allow_loosen  = true
  max_write_bps = "200MiB"
}`, asks: map[string]string{AnnotationWriteBPS: "150MiB"}, data: ruleBurst, dataKeys: 0, noThird: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustParse(t, rules+tt.annotations)
			d := p.Decide(Workload{Namespace: "tenant-a", ContainerName: "app", PodAnnotations: tt.asks})
			seen := map[string]bool{}
			for _, l := range d.IO {
				seen[l.Device] = true
				switch l.Device {
				case "/var/lib/containerd":
					if l.Burst != tt.data {
						t.Errorf("burst on data = %+v, want %+v (%s)", l.Burst, tt.data, d.Reason)
					}
					if n := len(l.BurstKeys()); n != tt.dataKeys {
						t.Errorf("data: %d keys burst (%+v), want %d", n, l.BurstKeys(), tt.dataKeys)
					}
				case "8:16":
					if l.Burst != tt.other {
						t.Errorf("burst on 8:16 = %+v, want %+v: the rule gives none there", l.Burst, tt.other)
					}
				case "8:32":
					if tt.noThird && len(l.BurstKeys()) > 0 {
						t.Errorf("burst added on 8:32 by annotation: %+v", l.Burst)
					}
				}
				for _, k := range l.BurstKeys() {
					if k.Credit > 1<<30 || (k.Rate == 0 || k.Rate > 100<<20) {
						t.Errorf("%s %s bursts beyond the rule: %+v", l.Device, k.Key, k)
					}
				}
			}
			if !seen["/var/lib/containerd"] {
				t.Errorf("data lost its limit: %+v", d.IO)
			}
		})
	}
}

// Naming a rate picks the keys that burst; naming none bursts every key of the kind.
func TestBurstKeysNamedOrAll(t *testing.T) {
	p := mustParse(t, `
class "named" {
  io {
    device    = "8:0"
    write_bps = "10MiB"
    read_bps  = "20MiB"
    burst {
      write_bps = "50MiB"
      credit    = "1GiB"
    }
  }
}
class "all" {
  io {
    device    = "8:0"
    write_bps = "10MiB"
    read_bps  = "20MiB"
    burst {
      credit = "1GiB"
    }
  }
}
`)
	named := fmt.Sprint(p.Classes["named"].IO[0].BurstKeys())
	if want := fmt.Sprint([]BurstKey{{Key: KeyWriteBPS, Sustained: 10 << 20, Rate: 50 << 20, Credit: 1 << 30}}); named != want {
		t.Errorf("named: %s, want only write_bps: %s", named, want)
	}
	all := fmt.Sprint(p.Classes["all"].IO[0].BurstKeys())
	if want := fmt.Sprint([]BurstKey{{Key: KeyReadBPS, Sustained: 20 << 20, Credit: 1 << 30}, {Key: KeyWriteBPS, Sustained: 10 << 20, Credit: 1 << 30}}); all != want {
		t.Errorf("all: %s, want both bps keys unthrottled: %s", all, want)
	}
}

// Without a rule, an annotation alone never brings a burst, even from a listed class.
func TestAnnotationAloneBringsNoBurst(t *testing.T) {
	p := mustParse(t, `
class "bursty" {
  io {
    device    = "8:0"
    write_bps = "10MiB"
    burst {
      credit = "1GiB"
    }
  }
}
annotations {
  enabled = true
  device  = "8:0"
  classes = ["bursty"]
}
`)
	d := p.Decide(Workload{Namespace: "x", ContainerName: "app", PodAnnotations: map[string]string{AnnotationPodClass: "bursty"}})
	if len(d.IO) != 1 || d.IO[0].WriteBPS != 10<<20 {
		t.Fatalf("IO = %+v, want the class's sustained 10MiB", d.IO)
	}
	if len(d.IO[0].BurstKeys()) != 0 {
		t.Errorf("an annotation-picked class brought a burst without a rule: %+v", d.IO[0].Burst)
	}
}
