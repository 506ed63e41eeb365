//go:build bench

package bench

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// profileCalls is how many calls of each profiled method go through each proxy while
// perf samples it.
const profileCalls = 3000

// profileBatch is how many calls go through one proxy before the other takes over.
const profileBatch = 250

// profileProxies samples criguard and the thin forwarder with perf (on-CPU, call
// graphs through Go's frame pointers) while the same calls go through each, and
// writes the flat and inclusive symbol profiles next to results.md: where criguard's
// extra CPU per call goes, if any.
func (r *rig) profileProxies(t *testing.T, variants []variant) {
	t.Helper()
	perf, err := exec.LookPath("perf")
	if err != nil {
		fmt.Fprintf(&r.report.calls, "\nProfile: skipped, `perf` is not installed (run.sh installs linux-perf).\n")
		return
	}
	b := &r.report.calls
	fmt.Fprintf(b, "\nProfile (`perf record -F 4999 -g` on both proxies at once while %d Version and %d ContainerStatus "+
		"calls go through each, in alternating batches of %d; files in `_out/bench/run/perf-*.txt`). Inclusive share of "+
		"each proxy's samples, and that share as CPU time per call:\n\n", profileCalls, profileCalls, profileBatch)
	var proxies []variant
	recorders := map[string]*exec.Cmd{}
	for _, v := range variants {
		if v.name != "criguard" && v.name != "thin" {
			continue
		}
		proxies = append(proxies, v)
		data := filepath.Join(r.cfg.outDir, "perf-"+v.name+".data")
		rec := exec.Command(perf, "record", "-q", "-F", "4999", "-g", "-p", fmt.Sprint(v.pid), "-o", data)
		rec.Stderr = os.Stderr
		if err := rec.Start(); err != nil {
			t.Fatalf("start perf record on %s: %v", v.name, err)
		}
		recorders[v.name] = rec
	}
	time.Sleep(time.Second) // perf attaches to every thread
	// Alternate the proxies batch by batch, so that the shared machine's noise hits
	// both profiles alike.
	for done := 0; done < profileCalls; done += profileBatch {
		for _, m := range []string{"Version", "ContainerStatus"} {
			for _, v := range proxies {
				if err := r.batch(v, m, min(profileBatch, profileCalls-done), nil); err != nil {
					t.Fatalf("profile: %v", err)
				}
			}
		}
	}
	shares := map[string]map[string]float64{}
	sampled := map[string]float64{} // ns of CPU perf sampled in each proxy
	for _, v := range proxies {
		rec := recorders[v.name]
		_ = rec.Process.Signal(syscall.SIGINT)
		// perf writes its file on SIGINT, then dies of the signal it re-raises.
		if err := rec.Wait(); err != nil && !killedByInterrupt(err) {
			t.Fatalf("perf record on %s: %v", v.name, err)
		}
		prefix := filepath.Join(r.cfg.outDir, "perf-"+v.name)
		out := writePerfReports(t, perf, prefix)
		shares[v.name] = PerfChildren(out)
		if sampled[v.name], err = PerfEventCount(out); err != nil {
			t.Fatalf("%s-inclusive.txt: %v", prefix, err)
		}
	}
	// A renamed handler would silently read as 0 % and hide the comparison.
	for name, frame := range map[string]string{"criguard": criguardHandler, "thin": thinHandler} {
		if shares[name][frame] == 0 {
			t.Errorf("profile of %s has no samples in %s: was the handler renamed?", name, frame)
		}
	}
	// Percentages are of each proxy's own total; times per call compare across them.
	calls := float64(2 * profileCalls)
	perCall := func(name string, pct float64) string {
		return FormatDuration(time.Duration(pct / 100 * sampled[name] / calls))
	}
	b.WriteString("| frame (inclusive) | criguard | thin | criguard per call | thin per call |\n| --- | --- | --- | --- | --- |\n")
	fmt.Fprintf(b, "| all samples | 100 %% | 100 %% | %s | %s |\n", perCall("criguard", 100), perCall("thin", 100))
	for _, frame := range profileFrames {
		cg, thin := shares["criguard"][frame], shares["thin"][frame]
		fmt.Fprintf(b, "| `%s` | %.1f %% | %.1f %% | %s | %s |\n", frame, cg, thin, perCall("criguard", cg), perCall("thin", thin))
	}
	b.WriteString("\nperf's own sampling inflates the per-call times above the schedstat figures; read their differences.\n")
}

// writePerfReports writes perf's flat and inclusive symbol reports of prefix.data to
// prefix-flat.txt and prefix-inclusive.txt, and returns the inclusive one.
func writePerfReports(t *testing.T, perf, prefix string) (inclusive []byte) {
	t.Helper()
	for _, mode := range []string{"flat", "inclusive"} {
		flag := map[string]string{"flat": "--no-children", "inclusive": "--children"}[mode]
		out, err := exec.Command(perf, "report", "-i", prefix+".data", "--stdio", "--sort", "symbol", "-g", "none",
			"--percent-limit", "0.5", flag).Output()
		if err != nil {
			t.Fatalf("perf report %s.data: %v", prefix, err)
		}
		if err := os.WriteFile(prefix+"-"+mode+".txt", out, 0o644); err != nil {
			t.Fatal(err)
		}
		inclusive = out
	}
	return inclusive
}

// The handlers of the two proxies, as perf names them.
const (
	thinHandler     = "main.newServer.func1"
	criguardHandler = "github.com/criguard/criguard/proxy.(*Proxy).forward"
)

// profileFrames are the frames compared between the two proxies: thread switches and
// the Go scheduler, the garbage collector, gRPC's server and client halves, each
// proxy's handler, and what only criguard has (metrics observer, metadata copying).
var profileFrames = []string{
	"finish_task_switch.isra.0", // the kernel switching threads
	"runtime.findRunnable",
	"runtime.futex.abi0",
	"runtime.sysmon",
	"runtime.gcBgMarkWorker",
	"runtime.mallocgc",
	"google.golang.org/grpc/internal/transport.(*http2Server).HandleStreams",
	"google.golang.org/grpc/internal/transport.(*loopyWriter).run",
	"google.golang.org/grpc/internal/transport.(*http2Client).reader",
	"google.golang.org/grpc.(*ClientConn).Invoke",
	thinHandler,
	criguardHandler,
	"github.com/criguard/criguard/proxy.(*CallMetrics).ObserveCall",
	"github.com/criguard/criguard/proxy.outgoingContext",
	"google.golang.org/grpc.(*serverStream).SetHeader",
}

// killedByInterrupt reports whether a command ended by SIGINT.
func killedByInterrupt(err error) bool {
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		return false
	}
	ws, ok := exit.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGINT
}
