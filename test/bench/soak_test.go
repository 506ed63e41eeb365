//go:build bench

package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/criguard/criguard/test/e2e/lab"
)

// soakSample is criguard's footprint at one moment of the soak, from its /metrics
// and /proc/PID/status: RSS, and where it is (the binary's pages, anonymous memory,
// and the heap goal: the size the collector lets the heap reach before the next
// collection).
type soakSample struct {
	at                    time.Duration
	cycles                int64
	goroutines            float64
	fds                   float64
	rss, rssFile, rssAnon float64
	heapGoal              float64
}

func (r *rig) sample(t *testing.T, at time.Duration, cycles int64) soakSample {
	t.Helper()
	m := r.scrape(t)
	return soakSample{at: at, cycles: cycles,
		goroutines: value(t, m, "go_goroutines"),
		fds:        value(t, m, "process_open_fds"),
		rss:        value(t, m, "process_resident_memory_bytes"),
		rssFile:    float64(statusKB(t, r.cg.Pid(), "RssFile:")),
		rssAnon:    float64(statusKB(t, r.cg.Pid(), "RssAnon:")),
		heapGoal:   value(t, m, "go_memstats_next_gc_bytes"),
	}
}

// soakSampleEvery spaces the footprint samples of the soak.
const soakSampleEvery = 30 * time.Second

// benchSoak runs create/start/stop/remove cycles through criguard until the cycle
// count or the time budget is reached, and samples criguard's goroutines, open fds and
// RSS before, during and after.
func (r *rig) benchSoak(t *testing.T) {
	pods := r.throttledPods(t, "soak")
	client := lab.RuntimeClient(t, r.cg.Endpoint)
	// Warm up: the client's connection (its server-side goroutines belong to the
	// baseline, not to a leak) and one cycle per worker.
	for w := range r.cfg.soakWorkers {
		p := pods[w%len(pods)]
		id, err := createContainer(client, p.id, p.pod, fmt.Sprintf("soak-warm-%d", w))
		if err == nil {
			err = startContainer(client, id)
		}
		if id != "" {
			if rmErr := stopRemove(client, id); err == nil {
				err = rmErr
			}
		}
		if err != nil {
			t.Fatalf("soak warm-up: %v", err)
		}
	}
	time.Sleep(2 * time.Second) // let the previous phase's calls drain
	start := time.Now()
	samples := []soakSample{r.sample(t, 0, 0)}

	var done, limited atomic.Int64
	var durMu sync.Mutex
	var durations []time.Duration
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.soakMax)
	defer cancel()
	errs := make(chan error, r.cfg.soakWorkers)
	var wg sync.WaitGroup
	var claimed atomic.Int64
	for w := range r.cfg.soakWorkers {
		wg.Go(func() {
			for ctx.Err() == nil {
				n := claimed.Add(1)
				if n > int64(r.cfg.soakCycles) {
					return
				}
				p := pods[int(n)%len(pods)]
				began := time.Now()
				id, err := createContainer(client, p.id, p.pod, fmt.Sprintf("soak-%d-%d", w, n))
				if err == nil {
					err = startContainer(client, id)
				}
				if err == nil {
					var limit uint64
					if limit, err = r.writeLimit(p.pod, id); err == nil && limit == writeBPS {
						limited.Add(1)
					}
				}
				if id != "" {
					if rmErr := stopRemove(client, id); err == nil {
						err = rmErr
					}
				}
				if err != nil {
					errs <- fmt.Errorf("soak cycle %d: %w", n, err)
					cancel()
					return
				}
				took := time.Since(began)
				durMu.Lock()
				durations = append(durations, took)
				durMu.Unlock()
				done.Add(1)
			}
		})
	}
	ticker := time.NewTicker(soakSampleEvery)
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
sampling:
	for {
		select {
		case <-ticker.C:
			samples = append(samples, r.sample(t, time.Since(start), done.Load()))
		case <-finished:
			break sampling
		}
	}
	ticker.Stop()
	elapsed := time.Since(start)
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	time.Sleep(5 * time.Second) // the last calls' goroutines and connections wind down
	end := r.sample(t, time.Since(start), done.Load())
	samples = append(samples, end)

	cycles := done.Load()
	first := samples[0]
	middle := samples[0]
	for _, s := range samples {
		if abs64(s.cycles-cycles/2) < abs64(middle.cycles-cycles/2) {
			middle = s
		}
	}
	b := &r.report.soak
	stopped := "all cycles done"
	if cycles < int64(r.cfg.soakCycles) {
		stopped = fmt.Sprintf("stopped by the %s time budget", r.cfg.soakMax)
	}
	fmt.Fprintf(b, "%d of %d create/start/stop/remove cycles through criguard in %s (%s), %d workers side by side, "+
		"in %d pods of the throttled namespace; cycle p50 %s, p99 %s. %d of %d started containers held the limit at the "+
		"StartContainer reply. Footprint from criguard's `/metrics`; the end sample is taken 5 s after the last cycle.\n\n",
		cycles, r.cfg.soakCycles, elapsed.Round(time.Second), stopped, r.cfg.soakWorkers, throttledPods,
		FormatDuration(Percentile(durations, 50)), FormatDuration(Percentile(durations, 99)), limited.Load(), cycles)
	b.WriteString("| moment | cycles | go_goroutines | process_open_fds | process_resident_memory_bytes | RssFile | RssAnon | heap goal |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, row := range []struct {
		name string
		s    soakSample
	}{{"start", first}, {"middle", middle}, {"end", end}} {
		fmt.Fprintf(b, "| %s (%s) | %d | %.0f | %.0f | %s | %s | %s | %s |\n", row.name, row.s.at.Round(time.Second), row.s.cycles,
			row.s.goroutines, row.s.fds, MiB(row.s.rss), MiB(row.s.rssFile), MiB(row.s.rssAnon), MiB(row.s.heapGoal))
	}
	b.WriteString("\nEvery sample (every 30 s): ")
	for i, s := range samples {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(b, "%d cycles: %.0f g, %.0f fds, %s (file %s, anon %s, heap goal %s)", s.cycles, s.goroutines, s.fds,
			MiB(s.rss), MiB(s.rssFile), MiB(s.rssAnon), MiB(s.heapGoal))
	}
	b.WriteString(".\n")

	// Growth: a leak of one goroutine or fd per cycle would add hundreds; RSS moves
	// with the Go heap's GC cycle, so only a clear rise counts.
	gGrew := end.goroutines > first.goroutines+3
	fdGrew := end.fds > first.fds+3
	rssGrew := end.rss > first.rss*1.25 && end.rss > first.rss+8<<20
	r.report.goal("soak: goroutines end vs start (issue 6)", "no growth (≤ +3)",
		fmt.Sprintf("%.0f → %.0f", first.goroutines, end.goroutines), !gGrew)
	r.report.goal("soak: open fds end vs start (issue 6)", "no growth (≤ +3)",
		fmt.Sprintf("%.0f → %.0f", first.fds, end.fds), !fdGrew)
	r.report.goal("soak: RSS end vs start (issue 6)", "no growth (≤ +25 %)",
		fmt.Sprintf("%s → %s", MiB(first.rss), MiB(end.rss)), !rssGrew)
	r.report.goal("soak: cycles (issue 6)", fmt.Sprintf("%d", r.cfg.soakCycles), fmt.Sprintf("%d", cycles),
		cycles >= int64(r.cfg.soakCycles))
	if limited.Load() != cycles {
		t.Errorf("%d of %d soak containers lacked the limit right after StartContainer", cycles-limited.Load(), cycles)
	}
}

func abs64(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}
