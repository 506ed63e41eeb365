package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The node's own settings file must not leak into the tests of the subcommands.
func TestMain(m *testing.M) {
	if _, set := os.LookupEnv("CRIGUARD_SETTINGS"); !set {
		os.Setenv("CRIGUARD_SETTINGS", "")
	}
	os.Exit(m.Run())
}

// explain, status and top read the daemon's settings file under the environment and
// the flags: `criguard status` on a node looks where criguard.service does.
func TestStandaloneFlagsReadTheDaemonsSettings(t *testing.T) {
	path := filepath.Join(t.TempDir(), "criguard")
	if err := os.WriteFile(path, []byte(`# written by the operator
CRIGUARD_RUNTIME_ENDPOINT="unix:///run/containerd2/containerd.sock"
CRIGUARD_STATE_DIR=/var/lib/criguard-file
; systemd's other comment
CRIGUARD_LISTEN=/run/criguard/criguard.sock
CRIGUARD_RESOLVER='containerd'
`), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CRIGUARD_SETTINGS", path)
	t.Setenv("CRIGUARD_STATE_DIR", "/var/lib/criguard-env")
	fs, cfg, _ := standaloneFlags("status", os.Stderr, "table")
	if err := parseStandaloneFlags(fs, []string{"--resolver", "proc"}); err != nil {
		t.Fatal(err)
	}
	if cfg.runtimeEndpoint != "unix:///run/containerd2/containerd.sock" {
		t.Errorf("runtime endpoint %q: the file's (quotes removed) wanted", cfg.runtimeEndpoint)
	}
	if cfg.stateDir != "/var/lib/criguard-env" {
		t.Errorf("state dir %q: the environment must win over the file", cfg.stateDir)
	}
	if cfg.resolver != "proc" {
		t.Errorf("resolver %q: the command line must win over the file", cfg.resolver)
	}
}

func TestStandaloneFlagsSettingsFileErrors(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("CRIGUARD_SETTINGS", filepath.Join(dir, "missing"))
	fs, _, _ := standaloneFlags("status", os.Stderr, "table")
	if err := parseStandaloneFlags(fs, nil); err != nil {
		t.Errorf("a missing settings file is no error: %v", err)
	}

	for name, body := range map[string]string{
		"no equals":    "CRIGUARD_STATE_DIR /x\n",
		"bad duration": "\nCRIGUARD_INTERVAL=soon\n",
	} {
		path := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Setenv("CRIGUARD_SETTINGS", path)
		fs, _, _ := standaloneFlags("top", os.Stderr, "table")
		fs.Duration("interval", time.Second, "top's")
		err := parseStandaloneFlags(fs, nil)
		var exit *exitError
		if !errors.As(err, &exit) || exit.code != 2 || !strings.Contains(err.Error(), path+":") {
			t.Errorf("%s: got %v, want exit 2 naming %s:LINE", name, err, path)
		}
	}
}
