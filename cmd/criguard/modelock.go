package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// modeLockFile, in the state dir, is held by the running criguard, the proxy or
// the NRI plugin: two of them on one node would both write one cgroup, each
// resetting the other's limits as foreign.
const modeLockFile = "criguard.lock"

// modeLock is the state dir's lock, held until the process ends (the kernel drops
// it with the process, so a crash never leaves it behind).
type modeLock struct{ f *os.File }

// lockMode takes the state dir's lock for mode ("proxy" or "NRI plugin"), or says
// which criguard holds it. With no state dir there is nothing shared to guard.
func lockMode(stateDir, mode string) (*modeLock, error) {
	if stateDir == "" {
		return &modeLock{}, nil
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	path := filepath.Join(stateDir, modeLockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("mode lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("another criguard runs on this state dir (%s: %s): the proxy and the NRI plugin must not run at once on one node, or both would write the same cgroups; stop the other one first",
				path, strings.TrimSpace(string(holder)))
		}
		return nil, fmt.Errorf("mode lock %s: %w", path, err)
	}
	// Who holds it, for the message the next one prints.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(fmt.Sprintf("%s, pid %d\n", mode, os.Getpid())), 0)
	}
	return &modeLock{f: f}, nil
}

func (l *modeLock) release() {
	if l != nil && l.f != nil {
		l.f.Close()
	}
}

// runningMode is what the state dir's lock says of the criguard holding it ("NRI
// plugin, pid 42"), and false when none holds it now.
func runningMode(stateDir string) (string, bool) {
	path := filepath.Join(stateDir, modeLockFile)
	f, err := os.Open(path)
	if err != nil {
		return "", false
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); err == nil {
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
		return "", false // nobody holds it: what it says is a past run's
	}
	holder, _ := os.ReadFile(path)
	return strings.TrimSpace(string(holder)), true
}
