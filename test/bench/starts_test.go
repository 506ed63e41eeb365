//go:build bench

package bench

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/criguard/criguard/test/e2e/lab"
)

// throttledPods is how many pods the starts and the soak spread their containers over.
const throttledPods = 4

// throttledPod is a pod of the throttled namespace, run through criguard so that
// criguard knows its metadata from the RunPodSandbox it forwarded, as with kubelet.
type throttledPod struct {
	pod *lab.Pod
	id  string
}

func (r *rig) throttledPods(t *testing.T, prefix string) []throttledPod {
	t.Helper()
	client := lab.RuntimeClient(t, r.cg.Endpoint)
	pods := make([]throttledPod, throttledPods)
	for i := range pods {
		pod := lab.NewPod(t, fmt.Sprintf("%s-%d", prefix, i), throttledNS)
		id, err := r.runPod(client, pod)
		if err != nil {
			t.Fatal(err)
		}
		pods[i] = throttledPod{pod: pod, id: id}
	}
	return pods
}

// writeLimit reads the container's blkio write_bps limit on the bench device.
func (r *rig) writeLimit(pod *lab.Pod, id string) (uint64, error) {
	return lab.Throttle(filepath.Join(r.blkioRoot, pod.CgroupParent(), id), writeBPSFile, r.device)
}

// benchStarts starts containers alternately through criguard (whose policy throttles
// them) and directly, reads the limit from the cgroup file right after each reply, and
// collects criguard's own apply_seconds from its debug log.
func (r *rig) benchStarts(t *testing.T) {
	pods := r.throttledPods(t, "start")
	variants := []variant{
		{name: "criguard", client: lab.RuntimeClient(t, r.cg.Endpoint), pid: r.cg.Pid()},
		{name: "direct", client: lab.RuntimeClient(t, r.ctrd.Endpoint)},
		{name: "thin", client: lab.RuntimeClient(t, r.thin), pid: r.thinPid},
	}
	if r.cgOld != nil {
		variants = append(variants, variant{name: "criguard-old", client: lab.RuntimeClient(t, r.cgOld.Endpoint), pid: r.cgOld.Pid()})
	}
	latencies := map[string][]time.Duration{}
	limitAtReply := map[string]int{} // starts whose cgroup held the limit at the reply
	// The proxy's on-CPU time over each CreateContainer and StartContainer call, and
	// over the whole phase (stop, remove and anything done after a reply included).
	createCPU, startCPU, phaseCPU := map[string]time.Duration{}, map[string]time.Duration{}, map[string]time.Duration{}
	for _, v := range variants {
		if v.pid != 0 {
			phaseCPU[v.name] = -mustThreadsCPU(t, v.pid)
		}
	}
	ownIDs := map[string][]string{} // each criguard's containers, for its apply_seconds
	var missing []string
	start := time.Now()
	for i := range r.cfg.starts {
		for k := range variants {
			// Rotate which variant goes first every start.
			v := variants[(i+k)%len(variants)]
			p := pods[(2*i+k)%len(pods)]
			cpu0 := proxyCPU(t, v)
			id, err := createContainer(v.client, p.id, p.pod, fmt.Sprintf("s-%s-%d", v.name, i))
			if err != nil {
				t.Fatal(err)
			}
			cpu1 := proxyCPU(t, v)
			began := time.Now()
			err = startContainer(v.client, id)
			took := time.Since(began)
			if err != nil {
				t.Fatal(err)
			}
			cpu2 := proxyCPU(t, v)
			createCPU[v.name] += cpu1 - cpu0
			startCPU[v.name] += cpu2 - cpu1
			limit, err := r.writeLimit(p.pod, id)
			if err != nil {
				t.Fatalf("read the limit of %s right after its start: %v", id, err)
			}
			latencies[v.name] = append(latencies[v.name], took)
			if limit == writeBPS {
				limitAtReply[v.name]++
			} else if v.name == "criguard" {
				missing = append(missing, fmt.Sprintf("%s via %s (%d)", id, v.name, limit))
			}
			ownIDs[v.name] = append(ownIDs[v.name], id)
			if err := stopRemove(v.client, id); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, v := range variants {
		if v.pid != 0 {
			phaseCPU[v.name] += mustThreadsCPU(t, v.pid)
		}
	}
	cgIDs := ownIDs["criguard"]
	elapsed := time.Since(start)

	applies, applyErrs := r.applySeconds(t, cgIDs)
	cgP50, cgP99 := Percentile(latencies["criguard"], 50), Percentile(latencies["criguard"], 99)
	dP50, dP99 := Percentile(latencies["direct"], 50), Percentile(latencies["direct"], 99)
	ratio := Ratio(float64(cgP50), float64(dP50))
	applyP99 := Percentile(applies, 99)

	b := &r.report.starts
	fmt.Fprintf(b, "%d StartContainer calls through criguard and %d directly (and as many through the other variants), rotating which goes first, "+
		"spread over %d pods of namespace `%s`; each container is created before and stopped (timeout 0) and "+
		"removed after its start, through the same endpoint (%s in all). The policy gives the namespace "+
		"`write_bps = %d` on the disk under containerd's root (%s).\n\n",
		r.cfg.starts, r.cfg.starts, throttledPods, throttledNS, elapsed.Round(time.Second), writeBPS, r.device)
	b.WriteString("| figure | p50 | p99 |\n| --- | --- | --- |\n")
	fmt.Fprintf(b, "| criguard `apply_seconds` (debug log, %d starts) | %s | %s |\n", len(applies),
		FormatDuration(Percentile(applies, 50)), FormatDuration(applyP99))
	fmt.Fprintf(b, "| StartContainer through criguard | %s | %s |\n", FormatDuration(cgP50), FormatDuration(cgP99))
	fmt.Fprintf(b, "| StartContainer direct | %s | %s |\n", FormatDuration(dP50), FormatDuration(dP99))
	fmt.Fprintf(b, "| ratio criguard ÷ direct | %s | %s |\n", FormatRatio(ratio), FormatRatio(Ratio(float64(cgP99), float64(dP99))))
	fmt.Fprintf(b, "\nLimit read from `%s` right after the StartContainer reply: %d of %d criguard starts held %d; "+
		"%d of %d direct starts did (the control: nothing else writes it). apply errors logged: %d.\n",
		writeBPSFile, limitAtReply["criguard"], len(latencies["criguard"]), writeBPS,
		limitAtReply["direct"], len(latencies["direct"]), applyErrs)

	writeStartCPU(b, variants, r.cfg.starts, createCPU, startCPU, phaseCPU, latencies)
	if r.cgOld != nil {
		oldApplies, _ := r.applySecondsIn(t, r.cgOld.LogPath, ownIDs["criguard-old"])
		fmt.Fprintf(b, "\ncriguard-old: `apply_seconds` p50 %s, p99 %s (%d starts); %d of %d of its starts held the limit at the reply.\n",
			FormatDuration(Percentile(oldApplies, 50)), FormatDuration(Percentile(oldApplies, 99)), len(oldApplies),
			limitAtReply["criguard-old"], len(latencies["criguard-old"]))
	}
	for _, name := range []string{"create", "start"} {
		cpu := map[string]map[string]time.Duration{"create": createCPU, "start": startCPU}[name]
		ratio := Ratio(float64(cpu["criguard"]), float64(cpu["thin"]))
		r.report.goal(fmt.Sprintf("%sContainer proxy CPU/call, criguard ÷ thin forwarder (issue 20, for the record)", strings.ToUpper(name[:1])+name[1:]),
			"—", FormatRatio(ratio), true)
	}
	r.report.goal("apply_seconds p99 (issue 5)", "< 5 ms", FormatDuration(applyP99), applyP99 < 5*time.Millisecond && len(applies) > 0)
	r.report.goal("StartContainer p50 through criguard ÷ direct (issue 5)", "< 1.10×", FormatRatio(ratio), ratio < 1.10)
	if len(missing) > 0 {
		t.Errorf("%d criguard starts had no limit in the cgroup at the reply: %s", len(missing), strings.Join(missing, ", "))
	}
	for _, control := range []string{"direct", "thin"} {
		if limitAtReply[control] > 0 {
			t.Errorf("%d %s starts had the limit: something other than criguard's start hook wrote it", limitAtReply[control], control)
		}
	}
	if len(applies) != len(cgIDs) {
		t.Errorf("criguard logged apply_seconds for %d of %d starts", len(applies), len(cgIDs))
	}
}

// applySeconds returns the apply_seconds criguard logged ("start handled") for ids,
// and how many of those lines carried an error.
func (r *rig) applySeconds(t *testing.T, ids []string) ([]time.Duration, int) {
	t.Helper()
	return r.applySecondsIn(t, r.cg.LogPath, ids)
}

// applySecondsIn is applySeconds from the log at logPath.
func (r *rig) applySecondsIn(t *testing.T, logPath string, ids []string) ([]time.Duration, int) {
	t.Helper()
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	var out []time.Duration
	errs := 0
	for _, rec := range readLog(t, logPath) {
		id, _ := rec["container"].(string)
		if rec["msg"] != "start handled" || !want[id] {
			continue
		}
		secs, ok := rec["apply_seconds"].(float64)
		if !ok {
			t.Errorf("start handled line for %s has no numeric apply_seconds: %v", id, rec)
			continue
		}
		if rec["err"] != nil {
			errs++
		}
		out = append(out, time.Duration(secs*float64(time.Second)))
	}
	return out, errs
}

// proxyCPU is the on-CPU time of v's proxy process, 0 for direct.
func proxyCPU(t *testing.T, v variant) time.Duration {
	t.Helper()
	if v.pid == 0 {
		return 0
	}
	return mustThreadsCPU(t, v.pid)
}

func mustThreadsCPU(t *testing.T, pid int) time.Duration {
	t.Helper()
	d, err := ThreadsCPU("/proc", pid)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// writeStartCPU writes each proxy's CPU per CreateContainer and StartContainer call,
// and per cycle over the whole phase, beside the thin forwarder's.
func writeStartCPU(b *strings.Builder, variants []variant, n int, create, start, phase map[string]time.Duration, latencies map[string][]time.Duration) {
	b.WriteString("\nProxy CPU per call (on-CPU time of the proxy's threads, `/proc/PID/task/*/schedstat`, read before and after each call; " +
		"per cycle: over the whole phase, divided by the cycles, so stop, remove and work after a reply count too):\n\n")
	b.WriteString("| variant | CreateContainer CPU/call | ÷ thin | StartContainer CPU/call | ÷ thin | CPU per cycle | ÷ thin | StartContainer p50 |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n")
	per := func(d time.Duration) time.Duration { return d / time.Duration(n) }
	for _, v := range variants {
		if v.pid == 0 {
			continue
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", v.name,
			FormatDuration(per(create[v.name])), FormatRatio(Ratio(float64(create[v.name]), float64(create["thin"]))),
			FormatDuration(per(start[v.name])), FormatRatio(Ratio(float64(start[v.name]), float64(start["thin"]))),
			FormatDuration(per(phase[v.name])), FormatRatio(Ratio(float64(phase[v.name]), float64(phase["thin"]))),
			FormatDuration(Percentile(latencies[v.name], 50)))
	}
}
