package lab

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"text/template"
	"time"
)

// ContainerdInstance is a containerd with the CRI plugin, private to one test.
type ContainerdInstance struct {
	// Endpoint is the CRI endpoint, unix://<Socket>.
	Endpoint string
	// Socket is containerd's gRPC socket (CRI and containerd's own API).
	Socket string
	// Root and State are containerd's directories; Root is on the root disk.
	Root, State string
	// ConfigPath and LogPath are containerd's config file and output.
	ConfigPath, LogPath string
	// BusyboxImage and PauseImage are imported and ready to run.
	BusyboxImage, PauseImage string
	// Registry is the registry the CRI plugin pulls from, nil without WithRegistry.
	Registry *RegistryInstance
	// Handlers are the extra OCI runtimes of WithRuntimeHandler, by handler name.
	Handlers map[string]*OCIRuntime
	// NRISocket is the NRI socket plugins connect to (WithNRI), empty without.
	NRISocket string

	proc *process
}

type containerdOptions struct {
	registry *RegistryInstance
	cni      *CNIConfig
	v2       bool
	handlers []string
	nri      bool
}

// ContainerdOption changes how Containerd sets up its instance.
type ContainerdOption func(*containerdOptions)

// WithRegistry makes the CRI plugin pull every image of the registry's mirrored hosts
// (docker.io, registry.k8s.io, gcr.io, criguard.test) from r, over plain HTTP.
func WithRegistry(r *RegistryInstance) ContainerdOption {
	return func(o *containerdOptions) { o.registry = r }
}

// WithContainerd2 runs containerd 2 (built by setup.sh from the containerd/v2 module,
// with its own runc shim) instead of Debian's containerd 1.6: its CRI plugin has what
// 1.6 lacks, such as GetContainerEvents.
func WithContainerd2() ContainerdOption {
	return func(o *containerdOptions) { o.v2 = true }
}

// WithRuntimeHandler registers the OCI runtime name ("crun") as a CRI runtime handler
// of that name beside the default runc: the runc shim runs it as its BinaryName,
// through the lab's wrapper. Pods choose it with Pod.RuntimeHandler.
func WithRuntimeHandler(name string) ContainerdOption {
	return func(o *containerdOptions) { o.handlers = append(o.handlers, name) }
}

// WithNRI enables containerd 2's NRI on a socket of the instance's own (NRISocket),
// with empty plugin directories: only plugins that connect to it take part.
func WithNRI() ContainerdOption {
	return func(o *containerdOptions) { o.nri = true }
}

// CNIConfig is a bridge network for pods that do not use the host's network.
type CNIConfig struct {
	// Bridge is the bridge interface name (at most 15 bytes); empty picks a random one.
	Bridge string
	// Subnet is the pods' IPv4 range, e.g. 10.88.7.0/24; it lives only on the bridge,
	// which exists only on this machine. Empty picks a 10.88.X.0/24 no route uses yet,
	// so that runs side by side do not share one.
	Subnet string
}

// WithCNI gives pods a network through the bridge and host-local plugins of Debian's
// containernetworking-plugins. Without it only hostNetwork pods can run.
func WithCNI(c CNIConfig) ContainerdOption {
	return func(o *containerdOptions) { o.cni = &c }
}

var containerdConfig = template.Must(template.New("config.toml").Parse(`version = 2
root = "{{.Root}}"
state = "{{.State}}"
oom_score = 0

[grpc]
  address = "{{.Socket}}"

[ttrpc]
  address = "{{.Socket}}.ttrpc"

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{{.PauseImage}}"
  # The test process lacks CAP_SYS_RESOURCE: lowering oom_score_adj fails (LAB.md).
  restrict_oom_score_adj = true
  # Port 0: every instance gets its own streaming port for exec, attach, port-forward.
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        # cgroupfs driver, as kubelet's --cgroup-driver=cgroupfs expects.
        SystemdCgroup = false
{{range .Handlers}}
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{{.Name}}]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{{.Name}}.options]
        BinaryName = "{{.Wrapper}}"
        SystemdCgroup = false
{{end}}
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{{.CNIConfDir}}"

  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{{.RegistryHostsDir}}"
`))

// containerd2Config is the same setup in containerd 2's configuration format.
var containerd2Config = template.Must(template.New("config.toml").Parse(`version = 3
root = "{{.Root}}"
state = "{{.State}}"
oom_score = 0

[grpc]
  address = "{{.Socket}}"

[ttrpc]
  address = "{{.Socket}}.ttrpc"

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"

  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "{{.PauseImage}}"

  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = "{{.RegistryHostsDir}}"

[plugins.'io.containerd.cri.v1.runtime']
  enable_selinux = false
  restrict_oom_score_adj = true

  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"

    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        SystemdCgroup = false
{{range .Handlers}}
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.{{.Name}}]
      runtime_type = "io.containerd.runc.v2"

      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.{{.Name}}.options]
        BinaryName = "{{.Wrapper}}"
        SystemdCgroup = false
{{end}}
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "{{.CNIConfDir}}"

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
{{if .NRISocket}}
[plugins.'io.containerd.nri.v1.nri']
  disable = false
  socket_path = "{{.NRISocket}}"
  plugin_path = "{{.NRIDir}}/plugins"
  plugin_config_path = "{{.NRIDir}}/conf.d"
{{end}}`))

// registryHosts makes containerd resolve host through the lab registry (plain HTTP).
var registryHosts = template.Must(template.New("hosts.toml").Parse(`server = "http://{{.}}"

[host."http://{{.}}"]
  capabilities = ["pull", "resolve"]
`))

var cniConfig = template.Must(template.New("cni.conflist").Parse(`{
  "cniVersion": "0.4.0",
  "name": "{{.Bridge}}",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "{{.Bridge}}",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "{{.Subnet}}"}]],
        "dataDir": "{{.DataDir}}"
      }
    }
  ]
}
`))

// Containerd starts a private containerd (own root, state and socket; CRI plugin with
// the cgroupfs driver and overlayfs), imports the local busybox and pause images, and
// registers a cleanup that removes every pod, stops containerd and its shims, and
// removes its directories.
func Containerd(t testing.TB, opts ...ContainerdOption) *ContainerdInstance {
	t.Helper()
	RequireRoot(t)
	var o containerdOptions
	for _, opt := range opts {
		opt(&o)
	}
	binary := LookPath(t, "containerd")
	if o.v2 {
		binary = Bin(t, "containerd2")
		Bin(t, "containerd-shim-runc-v2")
	}
	ctr := LookPath(t, "ctr")
	busyboxTar := ImageFile(t, "busybox.oci.tar")
	pauseTar := ImageFile(t, "pause.oci.tar")

	runDir, dataDir := instanceDirs(t, "ctrd")
	c := &ContainerdInstance{
		Socket:       filepath.Join(runDir, "containerd.sock"),
		Root:         filepath.Join(dataDir, "root"),
		State:        filepath.Join(runDir, "state"),
		ConfigPath:   filepath.Join(runDir, "config.toml"),
		LogPath:      filepath.Join(dataDir, "containerd.log"),
		BusyboxImage: BusyboxImage,
		PauseImage:   PauseImage,
		Registry:     o.registry,
		Handlers:     map[string]*OCIRuntime{},
	}
	c.Endpoint = "unix://" + c.Socket
	var handlers []*OCIRuntime
	for _, name := range o.handlers {
		r := newOCIRuntime(t, runDir, name)
		c.Handlers[name] = r
		handlers = append(handlers, r)
	}
	cniConfDir := filepath.Join(runDir, "cni")
	if err := os.MkdirAll(cniConfDir, 0o755); err != nil {
		t.Fatalf("lab: create %s: %v", cniConfDir, err)
	}
	if o.cni != nil {
		writeCNI(t, o.cni, cniConfDir, runDir)
	}
	hostsDir := filepath.Join(runDir, "registry-hosts")
	if o.registry != nil {
		for _, host := range o.registry.MirroredHosts {
			dir := filepath.Join(hostsDir, host)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatalf("lab: create %s: %v", dir, err)
			}
			writeTemplate(t, registryHosts, filepath.Join(dir, "hosts.toml"), o.registry.Addr)
		}
	}
	nriDir := filepath.Join(runDir, "nri")
	if o.nri {
		if !o.v2 {
			t.Fatalf("lab: WithNRI needs WithContainerd2: containerd 1.6 has only NRI v0.1")
		}
		c.NRISocket = filepath.Join(nriDir, "nri.sock")
		for _, d := range []string{"plugins", "conf.d"} {
			if err := os.MkdirAll(filepath.Join(nriDir, d), 0o755); err != nil {
				t.Fatalf("lab: %v", err)
			}
		}
	}
	data := map[string]any{
		"Root": c.Root, "State": c.State, "Socket": c.Socket, "PauseImage": c.PauseImage,
		"CNIConfDir": cniConfDir, "RegistryHostsDir": hostsDir, "Handlers": handlers,
		"NRISocket": c.NRISocket, "NRIDir": nriDir,
	}
	config, env := containerdConfig, []string(nil)
	if o.v2 {
		// containerd finds its shim on PATH: the one built with it comes first.
		config, env = containerd2Config, []string{"PATH=" + filepath.Dir(binary) + ":" + os.Getenv("PATH")}
	}
	writeTemplate(t, config, c.ConfigPath, data)

	proc, err := startProcess("containerd", c.LogPath, []string{binary, "--config", c.ConfigPath}, env)
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	c.proc = proc
	t.Cleanup(func() { c.stop(t) })
	if err := waitForSocket(c.Socket, proc, startTimeout); err != nil {
		t.Fatalf("lab: containerd: %v", err)
	}
	for _, tar := range []string{busyboxTar, pauseTar} {
		mustRun(t, ctr, "--address", c.Socket, "--namespace", "k8s.io", "images", "import", tar)
	}
	c.waitCRIReady(t)
	return c
}

// waitCRIReady waits until the CRI plugin answers and sees both images.
func (c *ContainerdInstance) waitCRIReady(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(startTimeout)
	for {
		out, err := CrictlErr(t, c.Endpoint, "images", "-q")
		if err == nil && strings.Count(out, "sha256:") >= 2 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("lab: containerd CRI not ready after %s: %v %s\nlog:\n%s", startTimeout, err, out, c.proc.logTail(40))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Ctr runs containerd's ctr client in the CRI namespace and returns its stdout.
func (c *ContainerdInstance) Ctr(t testing.TB, args ...string) string {
	t.Helper()
	argv := append([]string{LookPath(t, "ctr"), "--address", c.Socket, "--namespace", "k8s.io"}, args...)
	return mustRun(t, argv...)
}

// Log returns the last n lines of containerd's output.
func (c *ContainerdInstance) Log(n int) string { return c.proc.logTail(n) }

// stop removes every pod through CRI, stops containerd, then ends the shims that are
// still running (they outlive containerd by design).
func (c *ContainerdInstance) stop(t testing.TB) {
	if t.Failed() {
		t.Logf("lab: containerd log tail (%s):\n%s", c.LogPath, c.proc.logTail(30))
	}
	if !c.proc.exited() {
		RemoveAllPods(t, c.Endpoint)
	}
	if err, killed := c.proc.stop(15 * time.Second); killed {
		t.Logf("lab: containerd did not stop on SIGTERM within 15s: killed (%v)", err)
	}
	killByCmdline(c.Socket)
	removePendingCgroups()
}

func writeTemplate(t testing.TB, tmpl *template.Template, path string, data any) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatalf("lab: create %s: %v", path, err)
	}
	defer f.Close()
	if err := tmpl.Execute(f, data); err != nil {
		t.Fatalf("lab: write %s: %v", path, err)
	}
}

// RemoveAllPods stops and removes every pod sandbox of a CRI endpoint (best effort,
// errors are logged): the cleanup that kubelet would do.
func RemoveAllPods(t testing.TB, endpoint string) {
	t.Helper()
	out, err := CrictlErr(t, endpoint, "pods", "-q")
	if err != nil {
		t.Logf("lab: list pods of %s for cleanup: %v", endpoint, err)
		return
	}
	for _, id := range strings.Fields(out) {
		if _, err := CrictlErr(t, endpoint, "stopp", id); err != nil {
			t.Logf("lab: cleanup stopp %s: %v", id, err)
		}
		if _, err := CrictlErr(t, endpoint, "rmp", "-f", id); err != nil {
			t.Logf("lab: cleanup rmp %s: %v", id, err)
		}
	}
}

// String names the instance in test logs.
func (c *ContainerdInstance) String() string {
	return fmt.Sprintf("containerd(%s)", c.Socket)
}

// freeSubnet picks a 10.88.X.0/24 that no IPv4 route of this machine uses.
func freeSubnet(t testing.TB) string {
	t.Helper()
	routes := mustRun(t, LookPath(t, "ip"), "-4", "route", "show")
	start, _ := strconv.ParseUint(randomID(1), 16, 8) // a random start spreads concurrent picks
	for i := 0; i < 100; i++ {
		subnet := fmt.Sprintf("10.88.%d.0/24", 100+(int(start)+i)%100)
		if !strings.Contains(routes, subnet) {
			return subnet
		}
	}
	t.Fatalf("lab: no free 10.88.X.0/24 among the routes:\n%s", routes)
	return ""
}
