package lab

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Local images made by setup.sh; containerd imports them and dockerd loads them under
// these names, so a test never needs a registry to run a container.
const (
	BusyboxImage = "criguard.test/e2e/busybox:latest"
	PauseImage   = "criguard.test/e2e/pause:latest"
)

const (
	// runBase holds sockets and runtime state: short paths, since a unix socket path
	// must stay under 108 bytes.
	runBase = "/run"
	// dataBase holds image and container data on the root disk, so that container
	// writes reach a real block device (tmpfs would escape blkio throttles).
	dataBase = "/var/lib/criguard-e2e"
	// commandTimeout bounds every CLI call a test makes.
	commandTimeout = 2 * time.Minute
	// startTimeout bounds how long a daemon may take to open its socket.
	startTimeout = 60 * time.Second
)

// CacheDir is where setup.sh puts binaries and images: $LAB_CACHE, or test/e2e/.cache
// of the repository that contains the working directory.
func CacheDir(t testing.TB) string {
	t.Helper()
	if dir := os.Getenv("LAB_CACHE"); dir != "" {
		return dir
	}
	dir, err := os.Getwd()
	if err != nil {
		t.Fatalf("lab: working directory: %v", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "test", "e2e", ".cache")
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatalf("lab: no go.mod above the working directory; set LAB_CACHE")
		}
		dir = parent
	}
}

// Bin returns the path of a tool that setup.sh built (crictl, critest, cri-dockerd,
// ociimage), failing the test when it is missing.
func Bin(t testing.TB, name string) string {
	t.Helper()
	path := filepath.Join(CacheDir(t), "bin", name)
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("lab: %s not built (%v): run `make lab` first", name, err)
	}
	return path
}

// ImageFile returns the path of an image tar that setup.sh made (busybox.oci.tar,
// pause.oci.tar, rootfs.tar).
func ImageFile(t testing.TB, name string) string {
	t.Helper()
	path := filepath.Join(CacheDir(t), "images", name)
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("lab: image %s missing (%v): run `make lab` first", name, err)
	}
	return path
}

// RequireRoot fails the test unless it runs as root: the lab mounts, makes cgroups
// and starts runtimes.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("lab: the e2e suite needs root (euid %d)", os.Geteuid())
	}
}

// LookPath finds a system binary or fails the test naming the package to install.
func LookPath(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("lab: %s not found (%v): run `make lab` to install it", name, err)
	}
	return path
}

// randomID returns n random bytes in hex.
func randomID(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err)) // never fails on Linux
	}
	return hex.EncodeToString(b)
}

// instanceDirs makes a run dir (sockets, state) and a data dir (disk) for one daemon
// and registers their removal, after unmounting whatever the daemon left mounted there.
func instanceDirs(t testing.TB, kind string) (runDir, dataDir string) {
	t.Helper()
	id := randomID(4)
	runDir = filepath.Join(runBase, "cg-e2e-"+kind+"-"+id)
	dataDir = filepath.Join(dataBase, kind+"-"+id)
	for _, d := range []string{runDir, dataDir} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			t.Fatalf("lab: create %s: %v", d, err)
		}
	}
	t.Cleanup(func() {
		for _, d := range []string{runDir, dataDir} {
			if err := removeTree(d); err != nil {
				t.Errorf("lab: clean up %s: %v", d, err)
			}
		}
	})
	return runDir, dataDir
}

// removeTree unmounts every mount under dir (deepest first) and removes it.
func removeTree(dir string) error {
	mounts, err := mountsUnder(dir)
	if err != nil {
		return err
	}
	for _, m := range mounts {
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			return fmt.Errorf("unmount %s: %w", m, err)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	return nil
}

// mountsUnder lists the mount points at or below dir, deepest first.
func mountsUnder(dir string) ([]string, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	var found []string
	for _, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			found = append(found, mp)
		}
	}
	sort.Slice(found, func(i, j int) bool { return len(found[i]) > len(found[j]) })
	return found, nil
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &v); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// process is a daemon the lab started, with its output in a log file.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	waitErr error
}

// startProcess starts argv with stdout and stderr appended to logPath, and extra as
// fds 3, 4, …. The daemon dies with the test binary (Pdeathsig) so that a test timeout
// leaves no runtime behind.
func startProcess(name, logPath string, argv []string, env []string, extra ...*os.File) (*process, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open log %s: %w", logPath, err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.Env = append(os.Environ(), env...)
	cmd.ExtraFiles = extra
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s (%s): %w", name, strings.Join(argv, " "), err)
	}
	p := &process{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has ended.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, waits up to grace, then SIGKILLs. It returns the exit error
// (nil for status 0) and whether the process had to be killed.
func (p *process) stop(grace time.Duration) (err error, killed bool) {
	if p.exited() {
		return p.waitErr, false
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.waitErr, false
	case <-time.After(grace):
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	return p.waitErr, true
}

// kill sends SIGKILL and waits for the process to end.
func (p *process) kill() {
	if !p.exited() {
		_ = p.cmd.Process.Kill()
	}
	<-p.done
}

// logTail returns the last n lines of the process log.
func (p *process) logTail(n int) string {
	return fileTail(p.logPath, n)
}

func fileTail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log %s: %v)", path, err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// waitForSocket waits until a unix socket accepts connections, failing early when the
// process that should open it has exited.
func waitForSocket(socket string, p *process, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		conn, err := net.DialTimeout("unix", socket, time.Second)
		if err == nil {
			conn.Close()
			return nil
		}
		if p != nil && p.exited() {
			return fmt.Errorf("%s exited before opening %s (%v); log:\n%s", p.name, socket, p.waitErr, p.logTail(40))
		}
		if time.Now().After(deadline) {
			tail := ""
			if p != nil {
				tail = "; log:\n" + p.logTail(40)
			}
			return fmt.Errorf("%s not accepting after %s: %w%s", socket, timeout, err, tail)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// run executes a command with the lab's timeout and returns its stdout; the error
// names the command and carries its stderr.
func run(ctx context.Context, argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s: %w\nstdout: %s\nstderr: %s", strings.Join(argv, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

// mustRun is run that fails the test on error.
func mustRun(t testing.TB, argv ...string) string {
	t.Helper()
	out, err := run(context.Background(), argv...)
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	return out
}

// killByCmdline SIGKILLs the processes whose command line contains marker (the shims a
// runtime started for this instance, which outlive it by design).
func killByCmdline(marker string) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	self := fmt.Sprint(os.Getpid())
	for _, e := range entries {
		if e.Name() == self || !isDigits(e.Name()) {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.Contains(raw, []byte(marker)) {
			continue
		}
		var pid int
		if _, err := fmt.Sscan(e.Name(), &pid); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

func isDigits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return s != ""
}

// cgroupMounts lists the mount points of every cgroup (v1) and cgroup2 filesystem.
func cgroupMounts() ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("open mountinfo: %w", err)
	}
	defer f.Close()
	var mounts []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		for i, field := range fields {
			if field == "-" && i+1 < len(fields) && (fields[i+1] == "cgroup" || fields[i+1] == "cgroup2") {
				mounts = append(mounts, unescapeMount(fields[4]))
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	return mounts, nil
}

// removeCgroup removes the cgroup dir rel (e.g. /kubepods/burstable/pod<uid>) from every
// hierarchy, once the runtime has removed the containers inside it. kubelet would do
// this for the pod cgroups it made; here nobody else does.
func removeCgroup(rel string) error {
	mounts, err := cgroupMounts()
	if err != nil {
		return err
	}
	var errs []error
	for _, m := range mounts {
		dir := filepath.Join(m, rel)
		if err := syscall.Rmdir(dir); err != nil && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("rmdir %s: %w", dir, err))
		}
	}
	return errors.Join(errs...)
}

// podCgroups are the pod cgroups (kubelet's, made here by the runtimes on our behalf)
// not removed yet.
var podCgroups = struct {
	sync.Mutex
	pending map[string]bool
}{pending: map[string]bool{}}

func trackCgroup(rel string) {
	podCgroups.Lock()
	defer podCgroups.Unlock()
	podCgroups.pending[rel] = true
}

func untrackCgroup(rel string) {
	podCgroups.Lock()
	defer podCgroups.Unlock()
	delete(podCgroups.pending, rel)
}

// removePendingCgroups removes every remembered pod cgroup that is empty by now; the
// ones still busy belong to pods of another running instance and stay remembered.
func removePendingCgroups() {
	podCgroups.Lock()
	defer podCgroups.Unlock()
	for rel := range podCgroups.pending {
		if removeCgroup(rel) == nil {
			delete(podCgroups.pending, rel)
		}
	}
}
