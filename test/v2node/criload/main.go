// Command criload is issue 13's restart check on a real systemd (the v2 node VM): it
// drives a kubelet-shaped load through criguard (test/e2e/load), runs a restart
// command (systemctl restart criguard) a number of times, and prints what failed. A
// started container counts as unthrottled unless its cgroup's io.max holds the wanted
// line right after StartContainer returns. The exit status is 1 when a unary call or a
// start failed, or a start was left unthrottled.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/criguard/criguard/test/e2e/load"
)

func main() {
	endpoint := flag.String("endpoint", "unix:///run/criguard/criguard.sock", "criguard's CRI socket: the load goes through it")
	runtimeEndpoint := flag.String("runtime-endpoint", "", "the runtime's own socket: the read-back asks it for each container's pid")
	restartCommand := flag.String("restart", "systemctl restart criguard", "the restart, run by sh -c")
	restarts := flag.Int("restarts", 10, "how many restarts")
	between := flag.Duration("between", 3*time.Second, "load time before, between and after the restarts")
	baseline := flag.Duration("baseline", 0, "a run of the load without restarts first: it must fail nothing, or the node cannot carry the load")
	rate := flag.Int("rate", 50, "unary calls/s")
	startEvery := flag.Duration("start-every", time.Second, "a container start this often (one at a time)")
	namespace := flag.String("namespace", "throttled", "the pod's namespace (the policy matches it)")
	image := flag.String("image", "criguard.test/e2e/busybox:latest", "the containers' image")
	want := flag.String("want-io-max", "", "the io.max line each started container must have (MAJ:MIN rbps=… …)")
	flag.Parse()
	if *runtimeEndpoint == "" || *want == "" {
		fmt.Fprintln(os.Stderr, "criload: --runtime-endpoint and --want-io-max are required")
		os.Exit(2)
	}
	if err := run(*endpoint, *runtimeEndpoint, *restartCommand, *restarts, *baseline, *between, *rate, *startEvery, *namespace, *image, *want); err != nil {
		fmt.Fprintln(os.Stderr, "criload:", err)
		os.Exit(1)
	}
}

func run(endpoint, runtimeEndpoint, restartCommand string, restarts int, baseline, between time.Duration, rate int,
	startEvery time.Duration, namespace, image, want string) error {
	conn, err := load.Dial(endpoint)
	if err != nil {
		return err
	}
	defer conn.Close()
	client := runtimeapi.NewRuntimeServiceClient(conn)
	rconn, err := load.Dial(runtimeEndpoint)
	if err != nil {
		return err
	}
	defer rconn.Close()
	runtime := runtimeapi.NewRuntimeServiceClient(rconn)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	uid := fmt.Sprintf("criload%d", time.Now().UnixNano())
	pod := &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: "criload", Namespace: namespace, Uid: uid},
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			// As kubelet's systemd driver names a best-effort pod's slice.
			CgroupParent: "kubepods-besteffort-pod" + uid + ".slice",
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE},
			},
		},
		LogDirectory: "/var/log/criload",
	}
	sandbox, err := client.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pod})
	if err != nil {
		return fmt.Errorf("run the pod: %w", err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		_, _ = client.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: sandbox.PodSandboxId})
		_, _ = client.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: sandbox.PodSandboxId})
	}()
	sleeper := func(name string) *runtimeapi.ContainerConfig {
		return &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: name},
			Image:    &runtimeapi.ImageSpec{Image: image},
			Command:  []string{"sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"},
			LogPath:  name + ".log",
		}
	}
	created, err := client.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
		PodSandboxId: sandbox.PodSandboxId, Config: sleeper("survivor"), SandboxConfig: pod})
	if err == nil {
		_, err = client.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: created.ContainerId})
	}
	if err != nil {
		return fmt.Errorf("start the survivor: %w", err)
	}
	cancel()

	cfg := load.Config{
		Client: client, PodID: sandbox.PodSandboxId, Pod: pod, Survivor: created.ContainerId,
		NewContainer: func(i int) *runtimeapi.ContainerConfig { return sleeper(fmt.Sprintf("c%d", i)) },
		Check: func(ctx context.Context, id string) error {
			got, err := ioMax(ctx, runtime, id, strings.Fields(want)[0])
			if err == nil && got != want {
				err = fmt.Errorf("io.max %q, want %q", got, want)
			}
			return err
		},
		UnaryRate: rate, StartEvery: startEvery, RemoveStarted: true,
	}
	if baseline > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), baseline)
		r := load.Run(ctx, cfg)
		cancel()
		fmt.Printf("baseline: %s without restarts: %d of %d unary calls and %d of %d starts failed, %d unthrottled\n",
			baseline, r.UnaryFailed, r.UnaryCalls, r.StartsFailed, r.Starts, r.Unthrottled)
		if r.UnaryFailed > 0 || r.StartsFailed > 0 || r.Unthrottled > 0 {
			fmt.Printf("failures: %s\n", r.Failures())
			return fmt.Errorf("the load fails without restarts: this node cannot carry %d calls/s and a start every %s", rate, startEvery)
		}
	}

	loadCtx, stopLoad := context.WithCancel(context.Background())
	done := make(chan *load.Report)
	go func() { done <- load.Run(loadCtx, cfg) }()

	var restartTimes []time.Duration
	time.Sleep(between)
	for range restarts {
		began := time.Now()
		// systemctl restart returns once the new criguard has sent READY=1.
		if out, err := exec.Command("sh", "-c", restartCommand).CombinedOutput(); err != nil {
			stopLoad()
			<-done
			return fmt.Errorf("%s: %v: %s", restartCommand, err, out)
		}
		restartTimes = append(restartTimes, time.Since(began))
		time.Sleep(between)
	}
	stopLoad()
	r := <-done

	var each []string
	for _, d := range restartTimes {
		each = append(each, d.Round(10*time.Millisecond).String())
	}
	fmt.Printf("restart times: %s\n", strings.Join(each, " "))
	fmt.Printf("restarts: %d, %s\n", restarts, load.Spread(restartTimes))
	fmt.Printf("unary calls: %d failed of %d\n", r.UnaryFailed, r.UnaryCalls)
	fmt.Printf("starts: %d failed, %d unthrottled of %d\n", r.StartsFailed, r.Unthrottled, r.Starts)
	fmt.Printf("event stream: %d gaps, %s; %d failed subscribe attempts; ends %v\n", len(r.Gaps), load.Spread(r.Gaps), r.SubscribeFailed, r.StreamEnds)
	fmt.Printf("row: %s", r.Row(fmt.Sprintf("systemd (criguard.socket), VM, %d calls/s, a start every %s", rate, startEvery), restartTimes))
	if f := r.Failures(); f != "" {
		fmt.Printf("failures: %s\n", f)
	}
	if r.UnaryCalls == 0 || r.Starts == 0 {
		return fmt.Errorf("no load ran")
	}
	if r.UnaryFailed > 0 || r.StartsFailed > 0 || r.Unthrottled > 0 {
		return fmt.Errorf("%d unary calls and %d starts failed, %d starts unthrottled", r.UnaryFailed, r.StartsFailed, r.Unthrottled)
	}
	return nil
}

// ioMax is the container's io.max line for dev, read from the cgroup of its init
// process (the runtime's verbose status gives the pid), or "none".
func ioMax(ctx context.Context, runtime runtimeapi.RuntimeServiceClient, id, dev string) (string, error) {
	st, err := runtime.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id, Verbose: true})
	if err != nil {
		return "", err
	}
	var info struct {
		Pid int `json:"pid"`
	}
	if err := json.Unmarshal([]byte(st.Info["info"]), &info); err != nil || info.Pid == 0 {
		return "", fmt.Errorf("no pid in the verbose status of %s", id)
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", info.Pid))
	if err != nil {
		return "", err
	}
	rel, ok := strings.CutPrefix(strings.TrimSpace(string(b)), "0::")
	if !ok {
		return "", fmt.Errorf("not a cgroup v2 process: %s", b)
	}
	f, err := os.Open(filepath.Join("/sys/fs/cgroup", rel, "io.max"))
	if err != nil {
		return "", err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if strings.HasPrefix(s.Text(), dev+" ") {
			return s.Text(), nil
		}
	}
	return "none", s.Err()
}
