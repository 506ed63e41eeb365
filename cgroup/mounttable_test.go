package cgroup

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

func mountPoints(mounts []mountEntry) []string {
	var points []string
	for _, m := range mounts {
		points = append(points, m.point)
	}
	return points
}

// A mountinfo file off procfs (a test's fake) cannot tell a change: it is read
// every time, so a fake rewritten between two resolutions is seen.
func TestMountTableRereadsAFileOffProcfs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mountinfo")
	line := "25 1 254:1 / %s rw,relatime shared:1 - ext4 /dev/vda1 rw\n"
	if err := os.WriteFile(path, []byte(fmt.Sprintf(line, "/")), 0o644); err != nil {
		t.Fatal(err)
	}
	table := &mountTable{path: path, fd: -1}
	first, err := table.read()
	if err != nil || !slices.Equal(mountPoints(first), []string{"/"}) {
		t.Fatalf("first read = %v, %v; want /", mountPoints(first), err)
	}
	if err := os.WriteFile(path, []byte(fmt.Sprintf(line, "/")+fmt.Sprintf(line, "/data")), 0o644); err != nil {
		t.Fatal(err)
	}
	second, err := table.read()
	if err != nil || !slices.Equal(mountPoints(second), []string{"/", "/data"}) {
		t.Fatalf("after the file changed = %v, %v; want / and /data", mountPoints(second), err)
	}
	if table.fd >= 0 {
		t.Error("a file off procfs is kept open")
	}
}

// The real table is parsed again only after a mount or an unmount: the kernel's
// change mark on the open file says when. Mounting takes root.
func TestMountTableFollowsMountsAndUnmounts(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("mounting a tmpfs takes root: run as root to prove the mount table is re-read after a change")
	}
	table := &mountTable{path: "/proc/self/mountinfo", fd: -1}
	t.Cleanup(func() { table.forget() })
	first, err := table.read()
	if err != nil {
		t.Fatal(err)
	}
	again, err := table.read()
	if err != nil || len(again) == 0 || &again[0] != &first[0] {
		t.Fatalf("second read without a mount between: %v; want the same parse reused", err)
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	mounted := true
	t.Cleanup(func() {
		if mounted {
			unix.Unmount(dir, 0)
		}
	})
	after, err := table.read()
	if err != nil || !slices.Contains(mountPoints(after), dir) {
		t.Fatalf("after mounting %s: %v; the new mount is missing (a stale parse)", dir, err)
	}
	if err := unix.Unmount(dir, 0); err != nil {
		t.Fatal(err)
	}
	mounted = false
	gone, err := table.read()
	if err != nil || slices.Contains(mountPoints(gone), dir) {
		t.Fatalf("after unmounting %s: %v; the mount is still listed (a stale parse)", dir, err)
	}
}
