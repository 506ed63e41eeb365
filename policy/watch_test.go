package policy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
)

// versionPolicy is a valid policy whose only class is named after version.
func versionPolicy(version string) string {
	return fmt.Sprintf("class %q {\n  io {\n    device    = \"8:0\"\n    write_bps = \"1MiB\"\n  }\n}\n", version)
}

func policyVersion(p *Policy) string {
	for name := range p.Classes {
		return name
	}
	return ""
}

// watchHarness runs a Watcher and records every reload result.
type watchHarness struct {
	t       *testing.T
	path    string
	w       *Watcher
	results chan ReloadResult
	done    chan error
}

func startWatcher(t *testing.T, path string) *watchHarness {
	t.Helper()
	h := &watchHarness{t: t, path: path, results: make(chan ReloadResult, 100), done: make(chan error, 1)}
	var err error
	h.w, err = NewWatcher(path, func(r ReloadResult) { h.results <- r })
	if err != nil {
		t.Fatalf("NewWatcher(%s): %v", path, err)
	}
	h.w.debounce = 20 * time.Millisecond
	h.w.pollInterval = 20 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	go func() { h.done <- h.w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-h.done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return h
}

// await reads results until one satisfies want, checking on each that the active
// policy is a good one, and fails after a few seconds.
func (h *watchHarness) await(step string, want func(ReloadResult) bool) ReloadResult {
	h.t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case r := <-h.results:
			if r.Err == nil && r.Policy == nil {
				h.t.Fatalf("%s: a good reload reported no policy", step)
			}
			if want(r) {
				return r
			}
		case <-timeout:
			h.t.Fatalf("%s: no matching reload result; Current is %q", step, h.activeVersion())
		}
	}
}

func (h *watchHarness) activeVersion() string {
	if p := h.w.Current(); p != nil {
		return policyVersion(p)
	}
	return ""
}

func (h *watchHarness) write(content string) {
	h.t.Helper()
	if err := os.WriteFile(h.path, []byte(content), 0o644); err != nil {
		h.t.Fatal(err)
	}
}

// renameReplace writes a new file beside the policy and renames it over, as vim and
// most config managers do.
func (h *watchHarness) renameReplace(content string) {
	h.t.Helper()
	tmp := h.path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		h.t.Fatal(err)
	}
	if err := os.Rename(tmp, h.path); err != nil {
		h.t.Fatal(err)
	}
}

func (h *watchHarness) awaitLoaded(step, version string) {
	h.t.Helper()
	h.await(step, loaded(version))
	if got := h.activeVersion(); got != version {
		h.t.Fatalf("%s: active policy %q, want %q", step, got, version)
	}
}

func loaded(version string) func(ReloadResult) bool {
	return func(r ReloadResult) bool {
		return r.Err == nil && r.Changed && policyVersion(r.Policy) == version
	}
}

func TestWatcherKeepsTheLastGoodPolicy(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.hcl")
	if err := os.WriteFile(path, []byte(versionPolicy("v1")), 0o644); err != nil {
		t.Fatal(err)
	}
	h := startWatcher(t, path)
	if got := h.activeVersion(); got != "v1" {
		t.Fatalf("after NewWatcher, active policy %q, want v1", got)
	}

	h.write(versionPolicy("v2"))
	h.awaitLoaded("write in place", "v2")

	h.renameReplace(versionPolicy("v3"))
	h.awaitLoaded("rename over", "v3")

	h.write("class \"v4\" {\n  io {\n    device = \"8:0\"\n    write_bsp = 1\n  }\n}\n")
	broken := h.await("break", func(r ReloadResult) bool { return r.Err != nil })
	var diags hcl.Diagnostics
	if !errors.As(broken.Err, &diags) || diags[0].Summary != "Unsupported argument" {
		t.Errorf("broken reload error = %v, want the diagnostics", broken.Err)
	}
	if broken.Changed || policyVersion(broken.Policy) != "v3" || h.activeVersion() != "v3" {
		t.Errorf("after a broken file: result %+v, active %q; want v3 kept", broken, h.activeVersion())
	}

	h.renameReplace(versionPolicy("v5"))
	h.awaitLoaded("fix", "v5")

	h.w.Reload()
	same := h.await("reload without change", func(r ReloadResult) bool { return true })
	if same.Err != nil || same.Changed || h.activeVersion() != "v5" {
		t.Errorf("Reload of an unchanged file = %+v, want unchanged v5", same)
	}

	// vim without backupcopy: move the original away, write a new file.
	if err := os.Rename(path, path+"~"); err != nil {
		t.Fatal(err)
	}
	h.write(versionPolicy("v6"))
	h.awaitLoaded("vim-style save", "v6")

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	removed := h.await("remove", func(r ReloadResult) bool { return r.Err != nil })
	if !errors.Is(removed.Err, ErrPolicyRemoved) || !errors.Is(removed.Err, os.ErrNotExist) || h.activeVersion() != "v6" {
		t.Errorf("after removal: %v, active %q; want ErrPolicyRemoved and v6 kept", removed.Err, h.activeVersion())
	}

	h.write(versionPolicy("v7"))
	h.awaitLoaded("recreate", "v7")
}

func TestWatcherStartsWithoutAFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.hcl")
	h := startWatcher(t, path)
	if h.w.Current() != nil {
		t.Fatalf("Current = %+v with no file, want nil", h.w.Current())
	}
	h.write(versionPolicy("v1"))
	h.awaitLoaded("file appears", "v1")
}

func TestWatcherWaitsForTheDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "etc", "criguard")
	path := filepath.Join(dir, "policy.hcl")
	h := startWatcher(t, path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	h.renameReplace(versionPolicy("v1"))
	h.awaitLoaded("directory and file appear", "v1")
}

func TestWatcherRefusesABrokenFirstFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.hcl")
	if err := os.WriteFile(path, []byte("rule \"x\" {\n  class = \"missing\"\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	w, err := NewWatcher(path, nil)
	var diags hcl.Diagnostics
	if err == nil || !errors.As(err, &diags) || w == nil || w.Current() != nil {
		t.Fatalf("NewWatcher(broken) = %v, %v; want the diagnostics and a watcher with no policy", w, err)
	}
	if _, err := NewWatcher(t.TempDir(), nil); !errors.Is(err, ErrPolicyNotRegular) {
		t.Errorf("NewWatcher(directory) = %v, want ErrPolicyNotRegular", err)
	}
}

func TestWatcherReloadFromAnotherGoroutine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.hcl")
	if err := os.WriteFile(path, []byte(versionPolicy("v1")), 0o644); err != nil {
		t.Fatal(err)
	}
	h := startWatcher(t, path)
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			h.w.Reload()
			_ = h.w.Current()
		})
	}
	wg.Wait()
	r := h.await("SIGHUP", func(ReloadResult) bool { return true })
	if r.Err != nil || r.Changed || policyVersion(r.Policy) != "v1" {
		t.Errorf("Reload = %+v, want unchanged v1", r)
	}
}

// A service that starts on a broken file runs without a policy and picks up
// the fix: the watcher NewWatcher returns with the error still watches.
func TestWatcherStartedOnABrokenFileLoadsTheFix(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.hcl")
	if err := os.WriteFile(path, []byte("class {"), 0o644); err != nil {
		t.Fatal(err)
	}
	results := make(chan ReloadResult, 10)
	w, err := NewWatcher(path, func(r ReloadResult) { results <- r })
	if err == nil || w == nil {
		t.Fatalf("NewWatcher(broken) = %v, %v", w, err)
	}
	w.debounce = 20 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	if err := os.WriteFile(path, []byte(versionPolicy("fixed")), 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(5 * time.Second)
	for {
		select {
		case r := <-results:
			if r.Err == nil && r.Changed && r.Policy != nil && r.Policy.Classes["fixed"] != nil {
				if w.Current() != r.Policy {
					t.Fatal("Current is not the policy just loaded")
				}
				return
			}
		case <-deadline:
			t.Fatalf("the fixed file was not loaded; current = %v", w.Current())
		}
	}
}

// The poll stops while the directory is watched and comes back when the directory
// goes: a directory removed and made again is found, and its file loaded.
func TestWatcherFindsTheDirectoryAgain(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "criguard")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "policy.hcl")
	if err := os.WriteFile(path, []byte(versionPolicy("v1")), 0o644); err != nil {
		t.Fatal(err)
	}
	h := startWatcher(t, path)
	if got := h.activeVersion(); got != "v1" {
		t.Fatalf("at start: active policy %q, want v1", got)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // several polls of 20 ms find nothing
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	h.renameReplace(versionPolicy("v2"))
	h.awaitLoaded("directory made again", "v2")
}
