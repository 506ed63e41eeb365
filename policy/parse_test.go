package policy

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
)

var update = flag.Bool("update", false, "rewrite testdata/bad/*.golden from the current diagnostics")

// goldenLines renders diagnostics as "file:line: severity: summary", the part of a
// diagnostic an operator acts on, stable across wording changes of the detail.
func goldenLines(diags hcl.Diagnostics) string {
	var b strings.Builder
	for _, d := range diags {
		severity := "error"
		if d.Severity == hcl.DiagWarning {
			severity = "warning"
		}
		fmt.Fprintf(&b, "%s:%d: %s: %s\n", filepath.ToSlash(d.Subject.Filename), d.Subject.Start.Line, severity, d.Summary)
	}
	return b.String()
}

func TestBadPolicies(t *testing.T) {
	files, err := filepath.Glob("testdata/bad/*.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 25 {
		t.Fatalf("want at least 25 bad policies, have %d", len(files))
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			p, err := Load(file)
			if err == nil {
				t.Fatalf("Load(%s) = %+v, want an error", file, p)
			}
			var diags hcl.Diagnostics
			if !errors.As(err, &diags) || !errors.Is(err, ErrPolicyInvalid) {
				t.Fatalf("Load(%s) error %v does not carry hcl.Diagnostics and ErrPolicyInvalid", file, err)
			}
			for _, d := range diags {
				if d.Subject == nil || d.Subject.Filename != file || d.Subject.Start.Line < 1 {
					t.Errorf("diagnostic %q has no subject in %s: %+v", d.Summary, file, d.Subject)
				}
				if d.Detail == "" {
					t.Errorf("diagnostic %q says nothing about how to fix it", d.Summary)
				}
			}
			got := goldenLines(diags)
			golden := strings.TrimSuffix(file, ".hcl") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("read golden (run go test -update): %v", err)
			}
			if got != string(want) {
				t.Errorf("diagnostics of %s:\n%s\nwant (%s):\n%s\nall: %v", file, got, golden, want, err)
			}
		})
	}
}

// The details carry what would be right; these are the ones an operator needs most.
func TestDiagnosticDetails(t *testing.T) {
	tests := []struct {
		file string
		want []string
	}{
		{"unknown_attribute.hcl", []string{`testdata/bad/unknown_attribute.hcl:8,5: Unsupported argument; An argument named "write_bsp" is not expected here. Did you mean "write_bps"?`}},
		{"unknown_block.hcl", []string{`Did you mean "device"?`}},
		{"unknown_match_attribute.hcl", []string{`Did you mean "namespaces"?`}},
		{"rule_unknown_class.hcl", []string{`No class is named "bulck". Did you mean "bulk"? Declared classes: "bulk".`}},
		{"class_unknown_device.hcl", []string{`No device is labelled "dta". Did you mean "data"?`}},
		{"unknown_scope.hcl", []string{`Did you mean "pod"?`}},
		{"unknown_qos.hcl", []string{`"best-effort" is not a Kubernetes QoS class`, `Did you mean "besteffort"?`}},
		{"bad_unit.hcl", []string{`write_bps = "40XB" is refused: unknown unit "XB". Use a whole number of bytes`, `"100MiB"`}},
		{"negative_number.hcl", []string{`write_iops = -5 is refused: negative. Use a whole number of operations per second`}},
		{"overflow_number.hcl", []string{`read_bps = 1e+30 is refused: larger than 18446744073709551615`}},
		{"overflow_unit.hcl", []string{`larger than 18446744073709551615 bytes`}},
		{"fraction_of_byte.hcl", []string{`read_bps = "1.5" is refused: not a whole number of bytes`}},
		{"duplicate_device.hcl", []string{`already declared at testdata/bad/duplicate_device.hcl:1`}},
		{"wrong_type_namespaces.hcl", []string{`"namespaces" must be a list of strings, e.g. namespaces = ["batch", "etl-*"]; this is string.`}},
		{"binary.hcl", []string{`testdata/bad/binary.hcl:4,1: Binary policy file`}},
		{"many_errors.hcl", []string{`"sda" is neither`, `write_bsp`, `negative`, `"gold" is not a Kubernetes QoS class`, `No class is named "nope"`, `Scope "node"`}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			_, err := Load(filepath.Join("testdata/bad", tt.file))
			if err == nil {
				t.Fatal("want an error")
			}
			for _, want := range tt.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error does not contain %q:\n%s", want, err)
				}
			}
		})
	}
}

func TestGoodPolicies(t *testing.T) {
	files, err := filepath.Glob("testdata/good/*.hcl")
	if err != nil {
		t.Fatal(err)
	}
	examples, err := filepath.Glob("../examples/*.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 || len(examples) < 4 {
		t.Fatalf("want good fixtures and 4 examples, have %d and %d", len(files), len(examples))
	}
	for _, file := range append(files, examples...) {
		t.Run(file, func(t *testing.T) {
			p, err := Load(file)
			if err != nil {
				t.Fatalf("Load(%s): %v", file, err)
			}
			if len(p.Classes) == 0 || p.Filename != file {
				t.Errorf("Load(%s) = %+v: no classes or wrong filename", file, p)
			}
			for name, class := range p.Classes {
				for _, limits := range class.IO {
					if limits.SetsNothing() || limits.Device == "" {
						t.Errorf("class %s has an empty io entry %+v", name, limits)
					}
				}
			}
		})
	}
}

func TestParseFullPolicy(t *testing.T) {
	src := `
device "data" {
  path = "/var/lib/containerd"
}
device "logs" {
  path = "8:16"
}
class "bulk" {
  io {
    device     = "data"
    read_bps   = "100MiB"
    write_bps  = "40MB"
    read_iops  = 2000
    write_iops = "1000"
  }
  io {
    device    = "logs"
    write_bps = 1048576
  }
}
rule "batch" {
  match {
    namespaces      = ["batch", "etl-*"]
    pod_labels      = { team = "data", tier = 2 }
    pod_annotations = { "example.com/noisy" = "true" }
    qos             = ["BestEffort", "burstable"]
    containers      = ["*"]
    images          = ["docker.io/*"]
  }
  class = "bulk"
}
rule "pods" {
  class = "bulk"
  scope = "pod"
}
annotations {
  enabled        = true
  device         = "logs"
  max_read_bps   = "1Gi"
  max_write_bps  = "200MiB"
  max_read_iops  = 5000
  max_write_iops = 4000
}
`
	p, diags := Parse([]byte(src), "policy.hcl")
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	wantIO := []IOLimits{
		{Device: "/var/lib/containerd", ReadBPS: 100 << 20, WriteBPS: 40e6, ReadIOPS: 2000, WriteIOPS: 1000},
		{Device: "8:16", WriteBPS: 1 << 20},
	}
	if got := p.Classes["bulk"].IO; fmt.Sprint(got) != fmt.Sprint(wantIO) {
		t.Errorf("class bulk io = %+v, want %+v", got, wantIO)
	}
	batch := p.Rules[0]
	if batch.Name != "batch" || batch.Scope != ScopeContainer || batch.PodLabels["tier"] != "2" ||
		batch.QoS[0] != "besteffort" || batch.PodAnnotations["example.com/noisy"] != "true" || batch.Images[0] != "docker.io/*" {
		t.Errorf("rule batch = %+v", batch)
	}
	if p.Rules[1].Name != "pods" || p.Rules[1].Scope != ScopePod {
		t.Errorf("rule pods = %+v", p.Rules[1])
	}
	wantAnnotations := AnnotationSettings{Enabled: true, Device: "8:16", MaxReadBPS: 1 << 30, MaxWriteBPS: 200 << 20, MaxReadIOPS: 5000, MaxWriteIOPS: 4000}
	if fmt.Sprint(p.Annotations) != fmt.Sprint(wantAnnotations) {
		t.Errorf("annotations = %+v, want %+v", p.Annotations, wantAnnotations)
	}
}

func TestAnnotationDeviceDefaultsToFirstDevice(t *testing.T) {
	src := `
device "b" {
  path = "/dev/sdb"
}
device "a" {
  path = "/dev/sda"
}
annotations {
  enabled = true
}
`
	p, diags := Parse([]byte(src), "policy.hcl")
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	if p.Annotations.Device != "/dev/sdb" {
		t.Errorf("annotation device = %q, want the first declared, /dev/sdb", p.Annotations.Device)
	}
}

func TestLoadRefusesWhatIsNotAPolicy(t *testing.T) {
	dir := t.TempDir()
	huge := filepath.Join(dir, "huge.hcl")
	if err := os.WriteFile(huge, []byte(strings.Repeat("# padding\n", MaxFileSize/10+1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(huge); !errors.Is(err, ErrPolicyTooLarge) {
		t.Errorf("Load(huge) = %v, want ErrPolicyTooLarge", err)
	}
	if _, err := Load(dir); !errors.Is(err, ErrPolicyNotRegular) {
		t.Errorf("Load(directory) = %v, want ErrPolicyNotRegular", err)
	}
	if _, err := Load(filepath.Join(dir, "missing.hcl")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want os.ErrNotExist", err)
	}
	if os.Geteuid() != 0 { // root reads a 0o000 file anyway
		unreadable := filepath.Join(dir, "unreadable.hcl")
		if err := os.WriteFile(unreadable, []byte("annotations {}\n"), 0o000); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(unreadable); !errors.Is(err, os.ErrPermission) {
			t.Errorf("Load(unreadable) = %v, want os.ErrPermission", err)
		}
	}
	_, diags := Parse([]byte(strings.Repeat(" ", MaxFileSize+1)), "big.hcl")
	if !diags.HasErrors() || diags[0].Summary != "Policy file too large" {
		t.Errorf("Parse(big) = %v, want Policy file too large", diags)
	}
}

func TestEmptyPolicyIsValid(t *testing.T) {
	p, diags := Parse([]byte("# nothing yet\n"), "empty.hcl")
	if diags.HasErrors() || p == nil || len(p.Rules) != 0 {
		t.Fatalf("Parse(empty) = %+v, %v", p, diags)
	}
	if d := p.Decide(Workload{Namespace: "a", ContainerName: "c"}); d.Source != SourceNone || len(d.IO) != 0 {
		t.Errorf("empty policy decided %+v", d)
	}
}

func TestUnreachableRuleWarning(t *testing.T) {
	p, diags := Parse([]byte(`class "c" {
  io {
    device    = "8:0"
    write_bps = 1
  }
}
rule "everything" {
  class = "c"
}
rule "late" {
  match {
    namespaces = ["x"]
  }
  class = "c"
}
`), "policy.hcl")
	if diags.HasErrors() || p == nil || len(p.Rules) != 2 {
		t.Fatalf("Parse = %+v, %v; want a policy with a warning", p, diags)
	}
	want := `policy.hcl:10,6: Unreachable rule; Rule "everything" at policy.hcl:7 has no conditions and matches every workload first, so rule "late" never applies. Move "late" above it, or give "everything" a match block.`
	if len(diags) != 1 || diags[0].Severity != hcl.DiagWarning || FormatDiagnostic(diags[0]) != want {
		t.Errorf("diagnostics = %v\nwant one warning: %s", diags, want)
	}
}

func TestDeepNestingIsRefusedNotACrash(t *testing.T) {
	for _, src := range []string{
		"a = " + strings.Repeat("[", 100000),
		strings.Repeat("a {\n", 10000),
		"a = " + strings.Repeat("\"${", 1000),
	} {
		_, diags := Parse([]byte(src), "deep.hcl")
		if !diags.HasErrors() || diags[0].Summary != "Nesting too deep" {
			t.Errorf("Parse(%.20q…) = %v, want Nesting too deep", src, diags)
		}
	}
}
