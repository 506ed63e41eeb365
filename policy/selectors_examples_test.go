package policy

import (
	"fmt"
	"testing"
)

// examples/volumes.hcl does what its comments say.
func TestVolumesExampleDecides(t *testing.T) {
	p, err := Load("../examples/volumes.hcl")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		w     Workload
		rule  string
		scope Scope
		io    string
	}{
		{Workload{Namespace: "shop", ContainerName: "mysql", PodLabels: map[string]string{"tier": "db"}}, "databases", ScopePod,
			fmt.Sprint([]IOLimits{
				{Device: DeviceVolumes, Volumes: []string{"pvc-*"}, WriteBPS: 200 << 20, WriteIOPS: 4000},
				{Device: DeviceVolumes, Volumes: []string{"/var/lib/mysql-binlog"}, WriteBPS: 50 << 20},
			})},
		{Workload{Namespace: "etl-3", ContainerName: "spark", QoS: "besteffort"}, "batch", ScopeContainer,
			fmt.Sprint([]IOLimits{{Device: DeviceVolumes, Volumes: []string{"scratch"}, WriteBPS: 40 << 20}, {Device: DeviceRootfs, WriteBPS: 20 << 20}})},
		{Workload{Namespace: "web", ContainerName: "nginx", QoS: "burstable"}, "everyone-else", ScopeContainer,
			fmt.Sprint([]IOLimits{{Device: DeviceVolumes, WriteIOPS: 1000}})},
	} {
		d := p.Decide(tt.w)
		if d.Rule != tt.rule || d.Scope != tt.scope || fmt.Sprint(d.IO) != tt.io {
			t.Errorf("Decide(%s/%s) = rule %q scope %s io %v; want %q %s %s", tt.w.Namespace, tt.w.ContainerName, d.Rule, d.Scope, d.IO, tt.rule, tt.scope, tt.io)
		}
	}
}
