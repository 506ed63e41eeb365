package policy

import (
	"fmt"
	"path/filepath"
	"testing"
)

// Each example does what its comments say for a typical workload.
func TestExamplesDecide(t *testing.T) {
	const data = "/var/lib/containerd"
	tests := []struct {
		file   string
		w      Workload
		source Source
		rule   string
		scope  Scope
		io     []IOLimits
	}{
		{
			file: "namespace-budgets.hcl", w: Workload{Namespace: "payments-eu", ContainerName: "api"},
			source: SourceRule, rule: "payments", scope: ScopeContainer,
			io: []IOLimits{{Device: data, ReadBPS: 400 << 20, WriteBPS: 200 << 20}},
		},
		{
			file: "namespace-budgets.hcl", w: Workload{Namespace: "kube-system", ContainerName: "coredns"},
			source: SourceNone, scope: ScopeContainer,
		},
		{
			file: "noisy-batch.hcl",
			w: Workload{Namespace: "etl-7", ContainerName: "spark", Image: "docker.io/spark:3", QoS: "besteffort",
				PodLabels: map[string]string{"team": "data"}},
			source: SourceRule, rule: "batch", scope: ScopeContainer,
			io: []IOLimits{
				{Device: data, ReadBPS: 100 << 20, WriteBPS: 40 << 20, ReadIOPS: 2000, WriteIOPS: 1000},
				{Device: "/dev/sdb", WriteBPS: 200e6},
			},
		},
		{
			file:   "noisy-batch.hcl",
			w:      Workload{Namespace: "web", ContainerName: "db-backup", Image: "registry.example.com/backup/restic:1"},
			source: SourceRule, rule: "backup-sidecars", scope: ScopeContainer,
			io: []IOLimits{{Device: data, WriteBPS: 5 << 20, WriteIOPS: 100}},
		},
		{
			file: "pod-annotations.hcl",
			w: Workload{Namespace: "x", ContainerName: "db", PodAnnotations: map[string]string{
				AnnotationPodClass: "bulk", AnnotationContainerClass + "db": "fast"}},
			source: SourceContainerAnnotation, rule: "everyone", scope: ScopeContainer,
			io: []IOLimits{{Device: data, ReadBPS: 100 << 20, WriteBPS: 40 << 20, ReadIOPS: 8000, WriteIOPS: 4000}},
		},
		{
			file:   "pod-annotations.hcl",
			w:      Workload{Namespace: "x", ContainerName: "app", PodAnnotations: map[string]string{AnnotationWriteBPS: "10MiB"}},
			source: SourcePodAnnotation, rule: "everyone", scope: ScopeContainer,
			io: []IOLimits{{Device: data, ReadBPS: 100 << 20, WriteBPS: 10 << 20}},
		},
		{
			file:   "pod-annotations.hcl",
			w:      Workload{Namespace: "x", ContainerName: "app", PodAnnotations: map[string]string{AnnotationWriteBPS: "80MiB"}},
			source: SourceRule, rule: "everyone", scope: ScopeContainer,
			io: []IOLimits{{Device: data, ReadBPS: 100 << 20, WriteBPS: 40 << 20}},
		},
		{
			file:   "pod-annotations.hcl",
			w:      Workload{Namespace: "x", ContainerName: "app"},
			source: SourceRule, rule: "everyone", scope: ScopeContainer,
			io: []IOLimits{{Device: data, ReadBPS: 100 << 20, WriteBPS: 40 << 20}},
		},
		{
			file:   "pod-budgets.hcl",
			w:      Workload{Namespace: "tenant-acme", QoS: "burstable"},
			source: SourceRule, rule: "tenants", scope: ScopePod,
			io: []IOLimits{{Device: data, ReadBPS: 50 << 20, WriteBPS: 25 << 20}, {Device: "8:16", WriteBPS: 10 << 20}},
		},
		{
			file:   "pod-budgets.hcl",
			w:      Workload{Namespace: "analytics", ContainerName: "worker", PodAnnotations: map[string]string{"example.com/tier": "large"}},
			source: SourceRule, rule: "analytics", scope: ScopePod,
			io: []IOLimits{{Device: data, ReadBPS: 1 << 30, WriteBPS: 500 << 20, WriteIOPS: 10000}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.file+"/"+tt.w.Namespace+"/"+tt.w.ContainerName, func(t *testing.T) {
			p, err := Load("../examples/" + tt.file)
			if err != nil {
				t.Fatal(err)
			}
			d := p.Decide(tt.w)
			if d.Source != tt.source || d.Rule != tt.rule || d.Scope != tt.scope || fmt.Sprint(d.IO) != fmt.Sprint(tt.io) {
				t.Errorf("Decide = %+v\nwant source %s rule %q scope %s io %+v", d, tt.source, tt.rule, tt.scope, tt.io)
			}
		})
	}
}

// Every example policy loads, so none of them teaches a broken or stale syntax.
func TestEveryExamplePolicyLoads(t *testing.T) {
	files, err := filepath.Glob("../examples/*.hcl")
	if err != nil || len(files) == 0 {
		t.Fatalf("no example policies found (%v)", err)
	}
	for _, file := range files {
		p, err := Load(file)
		if err != nil {
			t.Errorf("%s: %v", file, err)
			continue
		}
		if len(p.Rules) == 0 && len(p.Classes) == 0 {
			t.Errorf("%s loads to nothing", file)
		}
	}
}
