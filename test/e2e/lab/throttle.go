package lab

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// DiskDir makes a directory on the root disk for a container to bind-mount, and
// removes it at cleanup. blkio throttles only what reaches a block device: a file on
// the container's overlay or on tmpfs would not show them.
func DiskDir(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(dataBase, "vol-"+randomID(4))
	if err := os.MkdirAll(dir, 0o777); err != nil {
		t.Fatalf("lab: create %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("lab: clean up %s: %v", dir, err)
		}
	})
	return dir
}

// BindMount is a read-write CRI bind mount of hostPath at containerPath.
func BindMount(hostPath, containerPath string) *runtimeapi.Mount {
	return &runtimeapi.Mount{HostPath: hostPath, ContainerPath: containerPath}
}

// WholeDisk returns "MAJ:MIN" of the whole disk that holds path (a partition maps to
// its parent), computed independently of criguard's own device resolution.
func WholeDisk(t testing.TB, path string) string {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatalf("lab: stat %s: %v", path, err)
	}
	dev := fmt.Sprintf("%d:%d", unix.Major(st.Dev), unix.Minor(st.Dev))
	sysDir := filepath.Join("/sys/dev/block", dev)
	if _, err := os.Stat(sysDir); err != nil {
		t.Fatalf("lab: %s is on %s, which is not a block device (%v)", path, dev, err)
	}
	if _, err := os.Stat(filepath.Join(sysDir, "partition")); err != nil {
		return dev // already a whole disk
	}
	real, err := filepath.EvalSymlinks(sysDir)
	if err != nil {
		t.Fatalf("lab: resolve %s: %v", sysDir, err)
	}
	parent, err := os.ReadFile(filepath.Join(filepath.Dir(real), "dev"))
	if err != nil {
		t.Fatalf("lab: parent disk of partition %s: %v", dev, err)
	}
	return strings.TrimSpace(string(parent))
}

// BlkioDir is the v1 blkio cgroup directory of rel (a cgroupfs cgroupsPath such as
// /kubepods/burstable/pod<uid>/<id>), found through /proc/self/mountinfo. It fails
// the test when the host has no v1 blkio hierarchy: these tests measure v1 throttles.
func BlkioDir(t testing.TB, rel string) string {
	t.Helper()
	mount, err := blkioMount()
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	return filepath.Join(mount, filepath.Clean("/"+rel))
}

func blkioMount() (string, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("read mountinfo: %w", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		fields, opts := strings.Fields(pre), strings.Fields(post)
		if !ok || len(fields) < 5 || len(opts) < 3 || opts[0] != "cgroup" {
			continue
		}
		for _, o := range strings.Split(opts[2], ",") {
			if o == "blkio" {
				return unescapeMount(fields[4]), nil
			}
		}
	}
	return "", fmt.Errorf("no cgroup v1 blkio hierarchy in /proc/self/mountinfo")
}

// Throttle reads a blkio.throttle.* file (e.g. "blkio.throttle.write_bps_device") of
// the cgroup dir and returns the limit for dev, 0 when the file has no line for it
// (v1 drops the line when the limit is reset).
func Throttle(dir, file, dev string) (uint64, error) {
	path := filepath.Join(dir, file)
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 2 && fields[0] == dev {
			v, err := strconv.ParseUint(fields[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s: line %q: %w", path, line, err)
			}
			return v, nil
		}
	}
	return 0, nil
}

// SetThrottle writes "dev value" into a blkio.throttle.* file, as an admin (or a
// runtime) changing it behind criguard's back would.
func SetThrottle(t testing.TB, dir, file, dev string, value uint64) {
	t.Helper()
	path := filepath.Join(dir, file)
	if err := os.WriteFile(path, []byte(fmt.Sprintf("%s %d", dev, value)), 0o644); err != nil {
		t.Fatalf("lab: write %q into %s: %v", fmt.Sprintf("%s %d", dev, value), path, err)
	}
}

// WaitThrottle polls a blkio.throttle.* file until it holds want for dev, and returns
// how long that took. On timeout the error says what the file held last.
func WaitThrottle(dir, file, dev string, want uint64, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	for {
		got, err := Throttle(dir, file, dev)
		if err == nil && got == want {
			return time.Since(start), nil
		}
		if time.Since(start) > timeout {
			if err != nil {
				return time.Since(start), fmt.Errorf("%s never held %s %d within %s: %w", file, dev, want, timeout, err)
			}
			return time.Since(start), fmt.Errorf("%s of %s holds %s %d after %s, want %d", file, dir, dev, got, timeout, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Timing is what TimedExec measured.
type Timing struct {
	// Elapsed is measured inside the container around the timed commands, from
	// /proc/uptime (10 ms resolution), so exec start-up is not counted.
	Elapsed time.Duration
	// Wall is the whole crictl exec as the test saw it.
	Wall time.Duration
	// Output is the commands' stdout and stderr.
	Output string
}

const timingMarker = "lab-timing"

// TimedExec runs the shell commands before and then timed in the container (ExecSync
// through endpoint) and measures timed inside it. It fails when timed exits non-zero.
// Problems come back as errors, never t.Fatal, so goroutines may call it (crictl
// itself must exist: the lab checks that before).
func TimedExec(t testing.TB, endpoint, id, before, timed string) (Timing, error) {
	script := fmt.Sprintf(`%s
up() { read u _ </proc/uptime; echo $u; }
t0=$(up)
( %s ) 2>&1
rc=$?
t1=$(up)
echo "%s $t0 $t1 $rc"`, before, timed, timingMarker)
	start := time.Now()
	out, err := CrictlErr(t, endpoint, "exec", "-s", id, "sh", "-c", script)
	timing := Timing{Wall: time.Since(start)}
	if err != nil {
		return timing, fmt.Errorf("exec in %s: %w", id, err)
	}
	i := strings.LastIndex(out, timingMarker+" ")
	if i < 0 {
		return timing, fmt.Errorf("exec in %s: no timing line in %q", id, out)
	}
	timing.Output = strings.TrimSpace(out[:i])
	last := strings.TrimSpace(out[i+len(timingMarker)+1:])
	var t0, t1 float64
	var rc int
	if _, err := fmt.Sscanf(last, "%g %g %d", &t0, &t1, &rc); err != nil {
		return timing, fmt.Errorf("exec in %s: no timing line in %q: %w", id, out, err)
	}
	timing.Elapsed = time.Duration((t1 - t0) * float64(time.Second))
	if rc != 0 {
		return timing, fmt.Errorf("exec in %s: %q exited %d: %s", id, timed, rc, timing.Output)
	}
	return timing, nil
}

// Between reports whether d lies in [lo, hi].
func Between(d, lo, hi time.Duration) bool { return d >= lo && d <= hi }

// StopDaemon stops containerd (SIGTERM, SIGKILL after 15 s) and leaves its shims and
// containers running, as a runtime restart on a node does. StartDaemon brings it back.
func (c *ContainerdInstance) StopDaemon(t testing.TB) {
	t.Helper()
	if err, killed := c.proc.stop(15 * time.Second); killed {
		t.Logf("lab: containerd did not stop on SIGTERM within 15s: killed (%v)", err)
	}
}

// StartDaemon starts containerd again with the command line and environment it had,
// and waits until its CRI plugin answers.
func (c *ContainerdInstance) StartDaemon(t testing.TB) {
	t.Helper()
	if !c.proc.exited() {
		t.Fatalf("lab: containerd is still running")
	}
	// The old command's Env already holds os.Environ() plus the instance's own
	// variables; appended again, the later (instance) values win.
	proc, err := startProcess("containerd", c.LogPath, c.proc.cmd.Args, c.proc.cmd.Env)
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	c.proc = proc
	if err := waitForSocket(c.Socket, proc, startTimeout); err != nil {
		t.Fatalf("lab: containerd restart: %v", err)
	}
	c.waitCRIReady(t)
}
