package main

import (
	"strings"
	"testing"
)

// versionHost is a fakeHost whose I/O controller is cgroup v1 or v2.
type versionHost struct {
	fakeHost
	version int
}

func (h versionHost) IOVersion() (int, error) { return h.version, nil }

const protectHostPolicy = `
device "data" {
  path = "/var/lib/containerd"
}
class "web" {
  io {
    device = "data"
    protect {
      pressure_some_avg10 = 10
    }
  }
}
class "batch" {
  io {
    device    = "data"
    write_bps = "100MiB"
    yield {
      floor = "10MiB"
    }
  }
}
`

func TestCheckHostRefusesProtectionOnCgroupV1(t *testing.T) {
	path := writePolicy(t, "protect.hcl", protectHostPolicy)
	devices := map[string]string{"/var/lib/containerd": "8:0"}
	stdout, stderr, code := runCheckWith(t, versionHost{fakeHost{devices: devices}, 1}, "--host", path)
	if code != 1 || stdout != "" {
		t.Errorf("check --host on v1 = %d, stdout %q; want 1 and nothing", code, stdout)
	}
	for _, want := range []string{
		path + `: class "batch" yields on /var/lib/containerd: refused on this host`,
		path + `: class "web" protects on /var/lib/containerd: refused on this host: protection follows the protected workload's io.pressure, which only cgroup v2 has`,
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	stdout, stderr, code = runCheckWith(t, versionHost{fakeHost{devices: devices}, 2}, "--host", path)
	if code != 0 || !strings.Contains(stdout, ": ok:") {
		t.Errorf("check --host on v2 = %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
}
