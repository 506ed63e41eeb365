package main

import (
	"strings"
	"testing"
	"time"
)

func TestModeLockRefusesASecondCriguardOnOneStateDir(t *testing.T) {
	dir := t.TempDir()
	plugin, err := lockMode(dir, "NRI plugin")
	if err != nil {
		t.Fatal(err)
	}
	_, err = lockMode(dir, "proxy")
	if err == nil {
		t.Fatal("the proxy took the lock the NRI plugin holds")
	}
	for _, want := range []string{"another criguard runs on this state dir", "NRI plugin, pid", "must not run at once"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	plugin.release()
	proxy, err := lockMode(dir, "proxy")
	if err != nil {
		t.Fatalf("lock after the holder released it: %v", err)
	}
	proxy.release()
}

func TestModeLockWithoutStateDirGuardsNothing(t *testing.T) {
	a, err := lockMode("", "proxy")
	if err != nil {
		t.Fatal(err)
	}
	b, err := lockMode("", "NRI plugin")
	if err != nil {
		t.Fatal(err)
	}
	a.release()
	b.release()
}

func TestNRIRefusesFailClosed(t *testing.T) {
	var stderr strings.Builder
	err := run(t.Context(), []string{"nri", "--fail-closed", "--state-dir", t.TempDir()}, &strings.Builder{}, &stderr)
	if code := exitCode(err, &stderr); code != 2 || !strings.Contains(stderr.String(), "--fail-closed is the proxy's alone") {
		t.Errorf("exit %d, stderr %q", code, stderr.String())
	}
}

func TestStatusNoteNamesTheRunningNRIPlugin(t *testing.T) {
	dir := t.TempDir()
	if note := kubeletNote(dir, time.Now()); !strings.Contains(note, "never been seen") {
		t.Errorf("no criguard ran: note %q", note)
	}
	lock, err := lockMode(dir, "NRI plugin")
	if err != nil {
		t.Fatal(err)
	}
	if note := kubeletNote(dir, time.Now()); !strings.Contains(note, "NRI plugin, pid") || !strings.Contains(note, "talks to the runtime directly") {
		t.Errorf("plugin running: note %q", note)
	}
	lock.release()
	if note := kubeletNote(dir, time.Now()); strings.Contains(note, "NRI plugin") {
		t.Errorf("plugin gone: note %q still names it", note)
	}
}
