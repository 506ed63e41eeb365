package lab

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// DockerInstance is a private dockerd with cri-dockerd in front of it.
type DockerInstance struct {
	// Endpoint is cri-dockerd's CRI endpoint, unix://<Socket>.
	Endpoint string
	Socket   string
	// DockerEndpoint is dockerd's API endpoint, unix://<DockerSocket>.
	DockerEndpoint string
	DockerSocket   string
	// DataRoot (on the root disk) and ExecRoot are dockerd's directories.
	DataRoot, ExecRoot string
	// BusyboxImage and PauseImage are loaded and ready to run.
	BusyboxImage, PauseImage string

	dockerd, criDockerd *process
}

// oomWrapper is the runtime dockerd uses instead of runc: Docker asks for
// oomScoreAdj -998 on sandboxes, which this process may not set (no
// CAP_SYS_RESOURCE, LAB.md), so a negative value becomes 0 before runc reads it.
const oomWrapper = `#!/bin/sh
prev=
for arg in "$@"; do
	if [ "$prev" = "--bundle" ] || [ "$prev" = "-b" ]; then
		if [ -f "$arg/config.json" ]; then
			sed -i 's/"oomScoreAdj":[[:space:]]*-[0-9]*/"oomScoreAdj":0/' "$arg/config.json"
		fi
	fi
	prev=$arg
done
exec %s "$@"
`

// Docker starts dockerd (own data root, exec root and socket, cgroupfs driver, no
// bridge or iptables, the oomScoreAdj wrapper as default runtime), imports the busybox
// and pause images, and starts cri-dockerd in front of it. A cleanup removes every pod,
// stops both daemons and removes their directories.
func Docker(t testing.TB) *DockerInstance {
	t.Helper()
	RequireRoot(t)
	dockerdBin := LookPath(t, "dockerd")
	runcBin := LookPath(t, "runc")
	criDockerdBin := Bin(t, "cri-dockerd")
	rootfs := ImageFile(t, "rootfs.tar")

	runDir, dataDir := instanceDirs(t, "dock")
	d := &DockerInstance{
		Socket:       filepath.Join(runDir, "cri-dockerd.sock"),
		DockerSocket: filepath.Join(runDir, "docker.sock"),
		DataRoot:     filepath.Join(dataDir, "docker"),
		ExecRoot:     filepath.Join(runDir, "exec"),
		BusyboxImage: BusyboxImage,
		PauseImage:   PauseImage,
	}
	d.Endpoint = "unix://" + d.Socket
	d.DockerEndpoint = "unix://" + d.DockerSocket

	wrapper := filepath.Join(runDir, "lab-runc")
	if err := os.WriteFile(wrapper, []byte(fmt.Sprintf(oomWrapper, runcBin)), 0o755); err != nil {
		t.Fatalf("lab: write %s: %v", wrapper, err)
	}
	daemonJSON := filepath.Join(runDir, "daemon.json")
	if err := os.WriteFile(daemonJSON, []byte("{}\n"), 0o644); err != nil {
		t.Fatalf("lab: write %s: %v", daemonJSON, err)
	}
	dockerd, err := startProcess("dockerd", filepath.Join(dataDir, "dockerd.log"), []string{dockerdBin,
		"--config-file", daemonJSON,
		"--data-root", d.DataRoot,
		"--exec-root", d.ExecRoot,
		"--pidfile", filepath.Join(runDir, "docker.pid"),
		"-H", d.DockerEndpoint,
		"--iptables=false", "--ip-masq=false", "--ip-forward=false", "--bridge=none", "--userland-proxy=false",
		"--exec-opt", "native.cgroupdriver=cgroupfs",
		"--oom-score-adjust", "0",
		"--add-runtime", "lab=" + wrapper, "--default-runtime", "lab",
		"--storage-driver", "overlay2",
	}, nil)
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	d.dockerd = dockerd
	t.Cleanup(func() { d.stop(t) })
	if err := waitForSocket(d.DockerSocket, dockerd, startTimeout); err != nil {
		t.Fatalf("lab: dockerd: %v", err)
	}
	d.waitDockerReady(t)
	d.DockerCLI(t, "import", "--change", `CMD ["sh"]`, rootfs, d.BusyboxImage)
	// A trap so that the sandbox stops on SIGTERM instead of after the grace period.
	d.DockerCLI(t, "import", "--change", `ENTRYPOINT ["/bin/sh", "-c", "trap \"exit 0\" TERM; sleep 2147483647 & wait"]`, rootfs, d.PauseImage)

	criDockerd, err := startProcess("cri-dockerd", filepath.Join(dataDir, "cri-dockerd.log"), []string{criDockerdBin,
		"--docker-endpoint", d.DockerEndpoint,
		"--container-runtime-endpoint", d.Endpoint,
		"--cri-dockerd-root-directory", filepath.Join(dataDir, "cri-dockerd"),
		"--network-plugin=",
		"--pod-infra-container-image", d.PauseImage,
		"--streaming-bind-addr", "127.0.0.1",
	}, nil)
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	d.criDockerd = criDockerd
	if err := waitForSocket(d.Socket, criDockerd, startTimeout); err != nil {
		t.Fatalf("lab: cri-dockerd: %v", err)
	}
	return d
}

// waitDockerReady waits until the API answers (the socket opens before it does).
func (d *DockerInstance) waitDockerReady(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(startTimeout)
	for {
		_, err := d.dockerCLI(t, "version", "--format", "{{.Server.Version}}")
		if err == nil {
			return
		}
		if time.Now().After(deadline) || d.dockerd.exited() {
			t.Fatalf("lab: dockerd not ready: %v\nlog:\n%s", err, d.dockerd.logTail(40))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (d *DockerInstance) dockerCLI(t testing.TB, args ...string) (string, error) {
	t.Helper()
	argv := append([]string{LookPath(t, "docker"), "--host", d.DockerEndpoint}, args...)
	return run(context.Background(), argv...)
}

// DockerCLI runs the docker client against this dockerd and returns its trimmed stdout.
func (d *DockerInstance) DockerCLI(t testing.TB, args ...string) string {
	t.Helper()
	out, err := d.dockerCLI(t, args...)
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	return strings.TrimSpace(out)
}

// Log returns the last n lines of dockerd's and cri-dockerd's output.
func (d *DockerInstance) Log(n int) string {
	s := "dockerd:\n" + d.dockerd.logTail(n)
	if d.criDockerd != nil {
		s += "\ncri-dockerd:\n" + d.criDockerd.logTail(n)
	}
	return s
}

func (d *DockerInstance) stop(t testing.TB) {
	if t.Failed() {
		t.Logf("lab: docker logs:\n%s", d.Log(40))
	}
	if d.criDockerd != nil {
		if !d.criDockerd.exited() {
			RemoveAllPods(t, d.Endpoint)
		}
		d.criDockerd.stop(10 * time.Second)
	}
	if !d.dockerd.exited() {
		if ids, err := d.dockerCLI(t, "ps", "-aq"); err == nil && strings.TrimSpace(ids) != "" {
			if _, err := d.dockerCLI(t, append([]string{"rm", "-f"}, strings.Fields(ids)...)...); err != nil {
				t.Logf("lab: cleanup docker rm: %v", err)
			}
		}
	}
	if err, killed := d.dockerd.stop(30 * time.Second); killed {
		t.Logf("lab: dockerd did not stop on SIGTERM within 30s: killed (%v)", err)
	}
	// dockerd's own containerd and the shims are started with the exec root in their
	// command lines; they outlive a killed dockerd.
	killByCmdline(d.ExecRoot)
	removePendingCgroups()
}
