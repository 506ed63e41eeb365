package criservice

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/criguard/criguard/cgroup"
	"github.com/criguard/criguard/policy"
)

// newFakeHostV2 is a cgroup2 hierarchy in a temp dir with io delegated everywhere.
func newFakeHostV2(t testing.TB) *fakeHost {
	t.Helper()
	root := t.TempDir()
	mountinfo := fmt.Sprintf("30 23 0:26 / %s/unified rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw\n", root)
	h, err := cgroup.ParseMountInfo(strings.NewReader(mountinfo))
	if err != nil {
		t.Fatal(err)
	}
	io, err := h.IO()
	if err != nil {
		t.Fatal(err)
	}
	return &fakeHost{mount: filepath.Join(root, "unified"), io: io, v2: true}
}

// fakeHost is a v1 blkio hierarchy in a temp dir; mkdir makes cgroups with
// empty throttle files as the kernel would.
type fakeHost struct {
	mount string
	io    cgroup.IO
	v2    bool
}

func newFakeHost(t testing.TB) *fakeHost {
	t.Helper()
	root := t.TempDir()
	mountinfo := fmt.Sprintf("38 31 0:35 / %s/blkio rw,relatime shared:16 - cgroup cgroup rw,blkio\n", root)
	h, err := cgroup.ParseMountInfo(strings.NewReader(mountinfo))
	if err != nil {
		t.Fatal(err)
	}
	io, err := h.IO()
	if err != nil {
		t.Fatal(err)
	}
	return &fakeHost{mount: filepath.Join(root, "blkio"), io: io}
}

var throttleFiles = []string{"blkio.throttle.read_bps_device", "blkio.throttle.write_bps_device",
	"blkio.throttle.read_iops_device", "blkio.throttle.write_iops_device",
	"blkio.throttle.io_service_bytes", "blkio.throttle.io_serviced"}

func (h *fakeHost) mkdir(t testing.TB, rel string) string {
	t.Helper()
	dir := filepath.Join(h.mount, rel)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if h.v2 {
		for d := dir; d != h.mount; d = filepath.Dir(d) {
			for _, f := range []string{"io.max", "io.stat"} {
				if _, err := os.Stat(filepath.Join(d, f)); err != nil {
					os.WriteFile(filepath.Join(d, f), nil, 0o644)
				}
			}
			os.WriteFile(filepath.Join(filepath.Dir(d), "cgroup.subtree_control"), []byte("cpu io memory\n"), 0o644)
		}
		return dir
	}
	for _, f := range throttleFiles {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// file reads one throttle file of a cgroup, trimmed.
func (h *fakeHost) file(t *testing.T, rel, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(h.mount, rel, name))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// fakeDevices resolves every spec to one disk without touching the host.
type fakeDevices struct{}

func (fakeDevices) Resolve(spec string) (cgroup.Device, error) {
	if spec == "/not/a/disk" {
		return cgroup.Device{}, fmt.Errorf("%s is on tmpfs, which has no block device", spec)
	}
	return cgroup.Device{Major: 254, Minor: 0}, nil
}

func mustPolicy(t testing.TB, src string) *policy.Policy {
	t.Helper()
	p, diags := policy.Parse([]byte(src), "test.hcl")
	if diags.HasErrors() {
		t.Fatalf("policy: %v", diags)
	}
	return p
}
