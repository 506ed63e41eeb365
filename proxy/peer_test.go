package proxy

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// peerClientEnv makes the test binary a CRI client of the socket it names: run under
// the name "kubelet" it is kubelet to the proxy, under "crictl" it is crictl.
const peerClientEnv = "CRIGUARD_TEST_PEER_CLIENT_SOCKET"

// peerClientCalls is how many ListContainers the client process makes.
const peerClientCalls = 3

func TestMain(m *testing.M) {
	if sock := os.Getenv(peerClientEnv); sock != "" {
		os.Exit(runPeerClient(sock))
	}
	if sock := os.Getenv(probeRuntimeEnv); sock != "" {
		os.Exit(runProbeRuntime(sock))
	}
	os.Exit(m.Run())
}

func runPeerClient(sock string) int {
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer conn.Close()
	rt := runtimeapi.NewRuntimeServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range peerClientCalls {
		if _, err := rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return 0
}

// kubeletCounter counts every call and kubelet's.
type kubeletCounter struct {
	calls, kubelet atomic.Int64
}

func (c *kubeletCounter) ObserveCall(string, codes.Code, time.Duration) { c.calls.Add(1) }
func (c *kubeletCounter) KubeletCalled()                                { c.kubelet.Add(1) }

// kubelet is known by the process at the other end of its connection, not by the
// methods it calls: crictl's ListContainers, or the test's own, are not kubelet's.
func TestKubeletKnownByItsPeerNotItsMethods(t *testing.T) {
	dir := shortTempDir(t)
	runtimeSock := filepath.Join(dir, "runtime.sock")
	startFake(t, &fakeRuntime{}, runtimeSock)
	counter := &kubeletCounter{}
	p, err := New(Options{RuntimeEndpoint: "unix://" + runtimeSock, Observer: counter})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var peers []Peer
	p.Handle("/runtime.v1.RuntimeService/ListContainers", Hook{Before: func(ctx context.Context, req []byte) ([]byte, any, error) {
		peer, _ := PeerFromContext(ctx)
		mu.Lock()
		peers = append(peers, peer)
		mu.Unlock()
		return nil, nil, nil
	}})
	sock := filepath.Join(dir, "criguard.sock")
	ln, err := Listen("unix://"+sock, 0o660)
	if err != nil {
		t.Fatal(err)
	}
	go p.Serve(ln)
	t.Cleanup(func() { p.Shutdown(time.Second) })

	runAs := func(name string) int {
		t.Helper()
		exe := executableNamed(t, dir, name)
		cmd := exec.Command(exe)
		cmd.Env = append(os.Environ(), peerClientEnv+"="+sock)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", name, err, out)
		}
		return cmd.Process.Pid
	}

	if runPeerClient(sock) != 0 {
		t.Fatal("the test's own client failed")
	}
	runAs("crictl")
	// The observer hears of a call once its reply is sent: wait for it.
	waitFor(t, "the test's and crictl's calls", func() bool { return counter.calls.Load() >= 2*peerClientCalls })
	if got := counter.kubelet.Load(); got != 0 {
		t.Errorf("%d calls counted as kubelet's from the test and crictl, want 0", got)
	}
	if got := counter.calls.Load(); got != 2*peerClientCalls {
		t.Errorf("%d calls observed, want %d", got, 2*peerClientCalls)
	}
	kubeletPID := runAs("kubelet")
	waitFor(t, "kubelet's calls", func() bool { return counter.calls.Load() >= 3*peerClientCalls })
	waitFor(t, "kubelet's calls counted as kubelet's", func() bool { return counter.kubelet.Load() >= peerClientCalls })
	if got := counter.kubelet.Load(); got != peerClientCalls {
		t.Errorf("%d calls counted as kubelet's, want kubelet's %d", got, peerClientCalls)
	}

	mu.Lock()
	defer mu.Unlock()
	if len(peers) != 3*peerClientCalls {
		t.Fatalf("hooks saw %d peers, want %d", len(peers), 3*peerClientCalls)
	}
	self, _ := os.Executable()
	for i, want := range []Peer{
		{PID: int32(os.Getpid()), UID: uint32(os.Getuid()), Exe: filepath.Base(self)},
		{UID: uint32(os.Getuid()), Exe: "crictl"},
		{PID: int32(kubeletPID), UID: uint32(os.Getuid()), Exe: "kubelet", Kubelet: true},
	} {
		got := peers[i*peerClientCalls]
		if want.PID == 0 {
			want.PID = got.PID // crictl's pid is not kept; the name says it is crictl
		}
		if got != want {
			t.Errorf("peer %d = %+v, want %+v", i, got, want)
		}
	}
}

// executableNamed is the test binary under another name: a hard link, or a copy.
func executableNamed(t *testing.T, dir, name string) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if os.Link(self, path) == nil {
		return path
	}
	src, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func waitFor(t *testing.T, what string, done func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !done(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
