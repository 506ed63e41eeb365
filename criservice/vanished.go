package criservice

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"syscall"

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

// tornDown tells a teardown race from a failure. A cgroup that is gone while its
// container still runs (or its pod is still ready) is a real failure, a path
// translated wrong for one; gone because the runtime is removing it is not. The
// runtime is asked again, and only a container no longer running makes err
// ErrTornDown.
func (s *Service) tornDown(ctx context.Context, scope, id string, err error) error {
	if err == nil || vanished(err) || !cgroupGone(err) {
		return err
	}
	running, checkErr := s.stillRunning(ctx, scope, id)
	if checkErr != nil || running {
		return err
	}
	return fmt.Errorf("%w: %s %s: %w", ErrTornDown, scope, id, err)
}

// stillRunning asks the runtime whether a container runs, or a pod is ready, now.
func (s *Service) stillRunning(ctx context.Context, scope, id string) (bool, error) {
	ctx, cancel := s.callContext(ctx)
	defer cancel()
	if scope == "pod" {
		resp, err := s.opts.Runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{Id: id}})
		if err != nil {
			return false, err
		}
		return len(resp.Items) == 1 && resp.Items[0].State == runtimeapi.PodSandboxState_SANDBOX_READY, nil
	}
	resp, err := s.opts.Runtime.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{Id: id}})
	if err != nil {
		return false, err
	}
	return len(resp.Containers) == 1 && resp.Containers[0].State == runtimeapi.ContainerState_CONTAINER_RUNNING, nil
}
