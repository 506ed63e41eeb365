package cgroup

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCleanJoin(t *testing.T) {
	tests := []struct {
		mount, rel, want string
		escape           bool
	}{
		{"/sys/fs/cgroup/blkio", "/kubepods/burstable/pod1/abc", "/sys/fs/cgroup/blkio/kubepods/burstable/pod1/abc", false},
		{"/sys/fs/cgroup", "kubepods.slice/x.scope", "/sys/fs/cgroup/kubepods.slice/x.scope", false},
		{"/sys/fs/cgroup/", "//a/./b/", "/sys/fs/cgroup/a/b", false},
		{"/run/cg", "", "/run/cg", false},
		{"/", "/a", "/a", false},
		{"/sys/fs/cgroup", "/../../etc", "", true},
		{"/sys/fs/cgroup", "a/../b", "", true},
		{"/sys/fs/cgroup", "..", "", true},
		{"/sys/fs/cgroup", "a\x00b", "", true},
		{"relative/mount", "a", "", true},
	}
	for _, tt := range tests {
		got, err := CleanJoin(tt.mount, tt.rel)
		if tt.escape {
			if !errors.Is(err, ErrPathEscape) {
				t.Errorf("CleanJoin(%q, %q) = %q, %v; want ErrPathEscape", tt.mount, tt.rel, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("CleanJoin(%q, %q) = %q, %v; want %q", tt.mount, tt.rel, got, err, tt.want)
		}
	}
}

func TestSecureJoinRejectsSymlinkOut(t *testing.T) {
	mount := t.TempDir()
	outside := t.TempDir()
	mustMkdir(t, filepath.Join(mount, "kubepods", "pod1"))
	if err := os.Symlink(outside, filepath.Join(mount, "kubepods", "evil")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("pod1", filepath.Join(mount, "kubepods", "alias")); err != nil {
		t.Fatal(err)
	}

	if got, err := SecureJoin(mount, "/kubepods/pod1/ctr"); err != nil || got != filepath.Join(mount, "kubepods/pod1/ctr") {
		t.Errorf("SecureJoin(not yet existing child) = %q, %v", got, err)
	}
	if _, err := SecureJoin(mount, "/kubepods/alias"); err != nil {
		t.Errorf("SecureJoin(symlink inside mount) error = %v, want nil", err)
	}
	for _, rel := range []string{"/kubepods/evil", "/kubepods/evil/x/y", "/kubepods/../.."} {
		if got, err := SecureJoin(mount, rel); !errors.Is(err, ErrPathEscape) {
			t.Errorf("SecureJoin(%q) = %q, %v; want ErrPathEscape", rel, got, err)
		}
	}
}

// A mount reached through a symlink, as v1's cpu -> cpu,cpuacct: paths below it
// resolve, and a symlink below it that leads out is still refused.
func TestSecureJoinUnderASymlinkedMount(t *testing.T) {
	target := t.TempDir()
	mustMkdir(t, filepath.Join(target, "kubepods", "pod1"))
	mount := filepath.Join(t.TempDir(), "cpu")
	if err := os.Symlink(target, mount); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(t.TempDir(), filepath.Join(target, "kubepods", "evil")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(target, "kubepods", "pod1"), filepath.Join(target, "kubepods", "absolute-alias")); err != nil {
		t.Fatal(err)
	}
	if got, err := SecureJoin(mount, "/kubepods/pod1"); err != nil || got != filepath.Join(mount, "kubepods/pod1") {
		t.Errorf("SecureJoin(under a symlinked mount) = %q, %v", got, err)
	}
	if _, err := SecureJoin(mount, "/kubepods/absolute-alias"); err != nil {
		t.Errorf("SecureJoin(absolute symlink to inside the mount) error = %v, want nil", err)
	}
	for _, rel := range []string{"/kubepods/evil", "/kubepods/evil/pod1"} {
		if got, err := SecureJoin(mount, rel); !errors.Is(err, ErrPathEscape) {
			t.Errorf("SecureJoin(%q) = %q, %v; want ErrPathEscape", rel, got, err)
		}
	}
}

func TestWriteFileNamesFileAndValue(t *testing.T) {
	dir := t.TempDir()
	writeFake(t, dir, "io.max", "old content that is longer\n")
	if err := WriteFile(dir, "io.max", "8:0 rbps=1 wbps=max riops=max wiops=max"); err != nil {
		t.Fatal(err)
	}
	if got := readFake(t, dir, "io.max"); got != "8:0 rbps=1 wbps=max riops=max wiops=max" {
		t.Errorf("io.max = %q", got)
	}

	err := WriteFile(dir, "blkio.throttle.write_bps_device", "8:0 5")
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "blkio.throttle.write_bps_device") || !strings.Contains(err.Error(), `"8:0 5"`) {
		t.Errorf("WriteFile(missing) error = %v, want ErrNotExist naming the file and value", err)
	}
	for _, bad := range []string{"", ".", "..", "../cgroup.procs", "a/b"} {
		if err := WriteFile(dir, bad, "1"); !errors.Is(err, ErrInvalidFile) {
			t.Errorf("WriteFile(%q) error = %v, want ErrInvalidFile", bad, err)
		}
	}
}

func TestApplyWritesAllAndJoinsErrors(t *testing.T) {
	dir := t.TempDir()
	writeFake(t, dir, "a", "")
	writeFake(t, dir, "c", "")
	err := Apply(dir, []Write{{"a", "1"}, {"b", "2"}, {"c", "3"}})
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), `"2"`) {
		t.Errorf("Apply error = %v, want the failed write of \"2\"", err)
	}
	if readFake(t, dir, "a") != "1" || readFake(t, dir, "c") != "3" {
		t.Errorf("Apply stopped at the failure: a=%q c=%q", readFake(t, dir, "a"), readFake(t, dir, "c"))
	}
	if err := Apply(dir, nil); err != nil {
		t.Errorf("Apply(nil) = %v", err)
	}
}

func mustMkdir(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}

func writeFake(t *testing.T, dir, file, content string) {
	t.Helper()
	mustMkdir(t, dir)
	if err := os.WriteFile(filepath.Join(dir, file), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFake(t *testing.T, dir, file string) string {
	t.Helper()
	content, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		t.Fatal(err)
	}
	return string(content)
}

func TestCheckDir(t *testing.T) {
	mount := t.TempDir()
	outside := t.TempDir()
	ctr := filepath.Join(mount, "kubepods", "pod1", "ctr")
	mustMkdir(t, ctr)
	writeFake(t, mount, "cgroup.procs", "")
	if err := os.Symlink(outside, filepath.Join(mount, "escape")); err != nil {
		t.Fatal(err)
	}
	if err := CheckDir(mount, ctr); err != nil {
		t.Errorf("CheckDir(existing) = %v", err)
	}
	if err := CheckDir(mount, mount); err != nil {
		t.Errorf("CheckDir(mount) = %v", err)
	}
	if err := CheckDir(mount, filepath.Join(mount, "kubepods", "gone")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("CheckDir(missing) = %v, want ErrNotExist", err)
	}
	if err := CheckDir(mount, filepath.Join(mount, "cgroup.procs")); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("CheckDir(file) = %v, want \"not a directory\"", err)
	}
	for _, dir := range []string{outside, filepath.Join(mount, "escape"), filepath.Dir(mount), "/"} {
		if err := CheckDir(mount, dir); !errors.Is(err, ErrPathEscape) {
			t.Errorf("CheckDir(%q) = %v, want ErrPathEscape", dir, err)
		}
	}
}
