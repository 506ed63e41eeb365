package cgroup

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/cgroups"
)

// runcWeight is opencontainers/cgroups' ConvertCPUSharesToCgroupV2Value as current
// runc ships it, written out here as the reference the translation must follow.
func runcWeight(shares uint64) uint64 {
	if shares == 0 {
		return 0
	}
	if shares <= 2 {
		return 1
	}
	if shares >= 262144 {
		return 10000
	}
	l := math.Log2(float64(shares))
	exponent := (l*l+125*l)/612.0 - 7.0/34.0
	return uint64(math.Ceil(math.Pow(10, exponent)))
}

// runcLinearWeight is the conversion of older runc (Debian 12 ships 1.1.5).
func runcLinearWeight(shares uint64) uint64 {
	if shares == 0 {
		return 0
	}
	return 1 + ((shares-2)*9999)/262142
}

// The pinned opencontainers/cgroups must convert as current runc does: the
// shares criguard writes on v1 are chosen against it.
func TestLibraryConvertsSharesAsRunc(t *testing.T) {
	// runc's own test table, then points computed by the reference.
	table := []struct{ shares, weight, linear uint64 }{
		{0, 0, 0}, {2, 1, 1}, {262144, 10000, 10000}, {1024, 100, 39},
		{3, 2, 1}, {100, 17, 4}, {512, 59, 20}, {2048, 174, 79}, {10000, 627, 382}, {100000, 4340, 3815},
	}
	for _, tt := range table {
		if got := cgroups.ConvertCPUSharesToCgroupV2Value(tt.shares); got != tt.weight {
			t.Errorf("ConvertCPUSharesToCgroupV2Value(%d) = %d, want %d", tt.shares, got, tt.weight)
		}
		if got := runcWeight(tt.shares); got != tt.weight {
			t.Errorf("runcWeight(%d) = %d, want %d", tt.shares, got, tt.weight)
		}
		if got := runcLinearWeight(tt.shares); got != tt.linear {
			t.Errorf("runcLinearWeight(%d) = %d, want %d", tt.shares, got, tt.linear)
		}
	}
}

func TestCPUSharesFromWeight(t *testing.T) {
	table := []struct{ weight, shares uint64 }{{0, 0}, {1, 2}, {50, 421}, {100, 1024}, {200, 2451}, {10000, 262144}}
	for _, tt := range table {
		if got := CPUSharesFromWeight(tt.weight); got != tt.shares {
			t.Errorf("CPUSharesFromWeight(%d) = %d, want %d", tt.weight, got, tt.shares)
		}
	}
	// The shares land at the weight asked under runc's conversion, and never above it
	// under the old one; one share more would land above it.
	for w := uint64(cpuWeightMin); w <= cpuWeightMax; w++ {
		s := CPUSharesFromWeight(w)
		if got := runcWeight(s); got > w || (got < w && runcWeight(s+1) <= w) {
			t.Fatalf("weight %d: shares %d land at %d under runc", w, s, got)
		}
		if got := runcLinearWeight(s); got > w {
			t.Fatalf("weight %d: shares %d land at %d under runc 1.1, above the weight", w, s, got)
		}
		if w > 2 && runcWeight(s) != w {
			t.Errorf("weight %d is not reachable exactly: shares %d give %d", w, s, runcWeight(s))
		}
	}
}

// dirIn is a container's directory under any mount, as translate.CgroupDir gives it.
func dirIn(rel string) DirOf {
	return func(mount string) (string, error) { return filepath.Join(mount, rel), nil }
}

type mounts map[string]string

func (m mounts) ControllerMount(c string) (string, bool) { p, ok := m[c]; return p, ok }

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// The backend picked once per host reads each setting from the file its version has.
func TestSettingsReadByVersion(t *testing.T) {
	root := t.TempDir()
	v2 := NewSettings(ioV2{mount: root}, nil)
	writeFiles(t, filepath.Join(root, "pod/c1"), map[string]string{"pids.max": "max\n", "cpu.weight": "20\n",
		"cpu.max": "50000 100000\n", "memory.max": "1048576\n", "memory.high": "524288\n"})
	writeFiles(t, root, map[string]string{"cgroup.controllers": "cpuset cpu io memory pids\n"})

	v1root := t.TempDir()
	m := mounts{"pids": filepath.Join(v1root, "pids"), "cpu": filepath.Join(v1root, "cpu"), "memory": filepath.Join(v1root, "memory")}
	v1 := NewSettings(blkioV1{mount: filepath.Join(v1root, "blkio")}, m)
	writeFiles(t, filepath.Join(m["pids"], "pod/c1"), map[string]string{"pids.max": "40\n"})
	writeFiles(t, filepath.Join(m["cpu"], "pod/c1"), map[string]string{"cpu.shares": "421\n", "cpu.cfs_quota_us": "-1\n", "cpu.cfs_period_us": "100000\n"})
	writeFiles(t, filepath.Join(m["memory"], "pod/c1"), map[string]string{"memory.limit_in_bytes": "2097152\n"})

	tests := []struct {
		name     string
		s        Settings
		setting  Setting
		file     string
		value    uint64
		limited  bool
		quota    int64
		notFound bool
	}{
		{"v2 pids", v2, PidsMax, "pids.max", 0, false, 0, false},
		{"v2 weight", v2, CPUWeight, "cpu.weight", 20, true, 0, false},
		{"v2 cpu.max", v2, CPUMax, "cpu.max", 0, false, 50000, false},
		{"v2 memory.max", v2, MemoryMax, "memory.max", 1048576, true, 0, false},
		{"v2 memory.high", v2, MemoryHigh, "memory.high", 524288, true, 0, false},
		{"v1 pids", v1, PidsMax, "pids.max", 40, true, 0, false},
		{"v1 weight is shares", v1, CPUWeight, "cpu.shares", 421, true, 0, false},
		{"v1 cpu.max is the cfs quota", v1, CPUMax, "cpu.cfs_quota_us", 0, false, -1, false},
		{"v1 memory.max", v1, MemoryMax, "memory.limit_in_bytes", 2097152, true, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := tt.s.Read(dirIn("pod/c1"), tt.setting)
			if err != nil {
				t.Fatal(err)
			}
			if r.File != tt.file || r.Value != tt.value || r.Limited != tt.limited {
				t.Errorf("Read = %+v, want file %s value %d limited %v", r, tt.file, tt.value, tt.limited)
			}
			if tt.setting == CPUMax && r.Quota != tt.quota {
				t.Errorf("quota = %d, want %d", r.Quota, tt.quota)
			}
		})
	}
	if _, err := v1.Read(dirIn("pod/c1"), MemoryHigh); !errors.Is(err, ErrNotSupported) {
		t.Errorf("v1 memory.high: err = %v, want ErrNotSupported", err)
	}
	if err := v2.Support(MemoryHigh); err != nil {
		t.Errorf("v2 with memory enabled: Support(memory.high) = %v", err)
	}
	writeFiles(t, root, map[string]string{"cgroup.controllers": "cpu io\n"})
	if err := v2.Support(PidsMax); err == nil || !strings.Contains(err.Error(), "pids controller is not enabled") {
		t.Errorf("v2 without pids: Support(pids.max) = %v", err)
	}
	if err := NewSettings(blkioV1{}, mounts{}).Support(CPUWeight); err == nil || !strings.Contains(err.Error(), "v1 cpu controller is not mounted") {
		t.Errorf("v1 without cpu: Support = %v", err)
	}
	if got := v1.CPUWeightValue(100); got != 1024 {
		t.Errorf("v1 CPUWeightValue(100) = %d, want 1024 shares", got)
	}
	if got := v2.CPUWeightValue(100); got != 100 {
		t.Errorf("v2 CPUWeightValue(100) = %d", got)
	}
}

// pids.max only ever goes down: a stricter value already there is kept.
func TestTightenPidsMax(t *testing.T) {
	root := t.TempDir()
	m := mounts{"pids": root}
	s := NewSettings(blkioV1{}, m)
	if _, err := s.TightenPidsMax(dirIn("pod/c1"), 40, true); err == nil {
		t.Fatal("a cgroup was made under a pod cgroup that does not exist")
	}
	writeFiles(t, filepath.Join(root, "pod"), nil)
	if _, err := s.TightenPidsMax(dirIn("pod/c1"), 40, false); err == nil {
		t.Fatal("a missing cgroup without makeDir was written")
	}
	// The kernel fills a new cgroup with its files; a temp dir does not.
	writeFiles(t, filepath.Join(root, "pod/c1"), map[string]string{"pids.max": "max\n"})
	wrote, err := s.TightenPidsMax(dirIn("pod/c1"), 40, true)
	if err != nil || !wrote {
		t.Fatalf("TightenPidsMax(40, makeDir) = %v, %v", wrote, err)
	}
	assertFile(t, filepath.Join(root, "pod/c1/pids.max"), "40")
	if wrote, err := s.TightenPidsMax(dirIn("pod/c1"), 100, false); err != nil || wrote {
		t.Errorf("looser 100 over 40: wrote %v, err %v; want kept", wrote, err)
	}
	if wrote, err := s.TightenPidsMax(dirIn("pod/c1"), 20, false); err != nil || !wrote {
		t.Errorf("tighter 20: wrote %v, err %v", wrote, err)
	}
	assertFile(t, filepath.Join(root, "pod/c1/pids.max"), "20")
	if _, err := NewSettings(blkioV1{}, mounts{}).TightenPidsMax(dirIn("pod/c1"), 20, true); !errors.Is(err, ErrControllerMissing) {
		t.Errorf("no pids mount: err = %v, want ErrControllerMissing", err)
	}
}

func assertFile(t *testing.T, path, want string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil || strings.TrimSpace(string(b)) != want {
		t.Errorf("%s = %q, %v; want %q", path, b, err, want)
	}
}
