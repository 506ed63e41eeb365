//go:build bench

package bench

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/criguard/criguard/test/e2e/lab"
)

// variant is one way of reaching containerd.
type variant struct {
	name   string
	client runtimeapi.RuntimeServiceClient
	// pid is the process charged for the calls: the proxy, or containerd for direct.
	pid int
}

// callStats accumulates one method through one variant.
type callStats struct {
	latencies  []time.Duration
	proxyCPU   time.Duration   // on-CPU time of the variant's process
	batchCPU   []time.Duration // proxyCPU of each batch, for the spread between rounds
	runtimeCPU time.Duration   // on-CPU time of containerd
}

var methods = []string{"Version", "ContainerStatus", "ListContainers"}

// call makes one CRI call of method; i picks the container for ContainerStatus.
func (r *rig) call(ctx context.Context, client runtimeapi.RuntimeServiceClient, method string, i int) error {
	switch method {
	case "Version":
		_, err := client.Version(ctx, &runtimeapi.VersionRequest{})
		return err
	case "ContainerStatus":
		id := r.idleIDs[i%len(r.idleIDs)]
		resp, err := client.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
		if err == nil && resp.GetStatus().GetId() != id {
			return fmt.Errorf("ContainerStatus %s answered for %q", id, resp.GetStatus().GetId())
		}
		return err
	case "ListContainers":
		resp, err := client.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
		if err == nil && len(resp.Containers) < len(r.idleIDs) {
			return fmt.Errorf("ListContainers returned %d containers, want at least %d", len(resp.Containers), len(r.idleIDs))
		}
		return err
	}
	return fmt.Errorf("unknown method %s", method)
}

// batch makes n sequential calls and charges the CPU the variant's process and
// containerd spent meanwhile.
func (r *rig) batch(v variant, method string, n int, s *callStats) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	proxyBefore, err := ThreadsCPU("/proc", v.pid)
	if err != nil {
		return err
	}
	runtimeBefore, err := ThreadsCPU("/proc", r.ctrdPid)
	if err != nil {
		return err
	}
	for i := range n {
		start := time.Now()
		err := r.call(ctx, v.client, method, i)
		took := time.Since(start)
		if err != nil {
			return fmt.Errorf("%s through %s: %w", method, v.name, err)
		}
		if s != nil {
			s.latencies = append(s.latencies, took)
		}
	}
	if s == nil {
		return nil
	}
	proxyAfter, err := ThreadsCPU("/proc", v.pid)
	if err != nil {
		return err
	}
	runtimeAfter, err := ThreadsCPU("/proc", r.ctrdPid)
	if err != nil {
		return err
	}
	s.proxyCPU += proxyAfter - proxyBefore
	s.batchCPU = append(s.batchCPU, proxyAfter-proxyBefore)
	s.runtimeCPU += runtimeAfter - runtimeBefore
	return nil
}

// benchCalls measures Version, ContainerStatus and ListContainers directly, through
// criguard and through the thin forwarder, in interleaved batches (the machine is
// shared: a noisy minute must hit every variant alike).
func (r *rig) benchCalls(t *testing.T) {
	cfg := r.cfg
	rec := r.waitReconcile(t)
	rss, err := VmRSS("/proc", r.cg.Pid())
	if err != nil {
		t.Fatal(err)
	}
	thinRSS, err := VmRSS("/proc", r.thinPid)
	if err != nil {
		t.Fatal(err)
	}
	r.report.goal(fmt.Sprintf("criguard idle RSS, %d containers (issue 2)", len(r.idleIDs)), "< 30 MiB", MiB(float64(rss)), rss < 30<<20)

	variants := []variant{
		{"direct", lab.RuntimeClient(t, r.ctrd.Endpoint), r.ctrdPid},
		{"criguard", lab.RuntimeClient(t, r.cg.Endpoint), r.cg.Pid()},
		{"thin", lab.RuntimeClient(t, r.thin), r.thinPid},
		{"thin+md", lab.RuntimeClient(t, r.thinMD), r.thinMDPid},
	}
	if r.cgOld != nil {
		variants = append(variants, variant{"criguard-old", lab.RuntimeClient(t, r.cgOld.Endpoint), r.cgOld.Pid()})
	}
	idle := r.idleRates(t, variants, 5*time.Second)
	// Warm-up: connections, HTTP/2 windows, containerd's caches, the Go heap.
	for _, v := range variants {
		for _, m := range methods {
			if err := r.batch(v, m, min(200, cfg.calls), nil); err != nil {
				t.Fatalf("warm-up: %v", err)
			}
		}
	}

	stats := map[string]*callStats{}
	for _, v := range variants {
		for _, m := range methods {
			stats[v.name+"/"+m] = &callStats{}
		}
	}
	wholeBefore := map[string]time.Duration{}
	for _, v := range variants {
		if wholeBefore[v.name], err = ProcCPU("/proc", v.pid); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	rounds := (cfg.calls + cfg.batch - 1) / cfg.batch
	for round := range rounds {
		n := min(cfg.batch, cfg.calls-round*cfg.batch)
		for _, m := range methods {
			// Rotate the order each round: A,B,C then B,C,A then C,A,B.
			for k := range variants {
				v := variants[(round+k)%len(variants)]
				if err := r.batch(v, m, n, stats[v.name+"/"+m]); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	elapsed := time.Since(start)
	whole := map[string]time.Duration{}
	for _, v := range variants {
		after, err := ProcCPU("/proc", v.pid)
		if err != nil {
			t.Fatal(err)
		}
		whole[v.name] = after - wholeBefore[v.name]
	}
	rssAfter, err := VmRSS("/proc", r.cg.Pid())
	if err != nil {
		t.Fatal(err)
	}

	b := &r.report.calls
	fmt.Fprintf(b, "%d running containers (%d pods, host network, busybox `sleep`). %d calls per method per variant, "+
		"sequential, one gRPC client connection per variant, after %d warm-up calls each; batches of %d, "+
		"variants interleaved and rotated every round (%d rounds, %s in all). Latency is measured in the client; "+
		"CPU is the on-CPU time of the charged process's threads (`/proc/PID/task/*/schedstat`) over its own batches.\n\n",
		len(r.idleIDs), len(r.idleIDs), cfg.calls, min(200, cfg.calls), cfg.batch, rounds, elapsed.Round(time.Second))
	writeCallTable(b, variants, stats)
	worstP50, worstCPU := writeRatios(b, stats)
	r.report.goal("criguard p50 ÷ thin forwarder p50, worst method (issue 2)", "≤ 1.10×", FormatRatio(worstP50), worstP50 <= 1.10)
	r.report.goal("criguard proxy CPU/call ÷ thin forwarder's, worst method (issue 2)", "≤ 1.10×", FormatRatio(worstCPU), worstCPU <= 1.10)
	r.report.goal("same, issue 20's target", "≤ 1.05×", FormatRatio(worstCPU), worstCPU <= 1.05)
	if r.cgOld != nil {
		worstOld, worstOldMethod := 0.0, ""
		for _, m := range methods {
			old, thin := stats["criguard-old/"+m], stats["thin/"+m]
			if ratio := Ratio(float64(old.proxyCPU)/float64(len(old.latencies)), float64(thin.proxyCPU)/float64(len(thin.latencies))); ratio > worstOld {
				worstOld, worstOldMethod = ratio, m
			}
		}
		fmt.Fprintf(b, "\ncriguard-old (the older build, same run): worst proxy CPU/call ÷ thin %s (%s).\n", FormatRatio(worstOld), worstOldMethod)
		r.report.goal("criguard-old proxy CPU/call ÷ thin forwarder's, worst method (before, same run)", "≤ 1.05×", FormatRatio(worstOld)+" ("+worstOldMethod+")", worstOld <= 1.05)
	}

	total := time.Duration(cfg.calls * len(methods))
	fmt.Fprintf(b, "\nCross-check from `/proc/PID/stat` (utime+stime, 10 ms ticks) over the whole measured run, all three methods: "+
		"criguard %s/call, thin forwarder %s/call (ratio %s), thin+md %s/call (ratio %s); containerd %s/call over every variant's calls.\n",
		FormatDuration(whole["criguard"]/total), FormatDuration(whole["thin"]/total),
		FormatRatio(Ratio(float64(whole["criguard"]), float64(whole["thin"]))),
		FormatDuration(whole["thin+md"]/total), FormatRatio(Ratio(float64(whole["criguard"]), float64(whole["thin+md"]))),
		FormatDuration(whole["direct"]/(time.Duration(len(variants))*total)))
	fmt.Fprintf(b, "\nMemory: criguard VmRSS %s after its reconcile pass over %d containers (pass took %s), %s after the call benchmark; "+
		"thin forwarder VmRSS %s at the same moment as criguard's first figure.\n",
		MiB(float64(rss)), rec.containers, rec.took, MiB(float64(rssAfter)), MiB(float64(thinRSS)))
	fmt.Fprintf(b, "\nIdle CPU before the calls (5 s, no client): containerd %.1f %% of a core, criguard %.2f %%, thin forwarder %.2f %%. "+
		"So the rise of containerd's own CPU per call when it is called through a proxy is not background work.\n",
		100*idle["direct"], 100*idle["criguard"], 100*idle["thin"])
	r.profileProxies(t, variants)
}

// writeCallTable writes latency and CPU per call of every method through every variant.
func writeCallTable(b *strings.Builder, variants []variant, stats map[string]*callStats) {
	b.WriteString("| method | variant | p50 | p99 | proxy CPU/call | containerd CPU/call |\n| --- | --- | --- | --- | --- | --- |\n")
	for _, m := range methods {
		for _, v := range variants {
			s := stats[v.name+"/"+m]
			n := time.Duration(len(s.latencies))
			proxyCPU := FormatDuration(s.proxyCPU / n)
			if v.name == "direct" {
				proxyCPU = "—"
			}
			fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s |\n", m, v.name,
				FormatDuration(Percentile(s.latencies, 50)), FormatDuration(Percentile(s.latencies, 99)),
				proxyCPU, FormatDuration(s.runtimeCPU/n))
		}
	}
}

// writeRatios writes criguard's figures over the thin forwarder's, and the spread of
// the CPU ratio between rounds; it returns the worst p50 and CPU ratios.
func writeRatios(b *strings.Builder, stats map[string]*callStats) (worstP50, worstCPU float64) {
	b.WriteString("\nRatios, criguard ÷ thin forwarder (goal ≤ 1.10×) and ÷ thin+md (the thin forwarder passing metadata, " +
		"headers and trailers as criguard must), and the extra hop over direct:\n\n")
	b.WriteString("| method | p50 ratio | p99 ratio | proxy CPU/call ratio | p50 ÷ thin+md | CPU/call ÷ thin+md | " +
		"criguard p50 − direct p50 | thin p50 − direct p50 |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n")
	cpuPerCall := func(s *callStats) float64 { return float64(s.proxyCPU) / float64(len(s.latencies)) }
	for _, m := range methods {
		cg, thin, thinMD, direct := stats["criguard/"+m], stats["thin/"+m], stats["thin+md/"+m], stats["direct/"+m]
		p50 := Ratio(float64(Percentile(cg.latencies, 50)), float64(Percentile(thin.latencies, 50)))
		p99 := Ratio(float64(Percentile(cg.latencies, 99)), float64(Percentile(thin.latencies, 99)))
		cpu := Ratio(cpuPerCall(cg), cpuPerCall(thin))
		worstP50, worstCPU = max(worstP50, p50), max(worstCPU, cpu)
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", m, FormatRatio(p50), FormatRatio(p99), FormatRatio(cpu),
			FormatRatio(Ratio(float64(Percentile(cg.latencies, 50)), float64(Percentile(thinMD.latencies, 50)))),
			FormatRatio(Ratio(cpuPerCall(cg), cpuPerCall(thinMD))),
			FormatDuration(Percentile(cg.latencies, 50)-Percentile(direct.latencies, 50)),
			FormatDuration(Percentile(thin.latencies, 50)-Percentile(direct.latencies, 50)))
	}
	b.WriteString("\nSpread of the proxy CPU ratio between rounds (each round's criguard batch ÷ its thin batch, same calls): ")
	for i, m := range methods {
		cg, thin := stats["criguard/"+m], stats["thin/"+m]
		var ratios []float64
		for k := range min(len(cg.batchCPU), len(thin.batchCPU)) {
			ratios = append(ratios, Ratio(float64(cg.batchCPU[k]), float64(thin.batchCPU[k])))
		}
		slices.Sort(ratios)
		if i > 0 {
			b.WriteString("; ")
		}
		if len(ratios) > 0 {
			fmt.Fprintf(b, "%s median %s (min %s, max %s)", m, FormatRatio(ratios[len(ratios)/2]),
				FormatRatio(ratios[0]), FormatRatio(ratios[len(ratios)-1]))
		}
	}
	b.WriteString(".\n")
	return worstP50, worstCPU
}

// idleRates measures each variant's process CPU, as a fraction of one core, while no
// call is made.
func (r *rig) idleRates(t *testing.T, variants []variant, over time.Duration) map[string]float64 {
	t.Helper()
	before := map[string]time.Duration{}
	for _, v := range variants {
		cpu, err := ThreadsCPU("/proc", v.pid)
		if err != nil {
			t.Fatal(err)
		}
		before[v.name] = cpu
	}
	time.Sleep(over)
	rates := map[string]float64{}
	for _, v := range variants {
		cpu, err := ThreadsCPU("/proc", v.pid)
		if err != nil {
			t.Fatal(err)
		}
		rates[v.name] = float64(cpu-before[v.name]) / float64(over)
	}
	return rates
}

// reconcileInfo is what criguard logged about a reconcile pass.
type reconcileInfo struct {
	containers int
	took       string
}

// waitReconcile waits until criguard's reconcile pass has seen every idle container
// (its debug line "reconciled") and returns what it logged.
func (r *rig) waitReconcile(t *testing.T) reconcileInfo {
	t.Helper()
	deadline := time.Now().Add(settleTimeout)
	for {
		for _, rec := range readLog(t, r.cg.LogPath) {
			if rec["msg"] != "reconciled" {
				continue
			}
			n, _ := rec["containers"].(float64)
			if int(n) >= len(r.idleIDs) {
				took, _ := rec["took"].(string)
				if f, ok := rec["took"].(float64); ok {
					took = time.Duration(f).String()
				}
				return reconcileInfo{containers: int(n), took: took}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("criguard logged no reconcile pass over %d containers within %s", len(r.idleIDs), settleTimeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
