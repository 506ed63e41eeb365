//go:build bench

package bench

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/criguard/criguard/test/e2e/lab"
)

// TestIdleKubelet measures what a forwarder costs on a quiet node (issue 20): a real
// standalone kubelet (static pods, cgroupfs, this v1 host) talks to one socket, behind
// which criguard and the thin forwarder take turns (order rotated every round), all
// in front of one private containerd. For each variant: CPU over a steady window
// (after a settle, once every container runs) and RSS at its end. Run by
// test/bench/idle.sh; sizes from IDLE_PODS (e.g. "30,110"), IDLE_ROUNDS, IDLE_SETTLE,
// IDLE_STEADY, IDLE_WARMUP (kubelet's calls after it created the pods, before the
// first window: its call rate stays high for a while, which the first variant
// measured would otherwise pay for); KUBELET_BIN is the kubelet, CRIGUARD_OLD_BIN
// an optional second criguard (an older commit) measured beside the first, named
// CRIGUARD_OLD_NAME. With IDLE_CHAIN set the variants run at once, one behind the
// other (kubelet → first → second → containerd, the order rotated every round), and
// are measured over the same window: this shared machine's load, which moves a
// window's CPU by ±20 % from one minute to the next, then weighs on both alike.
func TestIdleKubelet(t *testing.T) {
	lab.RequireRoot(t)
	kubelet := os.Getenv("KUBELET_BIN")
	if kubelet == "" {
		t.Fatal("KUBELET_BIN is not set: run test/bench/idle.sh")
	}
	var podCounts []int
	for _, s := range strings.Split(envString("IDLE_PODS", "30,110"), ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			t.Fatalf("IDLE_PODS=%q: want positive integers separated by commas", os.Getenv("IDLE_PODS"))
		}
		podCounts = append(podCounts, n)
	}
	rounds := envInt(t, "IDLE_ROUNDS", 2)
	settle := envDuration(t, "IDLE_SETTLE", 20*time.Second)
	steady := envDuration(t, "IDLE_STEADY", 60*time.Second)
	warmup := envDuration(t, "IDLE_WARMUP", 60*time.Second)
	outDir := envString("BENCH_OUT", t.TempDir())

	ctrd := lab.Containerd(t)
	work := t.TempDir()
	policyPath := filepath.Join(work, "policy.hcl")
	// Every idle pod is throttled: the reconcile pass reads all of them back, the most
	// an idle node asks of criguard.
	policy := strings.Replace(benchPolicy(ctrd.Root), strconv.Quote(throttledNS), strconv.Quote(idleNS), 1)
	if err := os.WriteFile(policyPath, []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	// The socket kubelet dials: whichever variant runs listens there.
	runDir, err := os.MkdirTemp("/run", "cg-idle-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(runDir) })
	socket := filepath.Join(runDir, "cri.sock")

	thinBin := os.Getenv("THINPROXY_BIN")
	variants := []idleVariant{
		{name: "criguard", argv: criguardArgv(os.Getenv("CRIGUARD_BIN"), ctrd, policyPath, filepath.Join(work, "state-new")), goStats: true},
		{name: "thin", argv: func(listen, upstream string) []string {
			return []string{thinBin, "-listen", listen, "-upstream", upstream, "-metrics-addr", "127.0.0.1:0"}
		}},
	}
	if old := os.Getenv("CRIGUARD_OLD_BIN"); old != "" {
		variants = append(variants, idleVariant{name: envString("CRIGUARD_OLD_NAME", "criguard-old"), argv: criguardArgv(old, ctrd, policyPath, filepath.Join(work, "state-old")), goStats: true})
	}
	chain := os.Getenv("IDLE_CHAIN") != ""
	if chain && os.Getenv("IDLE_PERF") != "" {
		t.Fatal("IDLE_PERF records one variant at a time: not with IDLE_CHAIN")
	}
	// A chain's places differ (the front one costs about 7 %), which only an equal
	// share of every place cancels.
	if chain && rounds%len(variants) != 0 {
		t.Fatalf("IDLE_CHAIN with %d variants: IDLE_ROUNDS=%d gives them the front place unequally; use a multiple of %d", len(variants), rounds, len(variants))
	}
	for _, v := range variants {
		if v.argv("", "")[0] == "" {
			t.Fatalf("%s: binary not set (CRIGUARD_BIN, THINPROXY_BIN)", v.name)
		}
	}

	manifests := filepath.Join(work, "manifests")
	if err := os.MkdirAll(manifests, 0o755); err != nil {
		t.Fatal(err)
	}
	var table strings.Builder
	fmt.Fprintf(&table, "| pods | round | variant | CPU in %s | CPU per minute | CRI calls | CPU per call | RSS at the end | RssAnon | RssFile | heap in use | GC cycles | containerd CPU per minute |\n", steady)
	table.WriteString("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	summary := map[string]map[string][]idleSample{} // pods → variant → samples

	// The first variant (or chain) listens before kubelet starts, so kubelet finds a runtime.
	var current *idleProxy
	var hops []*idleProxy
	if chain {
		hops = startChain(t, variants, socket, ctrd.Endpoint, runDir, work)
	} else {
		current = startIdleProxy(t, variants[0], socket, ctrd.Endpoint, work)
	}
	t.Cleanup(func() {
		if current != nil {
			current.stop(t)
		}
		stopChain(t, hops)
	})
	startKubelet(t, kubelet, socket, manifests, work)

	client := lab.RuntimeClient(t, ctrd.Endpoint)
	for _, pods := range podCounts {
		writeManifests(t, manifests, pods)
		began := time.Now()
		waitRunning(t, client, pods, 15*time.Minute)
		t.Logf("%d pods: all containers running after %s; warming up for %s", pods, time.Since(began).Round(time.Second), warmup)
		fmt.Fprintf(&table, "| %d | — | (kubelet started %d containers in %s) | | | | | | | | | | |\n", pods, pods, time.Since(began).Round(time.Second))
		time.Sleep(warmup)
		summary[strconv.Itoa(pods)] = map[string][]idleSample{}
		// record adds a window to the table and the summary; label names the variant in the table.
		record := func(pods, round int, v idleVariant, label string, s idleSample) {
			summary[strconv.Itoa(pods)][v.name] = append(summary[strconv.Itoa(pods)][v.name], s)
			heap, gc := "—", "—"
			if v.goStats {
				heap, gc = MiB(s.heapInuse), fmt.Sprintf("%.0f", s.gcCycles)
			}
			fmt.Fprintf(&table, "| %d | %d | %s | %s | %s | %.0f | %s | %s | %s | %s | %s | %s | %s |\n", pods, round+1, label,
				FormatDuration(s.cpu), FormatDuration(s.perMinute()), s.calls, FormatDuration(s.perCall()), MiB(float64(s.rss)),
				MiB(float64(s.rssAnon)), MiB(float64(s.rssFile)), heap, gc, FormatDuration(s.ctrdPerMinute()))
			t.Logf("%d pods, round %d, %s: CPU %s/min, RSS %s", pods, round+1, label, FormatDuration(s.perMinute()), MiB(float64(s.rss)))
			// So far, in case a later window fails.
			_ = os.WriteFile(filepath.Join(outDir, "idle-partial.md"), []byte(table.String()), 0o644)
		}
		for round := range rounds {
			if chain {
				order := make([]idleVariant, len(variants))
				for k := range variants {
					order[k] = variants[(round+k)%len(variants)]
				}
				if hops[0].v.name != order[0].name {
					stopChain(t, hops)
					hops = startChain(t, order, socket, ctrd.Endpoint, runDir, work)
				}
				time.Sleep(settle)
				samples := measureChain(t, hops, steady, findPid(t, ctrd.ConfigPath))
				waitRunning(t, client, pods, time.Minute) // the swap lost no pod
				for k, hop := range hops {
					record(pods, round, hop.v, fmt.Sprintf("%s (hop %d)", hop.v.name, k+1), samples[k])
				}
				continue
			}
			for k := range variants {
				v := variants[(round+k)%len(variants)]
				if current.v.name != v.name {
					current.stop(t)
					current = startIdleProxy(t, v, socket, ctrd.Endpoint, work)
				}
				time.Sleep(settle)
				var perfOut string
				if os.Getenv("IDLE_PERF") != "" {
					perfOut = filepath.Join(outDir, fmt.Sprintf("idle-perf-%d-%d-%s", pods, round+1, v.name))
				}
				s := current.measure(t, steady, findPid(t, ctrd.ConfigPath), perfOut)
				waitRunning(t, client, pods, time.Minute) // the swap lost no pod
				record(pods, round, v, v.name, s)
			}
		}
	}

	arrangement := "Variants take turns on kubelet's socket (order rotated per round)"
	if chain {
		arrangement = "Variants run at once, one behind the other (kubelet → hop 1 → hop 2 … → containerd, order rotated per round), and are measured over the same windows; a hop behind criguard forwards criguard's own calls too, and a criguard behind another hop does not see kubelet as its peer"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Standalone kubelet %s, cgroupfs driver, %v static pods (host network, one busybox `sleep` each, namespace %s, all throttled by the policy), containerd 1.6 (lab). %s, the first after a %s warm-up once the pods run; each is measured for %s after a %s settle. CPU is the variant's threads' on-CPU time (`/proc/PID/task/*/schedstat`); CRI calls are those the variant forwarded in the window (its own count on `/metrics`: kubelet's rate varies from window to window, so CPU per call is the like-for-like figure); RSS from `/proc/PID/status` at the window's end; heap and GC cycles from criguard's `/metrics`.\n\n",
		filepath.Base(kubelet), podCounts, idleNS, arrangement, warmup, steady, settle)
	b.WriteString(table.String())
	b.WriteString("\n| pods | variant | CPU per minute (each round) | CPU per call (each round) | RSS (each round) | CPU ÷ thin (median round) | CPU per call ÷ thin (median round) | CPU ÷ thin, same round (median) | CPU per call ÷ thin, same round (median) |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, pods := range podCounts {
		byVariant := summary[strconv.Itoa(pods)]
		thin, thinPerCall := median(byVariant["thin"], idleSample.perMinute), median(byVariant["thin"], idleSample.perCall)
		for _, v := range variants {
			var cpus, perCall, rsss []string
			for _, s := range byVariant[v.name] {
				cpus = append(cpus, FormatDuration(s.perMinute()))
				perCall = append(perCall, FormatDuration(s.perCall()))
				rsss = append(rsss, MiB(float64(s.rss)))
			}
			fmt.Fprintf(&b, "| %d | %s | %s | %s | %s | %s | %s | %s | %s |\n", pods, v.name, strings.Join(cpus, ", "), strings.Join(perCall, ", "), strings.Join(rsss, ", "),
				FormatRatio(Ratio(float64(median(byVariant[v.name], idleSample.perMinute)), float64(thin))),
				FormatRatio(Ratio(float64(median(byVariant[v.name], idleSample.perCall)), float64(thinPerCall))),
				sameRound(byVariant[v.name], byVariant["thin"], idleSample.perMinute),
				sameRound(byVariant[v.name], byVariant["thin"], idleSample.perCall))
		}
	}
	path := filepath.Join(outDir, "idle.md")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Errorf("write %s: %v", path, err)
	}
	t.Logf("idle results in %s:\n%s", path, b.String())
}

// idleVariant is one forwarder; each serves /metrics (its address in its log) with
// its call count.
type idleVariant struct {
	name    string
	argv    func(listen, upstream string) []string // listening on the socket listen, forwarding to upstream
	goStats bool                                   // its /metrics has the Go runtime's heap and GC figures (criguard)
}

type idleSample struct {
	cpu, ctrdCPU, window  time.Duration
	rss, rssAnon, rssFile uint64
	heapInuse, gcCycles   float64
	calls                 float64 // CRI calls the variant forwarded in the window
}

// perCall is the CPU per forwarded call, everything the variant did in the window
// included; 0 when it forwarded none.
func (s idleSample) perCall() time.Duration {
	if s.calls == 0 {
		return 0
	}
	return time.Duration(float64(s.cpu) / s.calls)
}

func (s idleSample) perMinute() time.Duration {
	return time.Duration(float64(s.cpu) * float64(time.Minute) / float64(s.window))
}

func (s idleSample) ctrdPerMinute() time.Duration {
	return time.Duration(float64(s.ctrdCPU) * float64(time.Minute) / float64(s.window))
}

// sameRound is each round's ratio of a variant's figure to the thin forwarder's, and
// their median: "1.14, 1.10 (1.12×)".
func sameRound(variant, thin []idleSample, figure func(idleSample) time.Duration) string {
	values := func(samples []idleSample) (out []float64) {
		for _, s := range samples {
			out = append(out, float64(figure(s)))
		}
		return out
	}
	ratios, med := PairedRatios(values(variant), values(thin))
	texts := make([]string, len(ratios))
	for i, r := range ratios {
		texts[i] = fmt.Sprintf("%.2f", r)
	}
	return fmt.Sprintf("%s (%s)", strings.Join(texts, ", "), FormatRatio(med))
}

func median(samples []idleSample, figure func(idleSample) time.Duration) time.Duration {
	var ds []time.Duration
	for _, s := range samples {
		ds = append(ds, figure(s))
	}
	return Percentile(ds, 50)
}

func envString(name, def string) string {
	if s := os.Getenv(name); s != "" {
		return s
	}
	return def
}

func envDuration(t *testing.T, name string, def time.Duration) time.Duration {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		t.Fatalf("%s=%q: want a positive duration", name, s)
	}
	return d
}

// criguardArgv is criguard serve as a node runs it: default reconcile interval, probe
// and log level, metrics on, the containerd resolver reachable.
func criguardArgv(bin string, ctrd *lab.ContainerdInstance, policyPath, stateDir string) func(listen, upstream string) []string {
	return func(listen, upstream string) []string {
		return []string{bin, "serve", "--listen", "unix://" + listen, "--runtime-endpoint", upstream,
			"--policy", policyPath, "--state-dir", stateDir, "--containerd-address", ctrd.Socket,
			"--metrics-addr", "127.0.0.1:0", "--log-format", "json"}
	}
}

// startChain starts the variants one behind the other, the last first: kubelet's
// socket → variants[0] → … → upstream.
func startChain(t *testing.T, variants []idleVariant, socket, upstream, runDir, work string) []*idleProxy {
	t.Helper()
	hops := make([]*idleProxy, len(variants))
	for k := len(variants) - 1; k >= 0; k-- {
		listen := socket
		if k > 0 {
			listen = filepath.Join(runDir, fmt.Sprintf("hop%d.sock", k+1))
		}
		hops[k] = startIdleProxy(t, variants[k], listen, upstream, work)
		upstream = "unix://" + listen
	}
	return hops
}

// stopChain stops the hops front first, so that no call is left halfway.
func stopChain(t *testing.T, hops []*idleProxy) {
	t.Helper()
	for _, hop := range hops {
		hop.stop(t)
	}
}

// measureChain measures every hop over the same window.
func measureChain(t *testing.T, hops []*idleProxy, window time.Duration, ctrdPid int) []idleSample {
	t.Helper()
	starts := make([]idleStart, len(hops))
	for k, hop := range hops {
		starts[k] = hop.begin(t, ctrdPid)
	}
	time.Sleep(window)
	samples := make([]idleSample, len(hops))
	for k, hop := range hops {
		samples[k] = hop.end(t, starts[k], ctrdPid)
	}
	return samples
}

type idleProxy struct {
	v       idleVariant
	cmd     *exec.Cmd
	logPath string
	metrics string // http://…/metrics
}

func startIdleProxy(t *testing.T, v idleVariant, socket, upstream, work string) *idleProxy {
	t.Helper()
	// A log per start: the metrics address is read from this start's log alone.
	logFile, err := os.CreateTemp(work, v.name+"-*.log")
	if err != nil {
		t.Fatal(err)
	}
	p := &idleProxy{v: v, logPath: logFile.Name()}
	defer logFile.Close()
	_ = os.Remove(socket)
	argv := v.argv(socket, upstream)
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", v.name, err)
	}
	client := lab.RuntimeClient(t, "unix://"+socket)
	deadline := time.Now().Add(settleTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := client.Version(ctx, &runtimeapi.VersionRequest{})
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never answered Version on %s: %v", v.name, socket, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	p.metrics = "http://" + waitLogAttr(t, p.logPath, "metrics serving", "addr") + "/metrics"
	return p
}

func (p *idleProxy) stop(t *testing.T) {
	t.Helper()
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
		t.Errorf("%s did not stop within 15 s of SIGTERM", p.v.name)
	}
}

// measure samples the variant over window; with perfOut set, perf also records it
// (on-CPU call graphs), and its flat and inclusive reports go to perfOut-*.txt: where
// an idle proxy's time goes.
func (p *idleProxy) measure(t *testing.T, window time.Duration, ctrdPid int, perfOut string) idleSample {
	t.Helper()
	pid := p.cmd.Process.Pid
	var stopPerf func()
	if perfOut != "" {
		stopPerf = recordPerf(t, pid, perfOut)
	}
	start := p.begin(t, ctrdPid)
	time.Sleep(window)
	if stopPerf != nil {
		defer stopPerf() // after the window's figures: perf report takes a while
	}
	return p.end(t, start, ctrdPid)
}

// idleStart is a window's opening figures.
type idleStart struct {
	metrics   Metrics
	cpu, ctrd time.Duration
	began     time.Time
}

func (p *idleProxy) begin(t *testing.T, ctrdPid int) idleStart {
	t.Helper()
	return idleStart{metrics: p.scrape(t), cpu: mustCPU(t, ThreadsCPU, p.cmd.Process.Pid), ctrd: mustCPU(t, ProcCPU, ctrdPid), began: time.Now()}
}

func (p *idleProxy) end(t *testing.T, start idleStart, ctrdPid int) idleSample {
	t.Helper()
	pid := p.cmd.Process.Pid
	s := idleSample{
		cpu:     mustCPU(t, ThreadsCPU, pid) - start.cpu,
		ctrdCPU: mustCPU(t, ProcCPU, ctrdPid) - start.ctrd,
		window:  time.Since(start.began),
	}
	before := start.metrics
	var err error
	if s.rss, err = VmRSS("/proc", pid); err != nil {
		t.Fatal(err)
	}
	s.rssAnon, s.rssFile = statusKB(t, pid, "RssAnon:"), statusKB(t, pid, "RssFile:")
	after := p.scrape(t)
	if forwarded(after) == 0 {
		t.Fatalf("%s: no forwarded-call count on %s (kubelet calls every second)", p.v.name, p.metrics)
	}
	s.heapInuse = after["go_memstats_heap_inuse_bytes"]
	s.gcCycles = after["go_gc_duration_seconds_count"] - before["go_gc_duration_seconds_count"]
	s.calls = forwarded(after) - forwarded(before)
	return s
}

// recordPerf starts perf on pid; the returned func stops it and writes the reports.
func recordPerf(t *testing.T, pid int, out string) (stop func()) {
	t.Helper()
	perf, err := exec.LookPath("perf")
	if err != nil {
		t.Fatalf("IDLE_PERF: %v (run.sh installs linux-perf)", err)
	}
	rec := exec.Command(perf, "record", "-q", "-F", "999", "-g", "-p", strconv.Itoa(pid), "-o", out+".data")
	rec.Stderr = os.Stderr
	if err := rec.Start(); err != nil {
		t.Fatalf("perf record: %v", err)
	}
	time.Sleep(time.Second) // perf attaches to every thread
	return func() {
		_ = rec.Process.Signal(syscall.SIGINT)
		if err := rec.Wait(); err != nil && !killedByInterrupt(err) {
			t.Fatalf("perf record on %d: %v", pid, err)
		}
		writePerfReports(t, perf, out)
	}
}

// forwarded is the calls a variant's metrics count: criguard_cri_calls_total over its
// methods and codes, or the thin forwarder's thin_calls_total.
func forwarded(m Metrics) float64 {
	n := m["thin_calls_total"]
	for series, v := range m {
		if strings.HasPrefix(series, "criguard_cri_calls_total{") {
			n += v
		}
	}
	return n
}

func (p *idleProxy) scrape(t *testing.T) Metrics {
	t.Helper()
	resp, err := http.Get(p.metrics)
	if err != nil {
		t.Fatalf("scrape %s: %v", p.metrics, err)
	}
	defer resp.Body.Close()
	m, err := ParseMetrics(resp.Body)
	if err != nil {
		t.Fatalf("scrape %s: %v", p.metrics, err)
	}
	return m
}

func mustCPU(t *testing.T, read func(string, int) (time.Duration, error), pid int) time.Duration {
	t.Helper()
	d, err := read("/proc", pid)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// statusKB reads one "Name: N kB" line of /proc/PID/status, in bytes.
func statusKB(t *testing.T, pid int, key string) uint64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, key); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("/proc/%d/status %s: %v", pid, line, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("/proc/%d/status: no %s line", pid, key)
	return 0
}

// startKubelet runs a standalone kubelet (no API server) on socket with the static
// pods of manifests; its root, pod logs and cgroup QoS tree are its own.
func startKubelet(t *testing.T, bin, socket, manifests, work string) {
	t.Helper()
	config := filepath.Join(work, "kubelet.yaml")
	body := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
cgroupsPerQOS: true
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://%s
staticPodPath: %s
podLogsDir: %s
fileCheckFrequency: 5s
enableServer: false
healthzPort: 0
maxPods: 250
resolvConf: ""
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
evictionHard:
  memory.available: "1Mi"
  nodefs.available: "1%%"
  imagefs.available: "1%%"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
`, socket, manifests, filepath.Join(work, "pod-logs"))
	if err := os.WriteFile(config, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(work, "kubelet.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(work, "kubelet-root")
	cmd := exec.Command(bin, "--config", config, "--root-dir", root,
		"--hostname-override", "criguard-idle", "--v", "1")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start kubelet: %v", err)
	}
	// Registered after the proxy's cleanup, so kubelet stops first and does not
	// recreate pods while containerd's cleanup removes them.
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		logFile.Close()
		unmountUnder(t, root) // kubelet bind-mounts its root dir onto itself (rshared)
		if t.Failed() {
			t.Logf("kubelet log tail (%s):\n%s", logPath, tail(logPath, 60))
		}
	})
}

// unmountUnder detaches every mount at or below dir, deepest first.
func unmountUnder(t *testing.T, dir string) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Errorf("read mountinfo: %v", err)
		return
	}
	var points []string
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			points = append(points, f[4])
		}
	}
	for i := len(points) - 1; i >= 0; i-- {
		if err := syscall.Unmount(points[i], syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
			t.Errorf("unmount %s: %v", points[i], err)
		}
	}
}

func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// writeManifests makes static pods idle-000 … idle-(n-1); existing ones stay.
func writeManifests(t *testing.T, dir string, n int) {
	t.Helper()
	for i := range n {
		path := filepath.Join(dir, fmt.Sprintf("idle-%03d.yaml", i))
		body := fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: idle-%03d
  namespace: %s
spec:
  hostNetwork: true
  terminationGracePeriodSeconds: 0
  containers:
  - name: sleep
    image: %s
    imagePullPolicy: Never
    command: ["sleep", "%s"]
`, i, idleNS, lab.BusyboxImage, sleepForever)
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// waitRunning waits until n containers of the idle namespace run.
func waitRunning(t *testing.T, client runtimeapi.RuntimeServiceClient, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var running int
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		resp, err := client.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{
			State:         &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING},
			LabelSelector: map[string]string{"io.kubernetes.pod.namespace": idleNS},
		}})
		cancel()
		if err == nil {
			running = len(resp.Containers)
			if running >= n {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d idle containers running after %s (last error: %v)", running, n, timeout, errors.Join(err))
		}
		time.Sleep(2 * time.Second)
	}
}
