//go:build bench

package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/criguard/criguard/test/e2e/lab"
)

// frontend is one way a kubelet-like client reaches containerd 2: straight, through
// criguard's proxy, or straight to an instance where criguard is the NRI plugin.
type frontend struct {
	name   string
	client runtimeapi.RuntimeServiceClient
	pods   []throttledPod
}

// TestFrontends times the same create and start cycles on containerd 2.4 directly,
// through the proxy and with criguard as the runtime's NRI plugin, rotating which goes
// first, and reads the limit from the cgroup right after each start's reply (issue 25).
// Two containerd instances of one build, both with NRI on: one has no plugin (direct
// and the proxy), the other criguard's, so the plugin is the only difference.
func TestFrontends(t *testing.T) {
	lab.RequireRoot(t)
	cfg := loadConfig(t)
	plain := lab.Containerd(t, lab.WithContainerd2(), lab.WithNRI())
	hosted := lab.Containerd(t, lab.WithContainerd2(), lab.WithNRI())
	device := lab.WholeDisk(t, plain.Root)
	if d := lab.WholeDisk(t, hosted.Root); d != device {
		t.Fatalf("the two containerd roots are on %s and %s: one policy device must cover both", device, d)
	}
	blkioRoot := lab.BlkioDir(t, "/")
	var plainPods, hostedPods []*lab.Pod
	t.Cleanup(func() {
		removeAllPods(t, plain.Endpoint, plainPods)
		removeAllPods(t, hosted.Endpoint, hostedPods)
	})

	policy := func(root string) string {
		path := filepath.Join(t.TempDir(), "policy.hcl")
		if err := os.WriteFile(path, []byte(benchPolicy(root)), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	// Info, not the lab's debug: each front end logs what production would.
	proxy := lab.Criguard(t, plain.Endpoint, "--log-level", "info", "--policy", policy(plain.Root),
		"--containerd-address", plain.Socket, "--reconcile-interval", "1h")
	plugin := lab.CriguardNRI(t, hosted.Endpoint, hosted.NRISocket, "--log-level", "info", "--policy", policy(hosted.Root),
		"--containerd-address", hosted.Socket, "--reconcile-interval", "1h")

	pods := func(endpoint, prefix string, into *[]*lab.Pod) []throttledPod {
		client := lab.RuntimeClient(t, endpoint)
		out := make([]throttledPod, 2)
		for i := range out {
			pod := lab.NewPod(t, fmt.Sprintf("%s-%d", prefix, i), throttledNS)
			id, err := runPodSandbox(client, pod)
			if err != nil {
				t.Fatal(err)
			}
			*into = append(*into, pod)
			out[i] = throttledPod{pod: pod, id: id}
		}
		return out
	}
	// The proxy learns pods from the RunPodSandbox it forwards, as with kubelet.
	proxiedPods := pods(proxy.Endpoint, "fe-plain", &plainPods)
	fronts := []frontend{
		{name: "direct", client: lab.RuntimeClient(t, plain.Endpoint), pods: proxiedPods},
		{name: "proxy", client: lab.RuntimeClient(t, proxy.Endpoint), pods: proxiedPods},
		{name: "plugin", client: lab.RuntimeClient(t, plugin.Endpoint), pods: pods(hosted.Endpoint, "fe-nri", &hostedPods)},
	}

	create, start, both := map[string][]time.Duration{}, map[string][]time.Duration{}, map[string][]time.Duration{}
	held := map[string]int{}
	began := time.Now()
	for i := range cfg.starts {
		for k := range fronts {
			f := fronts[(i+k)%len(fronts)]
			p := f.pods[i%len(f.pods)]
			t0 := time.Now()
			id, err := createContainer(f.client, p.id, p.pod, fmt.Sprintf("f-%s-%d", f.name, i))
			if err != nil {
				t.Fatalf("%s: %v", f.name, err)
			}
			t1 := time.Now()
			if err := startContainer(f.client, id); err != nil {
				t.Fatalf("%s: %v", f.name, err)
			}
			t2 := time.Now()
			create[f.name] = append(create[f.name], t1.Sub(t0))
			start[f.name] = append(start[f.name], t2.Sub(t1))
			both[f.name] = append(both[f.name], t2.Sub(t0))
			limit, err := lab.Throttle(filepath.Join(blkioRoot, p.pod.CgroupParent(), id), writeBPSFile, device)
			if err != nil {
				t.Fatalf("%s: read the limit of %s right after its start: %v", f.name, id, err)
			}
			if limit == writeBPS {
				held[f.name]++
			}
			if err := stopRemove(f.client, id); err != nil {
				t.Fatalf("%s: %v", f.name, err)
			}
		}
	}
	elapsed := time.Since(began)

	var b strings.Builder
	fmt.Fprintf(&b, "%d create + start cycles per front end on containerd %s (two instances of the lab's build, both with NRI on), "+
		"rotating which goes first: **direct** and **proxy** (criguard serve in front) on the instance with no NRI plugin, "+
		"**plugin** on the one where `criguard nri` is the plugin; %d pods of namespace `%s` per instance, every container "+
		"stopped (timeout 0) and removed after its start (%s in all). Both criguards run the same policy "+
		"(`write_bps = %d` on %s) at log level info.\n\n",
		cfg.starts, containerdVersion(t, plain.Endpoint), len(proxiedPods), throttledNS, elapsed.Round(time.Second), writeBPS, device)
	b.WriteString("| front end | CreateContainer p50 | p99 | StartContainer p50 | p99 | create + start p50 | p99 | limit held at the start's reply |\n" +
		"| --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, f := range fronts {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %d of %d |\n", f.name,
			FormatDuration(Percentile(create[f.name], 50)), FormatDuration(Percentile(create[f.name], 99)),
			FormatDuration(Percentile(start[f.name], 50)), FormatDuration(Percentile(start[f.name], 99)),
			FormatDuration(Percentile(both[f.name], 50)), FormatDuration(Percentile(both[f.name], 99)),
			held[f.name], len(start[f.name]))
	}
	b.WriteString("\n| ratio to direct, p50 | CreateContainer | StartContainer | create + start |\n| --- | --- | --- | --- |\n")
	for _, name := range []string{"proxy", "plugin"} {
		ratio := func(m map[string][]time.Duration) string {
			return FormatRatio(Ratio(float64(Percentile(m[name], 50)), float64(Percentile(m["direct"], 50))))
		}
		fmt.Fprintf(&b, "| %s ÷ direct | %s | %s | %s |\n", name, ratio(create), ratio(start), ratio(both))
	}
	writeSection(t, cfg.outDir, "frontends.md", b.String())

	for _, name := range []string{"proxy", "plugin"} {
		if held[name] != cfg.starts {
			t.Errorf("%s: %d of %d starts had the limit in the cgroup at the reply", name, held[name], cfg.starts)
		}
	}
	if held["direct"] > 0 {
		t.Errorf("%d direct starts had the limit: something other than criguard wrote it", held["direct"])
	}
}

// writeSection writes one phase's Markdown to dir/name, for run.sh to append.
func writeSection(t *testing.T, dir, name, body string) {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Errorf("write %s: %v", path, err)
		return
	}
	t.Logf("%s:\n%s", path, body)
}

// containerdVersion is the runtime's own version, as its CRI Version reports it.
func containerdVersion(t *testing.T, endpoint string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	v, err := lab.RuntimeClient(t, endpoint).Version(ctx, &runtimeapi.VersionRequest{})
	if err != nil {
		t.Fatalf("Version: %v", err)
	}
	return v.RuntimeVersion
}
