package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestParseMountInfoFixtures(t *testing.T) {
	tests := []struct {
		fixture     string
		mode        Mode
		blkio       string // "" = not a v1 controller
		unified     string // "" = no cgroup2 mount
		cpu         string
		ioVersion   int // 0 = IO() must fail
		ioMount     string
		systemdName string
	}{
		{"v1.mountinfo", ModeV1, "/sys/fs/cgroup/blkio", "", "/sys/fs/cgroup/cpu,cpuacct", 1, "/sys/fs/cgroup/blkio", "/sys/fs/cgroup/systemd"},
		{"hybrid.mountinfo", ModeHybrid, "/sys/fs/cgroup/blkio", "/sys/fs/cgroup/unified", "/sys/fs/cgroup/cpu", 1, "/sys/fs/cgroup/blkio", "/sys/fs/cgroup/systemd"},
		{"v2.mountinfo", ModeV2, "", "/sys/fs/cgroup", "", 2, "/sys/fs/cgroup", ""},
		{"v2-run-cg.mountinfo", ModeV2, "", "/run/cg", "", 2, "/run/cg", ""},
		{"v1-odd.mountinfo", ModeV1, "/cgroup/blk io", "", "/cgroup/cpu", 1, "/cgroup/blk io", "/cgroup/systemd"},
		{"container-v2.mountinfo", ModeV2, "", "/host/sys/fs/cgroup", "", 2, "/host/sys/fs/cgroup", ""},
		{"none.mountinfo", ModeUnknown, "", "", "", 0, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.fixture, func(t *testing.T) {
			h := parseFixture(t, tt.fixture)
			if got := h.Mode(); got != tt.mode {
				t.Errorf("Mode() = %v, want %v", got, tt.mode)
			}
			checkMount(t, "blkio", tt.blkio, h)
			checkMount(t, "cpu", tt.cpu, h)
			checkMount(t, "name=systemd", tt.systemdName, h)
			checkMount(t, "", tt.unified, h)
			if got, ok := h.UnifiedMount(); got != tt.unified || ok != (tt.unified != "") {
				t.Errorf("UnifiedMount() = %q, %v; want %q", got, ok, tt.unified)
			}
			backend, err := h.IO()
			if tt.ioVersion == 0 {
				if !errors.Is(err, ErrNoIOController) {
					t.Fatalf("IO() error = %v, want ErrNoIOController", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("IO(): %v", err)
			}
			if backend.Version() != tt.ioVersion || backend.Mount() != tt.ioMount {
				t.Errorf("IO() = v%d at %q, want v%d at %q", backend.Version(), backend.Mount(), tt.ioVersion, tt.ioMount)
			}
		})
	}
}

func parseFixture(t *testing.T, name string) *Hierarchy {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h, err := ParseMountInfo(f)
	if err != nil {
		t.Fatalf("ParseMountInfo(%s): %v", name, err)
	}
	return h
}

func checkMount(t *testing.T, controller, want string, h *Hierarchy) {
	t.Helper()
	got, ok := h.ControllerMount(controller)
	if got != want || ok != (want != "") {
		t.Errorf("ControllerMount(%q) = %q, %v; want %q, %v", controller, got, ok, want, want != "")
	}
}

func TestParseMountInfoRejectsMalformed(t *testing.T) {
	for _, line := range []string{
		"1 0 8:1 / / rw",                        // no separator
		"1 0 8:1 / / rw - ext4",                 // too few fields after "-"
		"1 0 8 / / rw - ext4 /dev/sda1 rw",      // no minor
		"",                                      // blank line
		"1 0 8:1 / /a\\04 rw - ext4 /dev/x rw",  // truncated escape
		"1 0 8:1 / /a\\999 rw - ext4 /dev/x rw", // not octal
	} {
		_, err := ParseMountInfo(strings.NewReader(line + "\n"))
		if !errors.Is(err, ErrMountInfo) {
			t.Errorf("ParseMountInfo(%q) error = %v, want ErrMountInfo", line, err)
		}
	}
}

func TestDetectHostReadsProcRoot(t *testing.T) {
	procRoot := t.TempDir()
	fixture, err := os.ReadFile(filepath.Join("testdata", "v2-run-cg.mountinfo"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(procRoot, "self"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(procRoot, "self", "mountinfo"), fixture, 0o644); err != nil {
		t.Fatal(err)
	}
	h, err := DetectHost(procRoot)
	if err != nil {
		t.Fatal(err)
	}
	if mount, _ := h.UnifiedMount(); h.Mode() != ModeV2 || mount != "/run/cg" {
		t.Errorf("DetectHost = %v at %q, want v2 at /run/cg", h.Mode(), mount)
	}
	if _, err := DetectHost(filepath.Join(procRoot, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("DetectHost(missing) error = %v, want ErrNotExist", err)
	}
}

// The real host must parse and name a mode; its details are the fixtures' job.
func TestDetectHostReal(t *testing.T) {
	h, err := DetectHost("")
	if err != nil {
		t.Fatal(err)
	}
	if h.Mode() == ModeUnknown {
		t.Skip("no cgroup mounted here")
	}
	if _, err := h.IO(); err != nil {
		t.Errorf("IO() on a %v host: %v", h.Mode(), err)
	}
}

func TestModeString(t *testing.T) {
	want := map[Mode]string{ModeUnknown: "unknown", ModeV1: "v1", ModeHybrid: "hybrid", ModeV2: "v2"}
	for mode, s := range want {
		if mode.String() != s {
			t.Errorf("%d.String() = %q, want %q", int(mode), mode.String(), s)
		}
	}
}

// TestParseMountsKeepsLittle: the mount table lives between mount changes, and on a
// node every container's overlay line carries all its lower layers. An entry keeps
// what criguard reads (the upperdir among the options), not the line.
func TestParseMountsKeepsLittle(t *testing.T) {
	const n = 500
	lowers := strings.Repeat("/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/1234/fs:", 24)
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "%d 30 0:%d / /run/containerd/io.containerd.runtime.v2.task/k8s.io/%064d/rootfs rw,relatime - overlay overlay rw,lowerdir=%s,upperdir=/var/lib/containerd/snapshots/%d/fs,workdir=/var/lib/containerd/snapshots/%d/work\n",
			100+i, 100+i, i, strings.TrimSuffix(lowers, ":"), i, i)
	}
	text := b.String()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	mounts, err := parseMounts(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if got, want := mountOption(mounts[7].superOpts, "upperdir"), "/var/lib/containerd/snapshots/7/fs"; got != want {
		t.Fatalf("upperdir %q, want %q", got, want)
	}
	// An entry, its mount point and its upperdir: about 300 bytes; the whole line was
	// kept before, 2.5 KB.
	if perMount := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / n; perMount > 1024 {
		t.Errorf("the parsed table keeps %d bytes a mount, want at most 1024", perMount)
	}
	runtime.KeepAlive(mounts)
	runtime.KeepAlive(text)
}
