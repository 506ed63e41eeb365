package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCheckWith(t *testing.T, host hostChecker, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := checkPolicies(context.Background(), args, &out, &errOut, host)
	code = exitCode(err, &errOut)
	return out.String(), errOut.String(), code
}

func writePolicy(t *testing.T, name, src string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCheckValidPolicies(t *testing.T) {
	stdout, stderr, code := runCheckWith(t, nil, "../../examples/pod-annotations.hcl", "../../examples/noisy-batch.hcl")
	want := "../../examples/pod-annotations.hcl: ok: 1 device, 2 classes, 1 rule, annotations enabled (tighten only)\n" +
		"../../examples/noisy-batch.hcl: ok: 2 devices, 2 classes, 2 rules, annotations disabled\n"
	if code != 0 || stdout != want || stderr != "" {
		t.Errorf("check = %d\nstdout:\n%s\nwant:\n%s\nstderr:\n%s", code, stdout, want, stderr)
	}
}

func TestCheckPrintsEveryDiagnostic(t *testing.T) {
	bad := "../../policy/testdata/bad/many_errors.hcl"
	stdout, stderr, code := runCheckWith(t, nil, "../../examples/pod-budgets.hcl", bad)
	if code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	if stdout != "../../examples/pod-budgets.hcl: ok: 2 devices, 2 classes, 2 rules, annotations disabled\n" {
		t.Errorf("stdout = %q: the valid file's summary is missing", stdout)
	}
	for _, want := range []string{
		"Error: Invalid device path\n\n  on " + bad + " line 3:\n   3:   path = \"sda\"",
		"Error: Unsupported argument", `Did you mean "write_bps"?`,
		"Error: Invalid byte quantity",
		"Error: Unknown QoS class",
		"Error: Unknown class",
		"Error: Unknown scope",
		"criguard: 1 of 2 policy files are invalid",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr does not contain %q:\n%s", want, stderr)
		}
	}
	if strings.Contains(stderr, "\x1b[") {
		t.Errorf("stderr has color escapes:\n%q", stderr)
	}
}

func TestCheckRefusesWhatIsNotAPolicy(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.hcl")
	binary := writePolicy(t, "binary.hcl", "device \"x\" {}\x00\x00")
	_, stderr, code := runCheckWith(t, nil, missing, dir, binary)
	if code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	for _, want := range []string{
		missing + ": read policy: open " + missing + ": no such file or directory",
		dir + ": read policy " + dir + ": is a directory: policy: not a regular file",
		"Error: Binary policy file",
		"criguard: 3 of 3 policy files are invalid",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr does not contain %q:\n%s", want, stderr)
		}
	}
}

func TestCheckUsage(t *testing.T) {
	_, stderr, code := runCheckWith(t, nil)
	if code != 2 || !strings.Contains(stderr, "Usage: criguard check [--host] FILE...") {
		t.Errorf("check without a file = %d, %q; want 2 and usage", code, stderr)
	}
	if _, _, code := runCheckWith(t, nil, "--no-such-flag", "x.hcl"); code != 2 {
		t.Errorf("check with a bad flag = %d, want 2", code)
	}
}

// fakeHost resolves the devices it knows.
type fakeHost struct {
	devices map[string]string
	ioErr   error
}

func (h fakeHost) ResolveDevice(spec string) (string, error) {
	if d, ok := h.devices[spec]; ok {
		return d, nil
	}
	return "", fmt.Errorf("resolve %s: %w", spec, os.ErrNotExist)
}

func (h fakeHost) IOSupport() (string, error) {
	if h.ioErr != nil {
		return "", h.ioErr
	}
	return "cgroup v2, v2 io.max", nil
}

const hostPolicy = `
device "data" {
  path = "/var/lib/containerd"
}
class "bulk" {
  io {
    device    = "data"
    write_bps = "40MiB"
  }
  io {
    device   = "8:16"
    read_bps = "10MiB"
  }
}
`

func TestCheckHost(t *testing.T) {
	path := writePolicy(t, "policy.hcl", hostPolicy)
	host := fakeHost{devices: map[string]string{"/var/lib/containerd": "8:0", "8:16": "8:16"}}
	stdout, stderr, code := runCheckWith(t, host, "--host", path)
	want := path + ": ok: 1 device, 1 class, 0 rules, annotations disabled; host: cgroup v2, v2 io.max; devices data=8:0 8:16=8:16\n"
	if code != 0 || stdout != want {
		t.Errorf("check --host = %d\nstdout: %s\nwant:   %s\nstderr: %s", code, stdout, want, stderr)
	}

	host = fakeHost{devices: map[string]string{"8:16": "8:16"}, ioErr: errors.New("no io controller")}
	stdout, stderr, code = runCheckWith(t, host, "--host", path)
	if code != 1 || stdout != "" {
		t.Errorf("check --host on a host without the device = %d, stdout %q; want 1 and nothing", code, stdout)
	}
	for _, want := range []string{
		path + ": this host cannot throttle I/O: no io controller",
		path + `: device "data" (/var/lib/containerd) is not a block device on this host: resolve /var/lib/containerd: file does not exist`,
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr does not contain %q:\n%s", want, stderr)
		}
	}
}

// /proc is on every Linux host and never on a block device.
func TestCheckHostRealResolverRefusesAPseudoFilesystem(t *testing.T) {
	path := writePolicy(t, "policy.hcl", `
device "proc" {
  path = "/proc"
}
class "c" {
  io {
    device    = "proc"
    write_bps = 1
  }
}
`)
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"check", "--host", path}, &out, &errOut)
	if code := exitCode(err, &errOut); code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	want := path + `: device "proc" (/proc) is not a block device on this host: cgroup: path is on a filesystem without a block device`
	if !strings.Contains(errOut.String(), want) {
		t.Errorf("stderr does not contain %q:\n%s", want, errOut.String())
	}
}

func TestCheckThroughRun(t *testing.T) {
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"check", "../../examples/namespace-budgets.hcl"}, &out, &errOut)
	if err != nil || out.String() != "../../examples/namespace-budgets.hcl: ok: 1 device, 3 classes, 3 rules, annotations disabled\n" {
		t.Errorf("criguard check = %v, %q, %q", err, out.String(), errOut.String())
	}
}
