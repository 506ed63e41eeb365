package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"

	"github.com/criguard/criguard/cgroup"
	"github.com/criguard/criguard/policy"
)

// hostChecker is what `check --host` asks of this machine; tests give a fake.
type hostChecker interface {
	// ResolveDevice returns the whole disk (MAJ:MIN) behind a policy's device spec.
	ResolveDevice(spec string) (string, error)
	// IOSupport names the cgroup mode and I/O controller, with what they cannot
	// throttle, or fails when no I/O controller is mounted.
	IOSupport() (string, error)
}

// realHost answers from /proc, /sys and /dev through the cgroup package.
type realHost struct{ resolver cgroup.DeviceResolver }

func (h realHost) ResolveDevice(spec string) (string, error) {
	d, err := h.resolver.Resolve(spec)
	if err != nil {
		return "", err
	}
	return d.String(), nil
}

func (h realHost) IOSupport() (string, error) {
	hierarchy, err := cgroup.DetectHost(h.resolver.ProcRoot)
	if err != nil {
		return "", err
	}
	backend, err := hierarchy.IO()
	if err != nil {
		return "", fmt.Errorf("cgroup mode %s: %w", hierarchy.Mode(), err)
	}
	if !cgroup.ThrottlesBufferedWrites(backend) {
		return fmt.Sprintf("cgroup %s, v1 blkio (throttles direct I/O only; buffered writes escape)", hierarchy.Mode()), nil
	}
	return fmt.Sprintf("cgroup %s, v2 io.max (throttles buffered writes too)", hierarchy.Mode()), nil
}

func runCheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return checkPolicies(ctx, args, stdout, stderr, realHost{})
}

func checkPolicies(_ context.Context, args []string, stdout, stderr io.Writer, host hostChecker) error {
	fs := newFlagSet("check", stderr)
	checkHost := fs.Bool("host", false, "also check this host: every device resolves to a block device and a cgroup I/O controller is mounted")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: criguard check [--host] FILE...\n\nValidates policy files: exit 0 with a summary line per file, 1 with every problem.")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return &exitError{code: 2, err: fmt.Errorf("check: no policy file given: %w", errUsage)}
	}
	invalid := 0
	for _, path := range fs.Args() {
		summary, ok := checkPolicy(path, stderr)
		if ok && *checkHost {
			var hostSummary string
			hostSummary, ok = checkPolicyOnHost(path, summary.policy, host, stderr)
			summary.text += "; " + hostSummary
		}
		if !ok {
			invalid++
			continue
		}
		fmt.Fprintln(stdout, summary.text)
	}
	if invalid > 0 {
		return &exitError{code: 1, err: fmt.Errorf("%d of %d policy files are invalid", invalid, fs.NArg())}
	}
	return nil
}

type policySummary struct {
	policy *policy.Policy
	text   string
}

// checkPolicy parses one file and prints its diagnostics (warnings too) with the
// offending source lines.
func checkPolicy(path string, stderr io.Writer) (policySummary, bool) {
	src, err := policy.ReadFile(path)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", path, err)
		return policySummary{}, false
	}
	p, diags := policy.Parse(src, path)
	if len(diags) > 0 {
		files := map[string]*hcl.File{path: {Bytes: src}}
		if err := hcl.NewDiagnosticTextWriter(stderr, files, 0, false).WriteDiagnostics(diags); err != nil {
			fmt.Fprintf(stderr, "%s: writing diagnostics: %v\n", path, err)
		}
	}
	if diags.HasErrors() {
		return policySummary{}, false
	}
	annotations := "annotations disabled"
	switch {
	case p.Annotations.Enabled && p.Annotations.AllowLoosen:
		annotations = "annotations enabled (may loosen up to max_*)"
	case p.Annotations.Enabled:
		annotations = "annotations enabled (tighten only)"
	}
	text := fmt.Sprintf("%s: ok: %s, %s, %s, %s", path,
		plural(len(p.Devices), "device"), plural(len(p.Classes), "class"), plural(len(p.Rules), "rule"), annotations)
	return policySummary{policy: p, text: text}, true
}

// checkPolicyOnHost resolves every device the policy writes to and checks that the
// host can throttle I/O at all.
func checkPolicyOnHost(path string, p *policy.Policy, host hostChecker, stderr io.Writer) (string, bool) {
	ok := true
	support, err := host.IOSupport()
	if err != nil {
		fmt.Fprintf(stderr, "%s: this host cannot throttle I/O: %v\n", path, err)
		ok = false
	}
	var resolved []string
	for _, spec := range deviceSpecs(p) {
		name := spec.spec
		if spec.label != "" {
			name = fmt.Sprintf("device %q (%s)", spec.label, spec.spec)
		}
		disk, err := host.ResolveDevice(spec.spec)
		if err != nil {
			fmt.Fprintf(stderr, "%s: %s is not a block device on this host: %v\n", path, name, err)
			ok = false
			continue
		}
		resolved = append(resolved, fmt.Sprintf("%s=%s", orLabel(spec), disk))
	}
	if !checkResourcesOnHost(path, p, host, stderr) {
		ok = false
	}
	if !checkProtectionOnHost(path, p, host, stderr) {
		ok = false
	}
	summary := fmt.Sprintf("host: %s; devices %s", support, strings.Join(resolved, " "))
	return summary + checkSelectorsOnHost(path, p, host, stderr) + checkWeightsOnHost(path, p, host, stderr), ok
}

type deviceSpec struct{ label, spec string }

// deviceSpecs lists every device the policy can write to, once: declared devices
// with their labels, then paths and MAJ:MIN written directly in io blocks.
func deviceSpecs(p *policy.Policy) []deviceSpec {
	var specs []deviceSpec
	seen := map[string]bool{}
	add := func(label, spec string) {
		if spec != "" && !seen[spec] {
			seen[spec] = true
			specs = append(specs, deviceSpec{label, spec})
		}
	}
	labels := make([]string, 0, len(p.Devices))
	for label := range p.Devices {
		labels = append(labels, label)
	}
	slices.Sort(labels)
	for _, label := range labels {
		add(label, p.Devices[label])
	}
	classes := make([]string, 0, len(p.Classes))
	for name := range p.Classes {
		classes = append(classes, name)
	}
	slices.Sort(classes)
	for _, name := range classes {
		for _, limits := range p.Classes[name].IO {
			if !limits.SelectsMounts() { // resolved per container, at its start
				add("", limits.Device)
			}
		}
	}
	add("", p.Annotations.Device)
	return specs
}

func orLabel(s deviceSpec) string {
	if s.label != "" {
		return s.label
	}
	return s.spec
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	if strings.HasSuffix(noun, "s") {
		return fmt.Sprintf("%d %ses", n, noun)
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
