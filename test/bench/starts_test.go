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
		{name: "criguard", client: lab.RuntimeClient(t, r.cg.Endpoint)},
		{name: "direct", client: lab.RuntimeClient(t, r.ctrd.Endpoint)},
	}
	latencies := map[string][]time.Duration{}
	limitAtReply := map[string]int{} // starts whose cgroup held the limit at the reply
	var cgIDs []string
	var missing []string
	start := time.Now()
	for i := range r.cfg.starts {
		for k := range variants {
			// Alternate which variant goes first: A,B then B,A.
			v := variants[(i+k)%len(variants)]
			p := pods[(2*i+k)%len(pods)]
			id, err := createContainer(v.client, p.id, p.pod, fmt.Sprintf("s-%s-%d", v.name, i))
			if err != nil {
				t.Fatal(err)
			}
			began := time.Now()
			err = startContainer(v.client, id)
			took := time.Since(began)
			if err != nil {
				t.Fatal(err)
			}
			limit, err := r.writeLimit(p.pod, id)
			if err != nil {
				t.Fatalf("read the limit of %s right after its start: %v", id, err)
			}
			latencies[v.name] = append(latencies[v.name], took)
			if limit == writeBPS {
				limitAtReply[v.name]++
			} else if v.name == "criguard" {
				missing = append(missing, fmt.Sprintf("%s (%d)", id, limit))
			}
			if v.name == "criguard" {
				cgIDs = append(cgIDs, id)
			}
			if err := stopRemove(v.client, id); err != nil {
				t.Fatal(err)
			}
		}
	}
	elapsed := time.Since(start)

	applies, applyErrs := r.applySeconds(t, cgIDs)
	cgP50, cgP99 := Percentile(latencies["criguard"], 50), Percentile(latencies["criguard"], 99)
	dP50, dP99 := Percentile(latencies["direct"], 50), Percentile(latencies["direct"], 99)
	ratio := Ratio(float64(cgP50), float64(dP50))
	applyP99 := Percentile(applies, 99)

	b := &r.report.starts
	fmt.Fprintf(b, "%d StartContainer calls through criguard and %d directly, alternating (A,B then B,A), "+
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

	r.report.goal("apply_seconds p99 (issue 5)", "< 5 ms", FormatDuration(applyP99), applyP99 < 5*time.Millisecond && len(applies) > 0)
	r.report.goal("StartContainer p50 through criguard ÷ direct (issue 5)", "< 1.10×", FormatRatio(ratio), ratio < 1.10)
	if len(missing) > 0 {
		t.Errorf("%d criguard starts had no limit in the cgroup at the reply: %s", len(missing), strings.Join(missing, ", "))
	}
	if limitAtReply["direct"] > 0 {
		t.Errorf("%d direct starts had the limit: something other than criguard's start hook wrote it", limitAtReply["direct"])
	}
	if len(applies) != len(cgIDs) {
		t.Errorf("criguard logged apply_seconds for %d of %d starts", len(applies), len(cgIDs))
	}
}

// applySeconds returns the apply_seconds criguard logged ("start handled") for ids,
// and how many of those lines carried an error.
func (r *rig) applySeconds(t *testing.T, ids []string) ([]time.Duration, int) {
	t.Helper()
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	var out []time.Duration
	errs := 0
	for _, rec := range readLog(t, r.cg.LogPath) {
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
