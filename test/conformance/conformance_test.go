//go:build conformance

package conformance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/criguard/criguard/test/e2e/lab"
)

// skipSpecs are left out of both runs: benchmarks (critest's own default) and the
// port-mapping specs, which send HTTP to pod addresses of the CNI bridge.
const skipSpecs = `benchmark|port mapping`

// crioSkip is left out on CRI-O as well: the spec fails on every runtime here (our
// nginx stand-in prints no "master process"), and on CRI-O its StopPodSandbox then
// hangs until ginkgo gives up 5 minutes later, twice per run.
const crioSkip = `should support ContainerPID`

// runTimeout bounds one critest run: about 3 min on a quiet machine, and CI runs it
// beside the v2 node VM.
const runTimeout = 15 * time.Minute

// critestImage is an image critest pulls, made from the local busybox by ociimage.
type critestImage struct {
	refs []string
	args []string
}

// webServer serves an index page on port with busybox httpd, writes the pid file
// critest's namespace specs read, and first prints banner (the line the real server
// logs, which the multi-container log spec looks for).
func webServer(port int, banner string) []string {
	return []string{"-entrypoint", fmt.Sprintf(`["sh","-c","mkdir -p /www /var/run && echo '<h1>Welcome to nginx!</h1>' > /www/index.html && echo $$ > /var/run/nginx.pid && echo '%s' && exec httpd -f -p %d -h /www"]`, banner, port)}
}

const (
	e2eImages = "registry.k8s.io/e2e-test-images/"
	criTools  = "gcr.io/k8s-staging-cri-tools/"
)

// critestImages are the images critest v1.30 uses (pkg/validate/consts.go and friends),
// built to behave as the real ones do where a spec looks. The digest-pinned image
// cannot be rebuilt: its spec fails directly and through criguard alike.
var critestImages = []critestImage{
	{refs: []string{e2eImages + "busybox:1.29-2", "docker.io/library/busybox:1.28"}},
	{refs: []string{e2eImages + "nginx:1.14-2"}, args: webServer(80, "nginx")},
	{refs: []string{e2eImages + "httpd:2.4.39-4"}, args: webServer(80, "AH00094: Command line: httpd -D FOREGROUND")},
	{refs: []string{criTools + "hostnet-nginx-amd64"}, args: webServer(12003, "nginx")},
	{refs: []string{e2eImages + "nonewprivs:1.3"}},
	{refs: []string{criTools + "test-image-user-uid"}, args: []string{"-user", "1002"}},
	{refs: []string{criTools + "test-image-user-username"}, args: []string{"-user", "www-data"}},
	{refs: []string{criTools + "test-image-user-uid-group"}, args: []string{"-user", "1003:1004"}},
	{refs: []string{criTools + "test-image-user-username-group"}, args: []string{"-user", "www-data:1004"}},
	{refs: []string{criTools + "test-image-predefined-group"}, args: []string{"-user", "1000"}},
	{refs: []string{criTools + "test-image-latest", criTools + "test-image-tag:test", criTools + "test-image-tag:all"}, args: []string{"-labels", "image=tagged"}},
	{refs: []string{criTools + "test-image-1:latest"}, args: []string{"-labels", "image=1"}},
	{refs: []string{criTools + "test-image-2:latest"}, args: []string{"-labels", "image=2"}},
	{refs: []string{criTools + "test-image-3:latest"}, args: []string{"-labels", "image=3"}},
	{refs: []string{criTools + "test-image-tags:1", criTools + "test-image-tags:2", criTools + "test-image-tags:3"}, args: []string{"-labels", "image=tags"}},
}

// TestConformance runs critest directly against each runtime (Debian's containerd 1.6,
// the lab's containerd 2.4 and CRI-O 1.34) and through criguard in front of it, and
// fails on any spec that passed directly but not through criguard.
// CONFORMANCE_RUNTIME=containerd1, containerd2 or crio runs one of them
// (CONFORMANCE_CONTAINERD=1 or 2 still works).
func TestConformance(t *testing.T) {
	lab.RequireRoot(t)
	critest := lab.Bin(t, "critest")
	reg := lab.Registry(t)
	pushCritestImages(t, reg)
	reports := reportDir(t)
	// CONFORMANCE_FOCUS (a ginkgo regexp) runs part of the suite; CONFORMANCE_CRIGUARD_ARGS
	// adds serve flags, e.g. a tiny --max-msg-size to see a broken criguard fail this.
	focus := os.Getenv("CONFORMANCE_FOCUS")
	extraArgs := strings.Fields(os.Getenv("CONFORMANCE_CRIGUARD_ARGS"))
	only := os.Getenv("CONFORMANCE_RUNTIME")
	if n := os.Getenv("CONFORMANCE_CONTAINERD"); n != "" && only == "" {
		only = "containerd" + n
	}

	runtimes := []struct {
		name string
		// skip is left out on this runtime besides skipSpecs.
		skip string
		// start starts the runtime (with the registry and a CNI bridge) and returns
		// its CRI endpoint.
		start func(t *testing.T) string
	}{
		{"containerd1", "", func(t *testing.T) string {
			return lab.Containerd(t, lab.WithRegistry(reg), lab.WithCNI(lab.CNIConfig{})).Endpoint
		}},
		{"containerd2", "", func(t *testing.T) string {
			return lab.Containerd(t, lab.WithRegistry(reg), lab.WithCNI(lab.CNIConfig{}), lab.WithContainerd2()).Endpoint
		}},
		{"crio", crioSkip, func(t *testing.T) string {
			return lab.CRIO(t, lab.WithCRIORegistry(reg), lab.WithCRIOCNI(lab.CNIConfig{})).Endpoint
		}},
	}
	// CONFORMANCE_BASELINE=1 (CI) lets a run through criguard that fails only specs
	// known to fail directly stand without the direct run.
	useBaseline := os.Getenv("CONFORMANCE_BASELINE") == "1"
	baseline := readBaseline(t)
	partial := false
	var runs []Run
	for _, rt := range runtimes {
		if only != "" && only != rt.name {
			continue
		}
		t.Run(rt.name, func(t *testing.T) {
			endpoint := rt.start(t)
			cg := lab.Criguard(t, endpoint, append([]string{"--log-level", "info"}, extraArgs...)...)
			prefix := filepath.Join(reports, rt.name+"-")
			skip := skipSpecs
			if rt.skip != "" {
				skip += "|" + rt.skip
			}
			version := runtimeVersion(t, endpoint)
			var known *BaselineEntry
			if e, ok := baseline[version]; ok && useBaseline && focus == "" {
				known = &e
			}
			run, ranDirect := compareRuns(t, critest, endpoint, cg.Endpoint, prefix, focus, skip, known)
			run.Runtime = version
			if ranDirect && focus == "" && len(extraArgs) == 0 {
				baseline.Record(version, time.Now().UTC().Format("2006-01-02"), run.Comparison)
				writeBaseline(t, baseline)
			}
			if !ranDirect {
				partial = true
			}
			runs = append(runs, run)
		})
	}

	if focus != "" || len(extraArgs) > 0 || len(runs) < len(runtimes) || partial {
		t.Logf("partial or modified run: docs/CONFORMANCE.md left as it is")
		return
	}
	writeReport(t, Meta{
		Date:    time.Now().UTC().Format("2006-01-02"),
		Critest: "cri-tools v1.30.0",
		Command: "sudo make conformance",
		Skipped: "`" + skipSpecs + "` (benchmarks; HTTP to pod addresses), and on CRI-O `" + crioSkip +
			"` (fails on every runtime here, then hangs 5 minutes in StopPodSandbox on CRI-O)",
	}, runs)
}

// compareRuns runs critest through criguard and directly and compares the two. A spec
// that failed only through criguard runs once more there: a flake passes now, a real
// regression fails again. With a baseline entry (CONFORMANCE_BASELINE) the direct run
// is left out when every spec that failed through criguard is one the baseline saw
// fail directly on this runtime version; any other failure brings the direct run back.
func compareRuns(t *testing.T, critest, direct, proxied, prefix, focus, skip string, baseline *BaselineEntry) (Run, bool) {
	t.Helper()
	through := runCritest(t, critest, proxied, prefix+"criguard.xml", focus, skip)
	if baseline != nil {
		unexplained := baseline.Unexplained(through)
		if len(unexplained) == 0 {
			run := Run{Comparison: Comparison{ProxiedPassed: countOutcome(through, Passed)}}
			t.Logf("critest passed %d of %d specs through criguard; the %d that failed fail directly too (baseline of %s): direct run left out",
				run.Comparison.ProxiedPassed, len(through)-countOutcome(through, Skipped), countOutcome(through, Failed), baseline.Date)
			return run, false
		}
		t.Logf("%d specs failed through criguard that the baseline does not know (first: %s): running critest directly",
			len(unexplained), unexplained[0].Name)
	}
	c := Compare(runCritest(t, critest, direct, prefix+"direct.xml", focus, skip), through)
	var run Run
	if len(c.Regressions) > 0 {
		names := make([]string, len(c.Regressions))
		for i, s := range c.Regressions {
			names[i] = regexp.QuoteMeta(s.Name)
		}
		passedAgain := map[string]bool{}
		for _, s := range runCritest(t, critest, proxied, prefix+"criguard-retry.xml", strings.Join(names, "|"), skip) {
			if s.Outcome == Passed {
				passedAgain[s.Name] = true
			}
		}
		var still []Spec
		for _, s := range c.Regressions {
			if passedAgain[s.Name] {
				run.Retried = append(run.Retried, s.Name)
				c.ProxiedPassed++
			} else {
				still = append(still, s)
			}
		}
		c.Regressions = still
	}
	run.Comparison = c
	t.Logf("critest passed %d of %d specs directly, %d through criguard; %d regressions",
		c.DirectPassed, c.Ran, c.ProxiedPassed, len(c.Regressions))
	if c.DirectPassed == 0 {
		t.Errorf("no spec passed directly: the lab is broken, the comparison proves nothing")
	}
	for _, s := range c.Regressions {
		t.Errorf("passes directly, fails through criguard: %s\n  %s", s.Name, firstLine(s.Message))
	}
	return run, true
}

func countOutcome(specs []Spec, o Outcome) int {
	n := 0
	for _, s := range specs {
		if s.Outcome == o {
			n++
		}
	}
	return n
}

// baselinePath is the record of direct failures, per runtime version.
func baselinePath() string {
	if p := os.Getenv("CONFORMANCE_BASELINE_FILE"); p != "" {
		return p
	}
	return "baseline.json"
}

func readBaseline(t *testing.T) Baseline {
	t.Helper()
	b := Baseline{}
	data, err := os.ReadFile(baselinePath())
	if errors.Is(err, fs.ErrNotExist) {
		return b
	}
	if err == nil {
		err = json.Unmarshal(data, &b)
	}
	if err != nil {
		t.Fatalf("conformance baseline %s: %v", baselinePath(), err)
	}
	return b
}

func writeBaseline(t *testing.T, b Baseline) {
	t.Helper()
	data, err := json.MarshalIndent(b, "", "  ")
	if err == nil {
		err = os.WriteFile(baselinePath(), append(data, '\n'), 0o644)
	}
	if err != nil {
		t.Errorf("write the conformance baseline %s: %v", baselinePath(), err)
	}
}

// pushCritestImages builds every critest image from the local busybox and pushes it
// under each of its names.
func pushCritestImages(t *testing.T, reg *lab.RegistryInstance) {
	t.Helper()
	ociimage := lab.Bin(t, "ociimage")
	dir := t.TempDir()
	for i, img := range critestImages {
		tar := filepath.Join(dir, fmt.Sprintf("image-%d.oci.tar", i))
		argv := append([]string{"-name", img.refs[0], "-out", tar}, img.args...)
		if out, err := exec.Command(ociimage, argv...).CombinedOutput(); err != nil {
			t.Fatalf("ociimage %v: %v\n%s", argv, err, out)
		}
		for _, ref := range img.refs {
			reg.Push(t, tar, ref)
		}
	}
}

// reportDir keeps the JUnit reports and critest logs under _out/conformance.
func reportDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("CONFORMANCE_OUT")
	if dir == "" {
		dir = t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("create %s: %v", dir, err)
	}
	return dir
}

// runCritest runs critest against endpoint with one node (its default: passing
// -parallel would trip ginkgo's check for go test's flag of that name) and returns the specs of its
// JUnit report. critest's own exit status is ignored: failing specs are expected.
func runCritest(t *testing.T, critest, endpoint, report, focus, skip string) []Spec {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	args := []string{
		"-runtime-endpoint", endpoint, "-image-endpoint", endpoint,
		"-ginkgo.no-color",
		"-ginkgo.skip", skip,
		"-ginkgo.junit-report", report,
	}
	if focus != "" {
		args = append(args, "-ginkgo.focus", focus)
	}
	logPath := strings.TrimSuffix(report, ".xml") + ".log"
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatalf("create %s: %v", logPath, err)
	}
	defer logFile.Close()
	cmd := exec.CommandContext(ctx, critest, args...)
	cmd.Dir = filepath.Dir(report)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	start := time.Now()
	runErr := cmd.Run()
	t.Logf("critest on %s: %s in %s (%v); log %s", endpoint, filepath.Base(report), time.Since(start).Round(time.Second), runErr, logPath)
	if ctx.Err() != nil {
		t.Fatalf("critest on %s did not finish within %s; log %s", endpoint, runTimeout, logPath)
	}
	f, err := os.Open(report)
	if err != nil {
		t.Fatalf("critest on %s wrote no report (%v); exit %v; log tail:\n%s", endpoint, err, runErr, tailFile(logPath, 30))
	}
	defer f.Close()
	specs, err := ParseJUnit(f)
	if err != nil {
		t.Fatalf("report %s: %v", report, err)
	}
	return specs
}

// runtimeVersion names the runtime behind endpoint, e.g. "containerd 1.6.20~ds1".
func runtimeVersion(t *testing.T, endpoint string) string {
	t.Helper()
	out := lab.Crictl(t, endpoint, "version")
	var name, version string
	for _, line := range strings.Split(out, "\n") {
		key, value, _ := strings.Cut(line, ":")
		switch strings.TrimSpace(key) {
		case "RuntimeName":
			name = strings.TrimSpace(value)
		case "RuntimeVersion":
			version = strings.TrimSpace(value)
		}
	}
	return name + " " + version
}

// writeReport writes docs/CONFORMANCE.md of the repository (or $CONFORMANCE_DOC).
func writeReport(t *testing.T, m Meta, runs []Run) {
	t.Helper()
	path := os.Getenv("CONFORMANCE_DOC")
	if path == "" {
		path = filepath.Join("..", "..", "docs", "CONFORMANCE.md")
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatalf("create %s: %v", path, err)
	}
	defer f.Close()
	if err := WriteMarkdown(f, m, runs); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	t.Logf("wrote %s", path)
}

func tailFile(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
