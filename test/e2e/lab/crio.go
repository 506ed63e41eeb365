package lab

import (
	"context"
	_ "embed" // the OCI runtime wrapper script
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"text/template"
	"time"
)

// CRIOInstance is a CRI-O private to one test, with runc and crun as runtime handlers.
type CRIOInstance struct {
	// Endpoint is the CRI endpoint, unix://<Socket>.
	Endpoint string
	Socket   string
	// Root (images and containers, on the root disk) and RunRoot are CRI-O's storage.
	Root, RunRoot string
	// ConfigPath and LogPath are CRI-O's config file and output.
	ConfigPath, LogPath string
	// BusyboxImage and PauseImage are pulled and ready to run.
	BusyboxImage, PauseImage string
	// Registry is where CRI-O pulls every image from.
	Registry *RegistryInstance
	// Handlers are the OCI runtimes by runtime handler name.
	Handlers map[string]*OCIRuntime
	// NRISocket is the NRI socket plugins connect to (WithCRIONRI), empty without.
	NRISocket string

	proc *process
}

type crioOptions struct {
	registry *RegistryInstance
	cni      *CNIConfig
	nri      bool
}

// CRIOOption changes how CRIO sets up its instance.
type CRIOOption func(*crioOptions)

// WithCRIORegistry makes CRI-O pull from r (which it otherwise starts itself), for
// tests that push images of their own.
func WithCRIORegistry(r *RegistryInstance) CRIOOption {
	return func(o *crioOptions) { o.registry = r }
}

// WithCRIOCNI gives pods a network through a bridge, as WithCNI does for containerd.
func WithCRIOCNI(c CNIConfig) CRIOOption {
	return func(o *crioOptions) { o.cni = &c }
}

// WithCRIONRI enables CRI-O's NRI on a socket of the instance's own (NRISocket), with
// empty plugin directories: only plugins that connect to it take part.
func WithCRIONRI() CRIOOption {
	return func(o *crioOptions) { o.nri = true }
}

// OCIRuntime is an OCI runtime the lab registered with a CRI runtime as a handler,
// through a wrapper script with this machine's fixes.
type OCIRuntime struct {
	// Name is the handler name (runc, crun), Binary the real runtime.
	Name, Binary string
	// Wrapper is the script the CRI runtime calls instead of Binary.
	Wrapper string
	// CreatedLog lists "create ID" (or "run ID") for each container the wrapper
	// created: which runtime ran a container.
	CreatedLog string
}

// Created reports whether this runtime created container (or sandbox) id.
func (r *OCIRuntime) Created(id string) bool {
	data, err := os.ReadFile(r.CreatedLog)
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[1] == id {
			return true
		}
	}
	return false
}

//go:embed ociwrapper.sh.tmpl
var ociWrapperText string

var ociWrapper = template.Must(template.New("ociwrapper").Parse(ociWrapperText))

// newOCIRuntime writes the wrapper of runtime name (runc or crun) into dir.
func newOCIRuntime(t testing.TB, dir, name string) *OCIRuntime {
	t.Helper()
	r := &OCIRuntime{
		Name:       name,
		Binary:     LookPath(t, name),
		Wrapper:    filepath.Join(dir, "lab-"+name),
		CreatedLog: filepath.Join(dir, "lab-"+name+".created"),
	}
	unified := ""
	if name == "crun" {
		unified = hybridUnifiedMount(t)
	}
	writeTemplate(t, ociWrapper, r.Wrapper, map[string]any{
		"Runtime": r.Binary, "Log": r.CreatedLog, "Crun": name == "crun", "Unified": unified,
	})
	if err := os.Chmod(r.Wrapper, 0o755); err != nil {
		t.Fatalf("lab: %v", err)
	}
	return r
}

// hybridUnifiedMount is the cgroup2 mount of a hybrid host (v1 controllers beside
// it), empty on a pure v1 or v2 host.
func hybridUnifiedMount(t testing.TB) string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatalf("lab: read mountinfo: %v", err)
	}
	var v1, unified string
	for _, line := range strings.Split(string(data), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		fields, fs := strings.Fields(pre), strings.Fields(post)
		if !ok || len(fields) < 5 || len(fs) == 0 {
			continue
		}
		switch fs[0] {
		case "cgroup":
			v1 = fields[4]
		case "cgroup2":
			unified = unescapeMount(fields[4])
		}
	}
	if v1 == "" {
		return ""
	}
	return unified
}

var crioConfig = template.Must(template.New("crio.conf").Parse(`[crio]
root = "{{.Root}}"
runroot = "{{.RunRoot}}"
storage_driver = "overlay"
log_dir = "{{.RunDir}}/pods"
version_file = "{{.RunDir}}/version"
version_file_persist = "{{.DataDir}}/version"
clean_shutdown_file = "{{.DataDir}}/clean.shutdown"

[crio.api]
listen = "{{.Socket}}"
# Port 0: every instance gets its own streaming port.
stream_address = "127.0.0.1"
stream_port = "0"

[crio.runtime]
default_runtime = "runc"
# kubelet's --cgroup-driver=cgroupfs: containers in <cgroup_parent>/crio-<id>.
cgroup_manager = "cgroupfs"
selinux = false
log_to_journald = false
container_exits_dir = "{{.RunDir}}/exits"
container_attach_socket_dir = "{{.RunDir}}/attach"
namespaces_dir = "{{.RunDir}}/ns"
pinns_path = "{{.Pinns}}"
hooks_dir = []
default_mounts_file = ""
irqbalance_config_file = "{{.RunDir}}/irqbalance"
irqbalance_config_restore_file = "disable"
{{range .Handlers}}
[crio.runtime.runtimes.{{.Name}}]
runtime_path = "{{.Wrapper}}"
runtime_type = "oci"
runtime_root = "{{$.RunDir}}/{{.Name}}"
monitor_path = "{{$.Conmon}}"
# conmon in <cgroup_parent>/crio-conmon-<id>, beside the container (1.34's name
# for conmon_cgroup).
monitor_cgroup = "pod"
{{end}}
[crio.image]
pause_image = "{{.PauseImage}}"
# The lab's pause image runs its own command, no /pause binary.
pause_command = ""
signature_policy = "{{.RunDir}}/policy.json"

[crio.network]
network_dir = "{{.CNIConfDir}}"
plugin_dirs = ["/usr/lib/cni"]

[crio.metrics]
enable_metrics = false

[crio.nri]
{{if .NRISocket}}enable_nri = true
nri_listen = "{{.NRISocket}}"
nri_plugin_dir = "{{.RunDir}}/nri/plugins"
nri_plugin_config_dir = "{{.RunDir}}/nri/conf.d"
{{else}}enable_nri = false
{{end}}`))

// crioRegistries sends every mirrored host to the lab registry, over plain HTTP.
var crioRegistries = template.Must(template.New("registries.conf").Parse(`unqualified-search-registries = []
{{range .Hosts}}
[[registry]]
prefix = "{{.}}"
location = "{{$.Addr}}"
insecure = true
{{end}}`))

// CRIO starts a private CRI-O (own root, run root, socket and config; cgroupfs driver;
// Debian's conmon; runc, the default, and crun as runtime handlers through the lab's
// wrappers), pulls the busybox and pause images from the lab registry, and registers
// a cleanup that removes every pod, stops CRI-O and its conmons, and removes its
// directories. CRI-O cannot import an image tar: it pulls from a registry.
func CRIO(t testing.TB, opts ...CRIOOption) *CRIOInstance {
	t.Helper()
	RequireRoot(t)
	var o crioOptions
	for _, opt := range opts {
		opt(&o)
	}
	binary := Bin(t, "crio")
	pinns := Bin(t, "pinns")
	conmon := LookPath(t, "conmon")
	if o.registry == nil {
		o.registry = Registry(t)
	}
	o.registry.Push(t, ImageFile(t, "busybox.oci.tar"), BusyboxImage)
	o.registry.Push(t, ImageFile(t, "pause.oci.tar"), PauseImage)

	runDir, dataDir := instanceDirs(t, "crio")
	c := &CRIOInstance{
		Socket:       filepath.Join(runDir, "crio.sock"),
		Root:         filepath.Join(dataDir, "root"),
		RunRoot:      filepath.Join(runDir, "storage"),
		ConfigPath:   filepath.Join(runDir, "crio.conf"),
		LogPath:      filepath.Join(dataDir, "crio.log"),
		BusyboxImage: BusyboxImage,
		PauseImage:   PauseImage,
		Registry:     o.registry,
		Handlers:     map[string]*OCIRuntime{},
	}
	c.Endpoint = "unix://" + c.Socket
	var handlers []*OCIRuntime
	for _, name := range []string{"runc", "crun"} {
		r := newOCIRuntime(t, runDir, name)
		c.Handlers[name] = r
		handlers = append(handlers, r)
	}

	cniConfDir := filepath.Join(runDir, "cni")
	emptyDir := filepath.Join(runDir, "empty")
	for _, d := range []string{cniConfDir, emptyDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatalf("lab: create %s: %v", d, err)
		}
	}
	if o.cni != nil {
		writeCNI(t, o.cni, cniConfDir, runDir)
	}
	registries := filepath.Join(runDir, "registries.conf")
	writeTemplate(t, crioRegistries, registries, map[string]any{"Hosts": o.registry.MirroredHosts, "Addr": o.registry.Addr})
	policy := filepath.Join(runDir, "policy.json")
	if err := os.WriteFile(policy, []byte(`{"default": [{"type": "insecureAcceptAnything"}]}`+"\n"), 0o644); err != nil {
		t.Fatalf("lab: write %s: %v", policy, err)
	}
	if o.nri {
		c.NRISocket = filepath.Join(runDir, "nri", "nri.sock")
		for _, d := range []string{"plugins", "conf.d"} {
			if err := os.MkdirAll(filepath.Join(runDir, "nri", d), 0o755); err != nil {
				t.Fatalf("lab: %v", err)
			}
		}
	}
	writeTemplate(t, crioConfig, c.ConfigPath, map[string]any{
		"Root": c.Root, "RunRoot": c.RunRoot, "RunDir": runDir, "DataDir": dataDir, "Socket": c.Socket,
		"Pinns": pinns, "Conmon": conmon, "Handlers": handlers, "PauseImage": c.PauseImage,
		"CNIConfDir": cniConfDir, "NRISocket": c.NRISocket,
	})

	// --config-dir and --registries-conf-dir empty: nothing of /etc/crio or
	// /etc/containers/registries.conf.d leaks in.
	proc, err := startProcess("crio", c.LogPath, []string{binary,
		"--config", c.ConfigPath, "--config-dir", emptyDir,
		"--registries-conf", registries, "--registries-conf-dir", emptyDir,
		"--log-level", "info",
	}, nil)
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	c.proc = proc
	t.Cleanup(func() { c.stop(t, runDir) })
	if err := waitForSocket(c.Socket, proc, startTimeout); err != nil {
		t.Fatalf("lab: crio: %v", err)
	}
	for _, img := range []string{c.BusyboxImage, c.PauseImage} {
		Crictl(t, c.Endpoint, "pull", img)
	}
	return c
}

// writeCNI writes the bridge network of c into confDir (picking a bridge name and a
// subnet when c leaves them empty) and registers the bridge's removal.
func writeCNI(t testing.TB, c *CNIConfig, confDir, runDir string) {
	t.Helper()
	if c.Bridge == "" {
		c.Bridge = "cg" + randomID(4)
	}
	if c.Subnet == "" {
		c.Subnet = freeSubnet(t)
	}
	writeTemplate(t, cniConfig, filepath.Join(confDir, "10-"+c.Bridge+".conflist"), map[string]string{
		"Bridge": c.Bridge, "Subnet": c.Subnet, "DataDir": filepath.Join(runDir, "ipam"),
	})
	bridge := c.Bridge
	t.Cleanup(func() { _, _ = run(context.Background(), "ip", "link", "delete", bridge) })
}

// Log returns the last n lines of CRI-O's output.
func (c *CRIOInstance) Log(n int) string { return c.proc.logTail(n) }

// String names the instance in test logs.
func (c *CRIOInstance) String() string { return fmt.Sprintf("crio(%s)", c.Socket) }

// stop removes every pod through CRI, stops CRI-O, then ends the conmons still
// running (they outlive CRI-O by design; their command lines name runDir).
func (c *CRIOInstance) stop(t testing.TB, runDir string) {
	if t.Failed() {
		t.Logf("lab: crio log tail (%s):\n%s", c.LogPath, c.proc.logTail(40))
	}
	if !c.proc.exited() {
		RemoveAllPods(t, c.Endpoint)
	}
	if err, killed := c.proc.stop(15 * time.Second); killed {
		t.Logf("lab: crio did not stop on SIGTERM within 15s: killed (%v)", err)
	}
	killByCmdline(runDir)
	removePendingCgroups()
}
