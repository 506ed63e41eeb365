package main

import (
	"os"
	"runtime/debug"
	"testing"
)

func TestDaemonGCPercentYieldsToGOGC(t *testing.T) {
	was, set := os.LookupEnv("GOGC")
	prev := debug.SetGCPercent(100)
	t.Cleanup(func() {
		debug.SetGCPercent(prev)
		if set {
			os.Setenv("GOGC", was)
		} else {
			os.Unsetenv("GOGC")
		}
	})

	os.Unsetenv("GOGC")
	setDaemonGCPercent()
	if got := debug.SetGCPercent(100); got != daemonGCPercent {
		t.Errorf("GOGC unset: GC percent %d, want %d", got, daemonGCPercent)
	}

	os.Setenv("GOGC", "200")
	setDaemonGCPercent()
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("GOGC set: GC percent changed to %d, want it left at 100", got)
	}
}
