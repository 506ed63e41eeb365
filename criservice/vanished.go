package criservice

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"syscall"
	"time"

	"github.com/criguard/criguard/cgroup"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// vanished reports whether err says the container or pod went away while criguard
// worked on it: logged at info and not counted as a failed throttle.
func vanished(err error) bool {
	return errors.Is(err, ErrUnknownContainer) || errors.Is(err, ErrTornDown)
}

// cgroupGone reports whether err is what a removed cgroup gives: its directory or
// files no longer there (ENOENT), or a file opened before the removal (ENODEV).
func cgroupGone(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENODEV)
}

// mayHaveExited reports whether err is what a container that has already exited
// gives, whichever path met it: its cgroup gone (Docker's systemd scope is removed
// with its last process); io no longer delegated by its pod's slice (systemd takes
// the controller back once the slice's only container is gone, as with CRI-O); or
// no cgroups path from a runtime that drops it with the process.
func mayHaveExited(err error) bool {
	return cgroupGone(err) || errors.Is(err, cgroup.ErrIONotEnabled) || errors.Is(err, ErrNoCgroupsPath)
}

// exitSettle is how long a runtime may still call running a container whose cgroup
// is already gone: dockerd learns of an exit from an event that trails the kernel's
// removal of the scope. exitRecheck is how often it is asked in that time.
const (
	exitSettle  = 500 * time.Millisecond
	exitRecheck = 25 * time.Millisecond
)

// tornDown tells a teardown race from a failure. A cgroup that is gone while its
// container still runs (or its pod is still ready) is a real failure, a path
// translated wrong for one; gone because the container exited or the runtime is
// removing it is not. The runtime is asked, again for up to exitSettle while it
// still says running, and only a container no longer running makes err
// ErrTornDown.
func (s *store) tornDown(ctx context.Context, scope, id string, err error) error {
	if err == nil || vanished(err) || !mayHaveExited(err) {
		return err
	}
	settled := time.Now().Add(exitSettle)
	for {
		running, checkErr := s.stillRunning(ctx, scope, id)
		if checkErr == nil && !running {
			return fmt.Errorf("%w: %s %s: %w", ErrTornDown, scope, id, err)
		}
		if time.Now().After(settled) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(exitRecheck):
		}
	}
}

// stillRunning asks the runtime whether a container runs, or a pod is ready, now.
func (s *store) stillRunning(ctx context.Context, scope, id string) (bool, error) {
	ctx, cancel := s.callContext(ctx)
	defer cancel()
	if scope == "pod" {
		resp, err := s.runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{Id: id}})
		if err != nil {
			return false, err
		}
		return len(resp.Items) == 1 && resp.Items[0].State == runtimeapi.PodSandboxState_SANDBOX_READY, nil
	}
	resp, err := s.runtime.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{Id: id}})
	if err != nil {
		return false, err
	}
	return len(resp.Containers) == 1 && resp.Containers[0].State == runtimeapi.ContainerState_CONTAINER_RUNNING, nil
}
