package policy

import (
	"slices"
	"testing"
)

func TestSelectorsDecode(t *testing.T) {
	p, diags := Parse([]byte(`
device "data" {
  path = "/var/lib/containerd"
}
class "c" {
  io {
    volumes   = ["data", "/var/lib/mysql"]
    write_bps = "10MiB"
  }
  io {
    device    = "rootfs"
    write_bps = "5MiB"
  }
  io {
    device     = "volumes"
    write_iops = 100
  }
  io {
    device   = "data"
    read_bps = "1MiB"
  }
}
`), "p.hcl")
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	var got []string
	for _, l := range p.Classes["c"].IO {
		got = append(got, l.Target())
	}
	want := []string{`volumes ["data" "/var/lib/mysql"]`, "rootfs", "volumes", "/var/lib/containerd"}
	if !slices.Equal(got, want) {
		t.Errorf("targets = %q, want %q", got, want)
	}
	for i, selects := range []bool{true, true, true, false} {
		if p.Classes["c"].IO[i].SelectsMounts() != selects {
			t.Errorf("io[%d].SelectsMounts() = %v, want %v", i, !selects, selects)
		}
	}
}

func TestMatchVolume(t *testing.T) {
	sel := IOLimits{Device: DeviceVolumes, Volumes: []string{"data", "pvc-*", "/var/lib/my*"}}
	for _, tt := range []struct {
		name, containerPath, want string
		ok                        bool
	}{
		{"data", "/data", "data", true},
		{"pvc-1234", "/srv", "pvc-*", true},
		{"", "/var/lib/mysql", "/var/lib/my*", true}, // a hostPath volume, by container path
		{"cache", "/cache", "", false},
		{"", "/data", "", false}, // no name: "data" cannot match
		{"mysql", "/x", "", false},
	} {
		got, ok := sel.MatchVolume(tt.name, tt.containerPath)
		if got != tt.want || ok != tt.ok {
			t.Errorf("MatchVolume(%q, %q) = %q, %v; want %q, %v", tt.name, tt.containerPath, got, ok, tt.want, tt.ok)
		}
	}
	if _, ok := (IOLimits{Device: DeviceVolumes}).MatchVolume("", "/etc/x"); !ok {
		t.Error(`device = "volumes" must take every volume`)
	}
	if _, ok := (IOLimits{Device: DeviceRootfs}).MatchVolume("data", "/data"); ok {
		t.Error("rootfs takes no volume")
	}
}

// Two blocks on one selector merge like two on one device: the tightest value wins.
func TestSelectorsMergeByTarget(t *testing.T) {
	io := tightestPerDevice([]IOLimits{
		{Device: DeviceVolumes, Volumes: []string{"data"}, WriteBPS: 10},
		{Device: DeviceVolumes, WriteBPS: 5},
		{Device: DeviceVolumes, Volumes: []string{"data"}, WriteBPS: 3, ReadBPS: 7},
	})
	if len(io) != 2 || io[0].WriteBPS != 3 || io[0].ReadBPS != 7 || io[1].WriteBPS != 5 {
		t.Errorf("merged = %+v", io)
	}
}
