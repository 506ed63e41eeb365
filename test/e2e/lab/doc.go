// Package lab starts real container runtimes for criguard's end-to-end and conformance
// suites: containerd (CRI built in), dockerd behind cri-dockerd, a local image registry,
// criguard itself, and the crictl CLI. Every instance lives in its own directories and
// sockets, so tests never touch a system runtime and may run side by side; every start
// registers a cleanup that stops the processes, unmounts and removes what they made.
//
// The binaries come from test/e2e/lab/setup.sh (`make lab`), which installs Debian's
// runtimes and builds crictl, critest, cri-dockerd and the local images into
// test/e2e/.cache. A missing tool fails the test with a message naming `make lab`.
//
// Typical use:
//
//	ctrd := lab.Containerd(t)
//	cg := lab.Criguard(t, ctrd.Endpoint)
//	pod := lab.NewPod(t, "web", "e2e") // burstable, host network, random UID
//	podID := lab.RunPod(t, cg.Endpoint, pod)
//	id := lab.StartContainer(t, cg.Endpoint, podID, pod, &lab.Container{Name: "app", Command: []string{"sleep", "3600"}})
//	lab.WaitContainerState(t, cg.Endpoint, id, "CONTAINER_RUNNING", 30*time.Second)
//
// All functions must run as root.
package lab
