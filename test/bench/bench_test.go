//go:build bench

package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/criguard/criguard/test/e2e/lab"
)

// config holds the benchmark's sizes; each has an environment twin so that a quick
// smoke run (BENCH_CONTAINERS=5 …) exercises the same code.
type config struct {
	containers  int           // idle containers during the call benchmark
	calls       int           // measured calls per method per variant
	batch       int           // calls per interleaved batch
	starts      int           // measured StartContainer calls per variant
	soakCycles  int           // create/start/stop/remove cycles
	soakMax     time.Duration // the soak stops here even if cycles remain
	soakWorkers int           // cycles run side by side
	outDir      string        // results.md and logs
}

func loadConfig(t *testing.T) config {
	t.Helper()
	c := config{
		containers:  envInt(t, "BENCH_CONTAINERS", 100),
		calls:       envInt(t, "BENCH_CALLS", 5000),
		batch:       envInt(t, "BENCH_BATCH", 250),
		starts:      envInt(t, "BENCH_STARTS", 200),
		soakCycles:  envInt(t, "BENCH_SOAK_CYCLES", 2000),
		soakWorkers: envInt(t, "BENCH_SOAK_WORKERS", 2),
		soakMax:     10 * time.Minute,
		outDir:      os.Getenv("BENCH_OUT"),
	}
	if s := os.Getenv("BENCH_SOAK_MAX"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("BENCH_SOAK_MAX=%q: %v", s, err)
		}
		c.soakMax = d
	}
	if c.outDir == "" {
		c.outDir = t.TempDir()
	}
	if c.batch > c.calls {
		c.batch = c.calls
	}
	return c
}

func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := strconv.Atoi(s)
	if err != nil || v <= 0 {
		t.Fatalf("%s=%q: want a positive integer", name, s)
	}
	return v
}

// rig is everything the phases share: the runtime, criguard, the thin forwarder.
type rig struct {
	cfg       config
	ctrd      *lab.ContainerdInstance
	ctrdPid   int
	cg        *lab.CriguardProcess
	cgOld     *lab.CriguardProcess // CRIGUARD_OLD_BIN: an older build beside cg, or nil
	metrics   string               // http://host:port/metrics of criguard
	thin      string               // thin forwarder endpoint
	thinPid   int
	thinMD    string // thin forwarder passing metadata, headers and trailers
	thinMDPid int
	device    string // MAJ:MIN under containerd's root
	blkioRoot string // the v1 blkio hierarchy's mount point
	idleIDs   []string
	report    *report
	podsMu    sync.Mutex
	pods      []*lab.Pod // every pod run, for the cgroup cleanup
}

// writeBPS is the throttle of the starts and soak phases: an unusual value (7 MiB/s),
// so a file holding it was written by criguard.
const (
	writeBPS      = 7 << 20
	writeBPSFile  = "blkio.throttle.write_bps_device"
	throttledNS   = "throttled-bench"
	idleNS        = "idle-bench"
	callTimeout   = 60 * time.Second
	sleepForever  = "86400"
	settleTimeout = 60 * time.Second
)

// benchPolicy throttles only the throttled-bench namespace: the idle containers of the
// call benchmark match nothing, so their calls take criguard's production path.
func benchPolicy(root string) string {
	return fmt.Sprintf(`device "data" {
  path = %q
}

class "bench" {
  io {
    device    = "data"
    write_bps = %d
  }
}

rule "bench" {
  match {
    namespaces = [%q]
  }
  class = "bench"
}
`, root, writeBPS, throttledNS)
}

func TestBench(t *testing.T) {
	lab.RequireRoot(t)
	cfg := loadConfig(t)
	r := &rig{cfg: cfg, report: newReport()}
	defer r.report.write(t, filepath.Join(cfg.outDir, "results.md"))

	r.ctrd = lab.Containerd(t)
	r.ctrdPid = findPid(t, r.ctrd.ConfigPath)
	r.device = lab.WholeDisk(t, r.ctrd.Root)
	r.blkioRoot = lab.BlkioDir(t, "/")
	// Registered after Containerd, so it runs before containerd stops.
	t.Cleanup(func() { r.removePods(t) })

	setupStart := time.Now()
	r.idleIDs = r.startIdle(t, cfg.containers)
	r.report.setupf("%d idle pods with one busybox `sleep` container each, created directly on containerd in %s.",
		cfg.containers, time.Since(setupStart).Round(time.Second))

	policyPath := filepath.Join(t.TempDir(), "policy.hcl")
	if err := os.WriteFile(policyPath, []byte(benchPolicy(r.ctrd.Root)), 0o644); err != nil {
		t.Fatalf("write policy %s: %v", policyPath, err)
	}
	// A long reconcile interval: the pass at start is the one measured; a periodic pass
	// landing inside a call batch would be charged to those calls.
	r.cg = lab.Criguard(t, r.ctrd.Endpoint, "--log-format", "json", "--policy", policyPath,
		"--resolver", "auto", "--containerd-address", r.ctrd.Socket,
		"--metrics-addr", "127.0.0.1:0", "--reconcile-interval", "1h")
	r.metrics = "http://" + waitLogAttr(t, r.cg.LogPath, "metrics serving", "addr") + "/metrics"
	if old := os.Getenv("CRIGUARD_OLD_BIN"); old != "" {
		// The same flags from an older commit: before and after in one run, side by side.
		newBin := os.Getenv("CRIGUARD_BIN")
		t.Setenv("CRIGUARD_BIN", old)
		r.cgOld = lab.Criguard(t, r.ctrd.Endpoint, "--log-format", "json", "--policy", policyPath,
			"--resolver", "auto", "--containerd-address", r.ctrd.Socket,
			"--metrics-addr", "127.0.0.1:0", "--reconcile-interval", "1h")
		t.Setenv("CRIGUARD_BIN", newBin)
		r.report.setupf("A second criguard built from an older commit (`CRIGUARD_OLD_BIN=%s`) runs beside the first with the same flags: variant `criguard-old`.", old)
	}
	r.thin, r.thinPid = startThin(t, r.ctrd.Endpoint)
	// BENCH_THIN_MD_FLAGS="-metadata -tuned" gives thin+md criguard's transport settings.
	r.thinMD, r.thinMDPid = startThin(t, r.ctrd.Endpoint, strings.Fields(envString("BENCH_THIN_MD_FLAGS", "-metadata"))...)

	t.Run("calls", r.benchCalls)
	t.Run("starts", r.benchStarts)
	t.Run("soak", r.benchSoak)
}

// findPid returns the pid of the process whose command line contains marker.
func findPid(t *testing.T, marker string) int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatalf("list /proc: %v", err)
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(cmdline), marker) {
			return pid
		}
	}
	t.Fatalf("no process with %q in its command line", marker)
	return 0
}

// waitLogAttr waits for a JSON log line with msg and returns its attribute attr.
func waitLogAttr(t *testing.T, logPath, msg, attr string) string {
	t.Helper()
	deadline := time.Now().Add(settleTimeout)
	for time.Now().Before(deadline) {
		for _, rec := range readLog(t, logPath) {
			if rec["msg"] == msg {
				if v, ok := rec[attr].(string); ok {
					return v
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no %q log line with %q in %s within %s", msg, attr, logPath, settleTimeout)
	return ""
}

// readLog decodes criguard's JSON log; lines that are not JSON (none expected) are
// skipped.
func readLog(t *testing.T, logPath string) []map[string]any {
	t.Helper()
	f, err := os.Open(logPath)
	if err != nil {
		t.Fatalf("open criguard log %s: %v", logPath, err)
	}
	defer f.Close()
	var recs []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var rec map[string]any
		if json.Unmarshal(sc.Bytes(), &rec) == nil {
			recs = append(recs, rec)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read criguard log %s: %v", logPath, err)
	}
	return recs
}

// startThin runs the thin forwarder ($THINPROXY_BIN, built by run.sh) in front of
// upstream with extra flags, and returns its endpoint and pid.
func startThin(t *testing.T, upstream string, flags ...string) (string, int) {
	t.Helper()
	bin := os.Getenv("THINPROXY_BIN")
	if bin == "" {
		t.Fatal("THINPROXY_BIN is not set: run the benchmark with `make bench`")
	}
	socket := filepath.Join(t.TempDir(), "thin.sock")
	cmd := exec.Command(bin, append([]string{"-listen", socket, "-upstream", upstream}, flags...)...)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	endpoint := "unix://" + socket
	client := lab.RuntimeClient(t, endpoint)
	deadline := time.Now().Add(settleTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := client.Version(ctx, &runtimeapi.VersionRequest{})
		cancel()
		if err == nil {
			return endpoint, cmd.Process.Pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("thin forwarder at %s never answered Version: %v", socket, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// startIdle runs n host-network pods with one sleeping container each, directly on
// containerd, and returns the container IDs.
func (r *rig) startIdle(t *testing.T, n int) []string {
	t.Helper()
	client := lab.RuntimeClient(t, r.ctrd.Endpoint)
	ids := make([]string, n)
	work := make(chan int)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for i := range work {
				pod := lab.NewPod(t, fmt.Sprintf("idle-%03d", i), idleNS)
				podID, err := r.runPod(client, pod)
				if err != nil {
					errs <- err
					continue
				}
				id, err := createContainer(client, podID, pod, fmt.Sprintf("idle-%03d", i))
				if err == nil {
					err = startContainer(client, id)
				}
				if err != nil {
					errs <- err
					continue
				}
				ids[i] = id
			}
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("idle containers: %v", err)
	}
	return ids
}

// runPod runs the pod through client and remembers it for cleanup.
func (r *rig) runPod(client runtimeapi.RuntimeServiceClient, pod *lab.Pod) (string, error) {
	id, err := runPodSandbox(client, pod)
	if err != nil {
		return "", err
	}
	r.podsMu.Lock()
	r.pods = append(r.pods, pod)
	r.podsMu.Unlock()
	return id, nil
}

func runPodSandbox(client runtimeapi.RuntimeServiceClient, pod *lab.Pod) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	resp, err := client.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pod.Config()})
	if err != nil {
		return "", fmt.Errorf("RunPodSandbox %s: %w", pod, err)
	}
	return resp.PodSandboxId, nil
}

func createContainer(client runtimeapi.RuntimeServiceClient, podID string, pod *lab.Pod, name string) (string, error) {
	c := &lab.Container{Name: name, Command: []string{"sleep", sleepForever}}
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	resp, err := client.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
		PodSandboxId: podID, Config: c.Config(), SandboxConfig: pod.Config(),
	})
	if err != nil {
		return "", fmt.Errorf("CreateContainer %s in %s: %w", name, pod, err)
	}
	return resp.ContainerId, nil
}

func startContainer(client runtimeapi.RuntimeServiceClient, id string) error {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	if _, err := client.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
		return fmt.Errorf("StartContainer %s: %w", id, err)
	}
	return nil
}

// stopRemove kills the container at once (timeout 0: busybox sleep as PID 1 ignores
// SIGTERM) and removes it.
func stopRemove(client runtimeapi.RuntimeServiceClient, id string) error {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	if _, err := client.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 0}); err != nil {
		return fmt.Errorf("StopContainer %s: %w", id, err)
	}
	if _, err := client.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
		return fmt.Errorf("RemoveContainer %s: %w", id, err)
	}
	return nil
}

// removePods stops and removes every pod the benchmark made, directly on containerd,
// and their pod cgroups, as kubelet would.
func (r *rig) removePods(t *testing.T) {
	removeAllPods(t, r.ctrd.Endpoint, r.pods)
}

// removeAllPods stops and removes every pod on endpoint, then the cgroups of pods.
func removeAllPods(t *testing.T, endpoint string, pods []*lab.Pod) {
	client := lab.RuntimeClient(t, endpoint)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	list, err := client.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		t.Errorf("cleanup: ListPodSandbox: %v", err)
		return
	}
	work := make(chan string)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for id := range work {
				if _, err := client.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
					t.Logf("cleanup: StopPodSandbox %s: %v", id, err)
				}
				if _, err := client.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
					t.Logf("cleanup: RemovePodSandbox %s: %v", id, err)
				}
			}
		})
	}
	for _, p := range list.Items {
		work <- p.Id
	}
	close(work)
	wg.Wait()
	for _, pod := range pods {
		lab.RemovePodCgroup(t, pod)
	}
}

// scrape fetches and parses criguard's /metrics.
func (r *rig) scrape(t *testing.T) Metrics {
	t.Helper()
	resp, err := http.Get(r.metrics)
	if err != nil {
		t.Fatalf("scrape %s: %v", r.metrics, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape %s: %s", r.metrics, resp.Status)
	}
	m, err := ParseMetrics(resp.Body)
	if err != nil {
		t.Fatalf("scrape %s: %v", r.metrics, err)
	}
	return m
}

// value reads one series from a scrape, failing the test when it is missing.
func value(t *testing.T, m Metrics, series string) float64 {
	t.Helper()
	v, err := m.Get(series)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
