package proxy

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// fakeRuntime is an in-process CRI server that records what reached it.
type fakeRuntime struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	runtimeapi.UnimplementedImageServiceServer

	mu          sync.Mutex
	lastMD      metadata.MD
	lastDL      time.Time
	containers  int
	streamDone  chan struct{}
	events      []*runtimeapi.ContainerEventResponse
	eventsErr   error
	raw         map[string][]byte // raw requests by method, for unknown methods
	listErr     error
	imageServed string
}

func (f *fakeRuntime) record(ctx context.Context) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastMD, _ = metadata.FromIncomingContext(ctx)
	f.lastDL, _ = ctx.Deadline()
}

func (f *fakeRuntime) Version(ctx context.Context, req *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	f.record(ctx)
	return &runtimeapi.VersionResponse{Version: req.Version, RuntimeName: "fake", RuntimeVersion: "1.0", RuntimeApiVersion: "v1"}, nil
}

func (f *fakeRuntime) ListContainers(ctx context.Context, req *runtimeapi.ListContainersRequest) (*runtimeapi.ListContainersResponse, error) {
	f.record(ctx)
	if f.listErr != nil {
		return nil, f.listErr
	}
	resp := &runtimeapi.ListContainersResponse{}
	for i := range f.containers {
		resp.Containers = append(resp.Containers, &runtimeapi.Container{
			Id:     strings.Repeat("c", 64),
			Labels: map[string]string{"i": string(rune('a' + i%26)), "pad": strings.Repeat("x", 1000)},
		})
	}
	return resp, nil
}

func (f *fakeRuntime) ContainerStatus(ctx context.Context, req *runtimeapi.ContainerStatusRequest) (*runtimeapi.ContainerStatusResponse, error) {
	f.record(ctx)
	return &runtimeapi.ContainerStatusResponse{
		Status: &runtimeapi.ContainerStatus{Id: req.ContainerId, State: runtimeapi.ContainerState_CONTAINER_RUNNING},
		Info:   map[string]string{"info": `{"pid":42}`},
	}, nil
}

func (f *fakeRuntime) ImageStatus(ctx context.Context, req *runtimeapi.ImageStatusRequest) (*runtimeapi.ImageStatusResponse, error) {
	f.record(ctx)
	return &runtimeapi.ImageStatusResponse{Image: &runtimeapi.Image{Id: "sha256:1", RepoTags: []string{req.Image.Image}, Size: 1234}, Info: map[string]string{"by": f.imageServed}}, nil
}

func (f *fakeRuntime) ListImages(ctx context.Context, _ *runtimeapi.ListImagesRequest) (*runtimeapi.ListImagesResponse, error) {
	f.record(ctx)
	return &runtimeapi.ListImagesResponse{Images: []*runtimeapi.Image{{Id: "sha256:1", Size: 1}}}, nil
}

func (f *fakeRuntime) GetContainerEvents(_ *runtimeapi.GetEventsRequest, s runtimeapi.RuntimeService_GetContainerEventsServer) error {
	if err := s.SendHeader(metadata.Pairs("x-subscribed", "yes")); err != nil {
		return err
	}
	for _, e := range f.events {
		if err := s.Send(e); err != nil {
			return err
		}
	}
	if f.eventsErr != nil {
		return f.eventsErr
	}
	<-s.Context().Done()
	if f.streamDone != nil {
		close(f.streamDone)
	}
	return s.Context().Err()
}

// startFake serves f on a fresh unix socket. Unknown methods are answered by
// echoing the raw request back, so tests can see exactly what bytes arrived.
func startFake(t testing.TB, f *fakeRuntime, sock string) *grpc.Server {
	t.Helper()
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	return serveFake(t, f, ln)
}

func serveFake(t testing.TB, f *fakeRuntime, ln net.Listener) *grpc.Server {
	srv := grpc.NewServer(
		grpc.MaxRecvMsgSize(64<<20), grpc.MaxSendMsgSize(64<<20),
		grpc.UnknownServiceHandler(func(_ any, ss grpc.ServerStream) error {
			method, _ := grpc.MethodFromServerStream(ss)
			var in frame
			if err := ss.RecvMsg(&in); err != nil {
				return err
			}
			b := in.bytes()
			f.mu.Lock()
			if f.raw == nil {
				f.raw = map[string][]byte{}
			}
			f.raw[method] = b
			f.mu.Unlock()
			out := frame{}
			out.setBytes(append([]byte(nil), b...))
			return ss.SendMsg(&out)
		}),
		grpc.ForceServerCodecV2(rawCodecOrProto{}),
	)
	runtimeapi.RegisterRuntimeServiceServer(srv, f)
	runtimeapi.RegisterImageServiceServer(srv, f)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return srv
}

// rawCodecOrProto lets the fake serve typed services and raw unknown methods on one server.
type rawCodecOrProto struct{ rawCodec }

func (c rawCodecOrProto) Marshal(v any) (mem.BufferSlice, error) {
	if m, ok := v.(proto.Message); ok {
		b, err := proto.Marshal(m)
		return mem.BufferSlice{mem.SliceBuffer(b)}, err
	}
	return c.rawCodec.Marshal(v)
}

func (c rawCodecOrProto) Unmarshal(data mem.BufferSlice, v any) error {
	if m, ok := v.(proto.Message); ok {
		return proto.Unmarshal(data.Materialize(), m)
	}
	return c.rawCodec.Unmarshal(data, v)
}

type env struct {
	fake        *fakeRuntime
	runtimeSock string
	server      *grpc.Server
	proxy       *Proxy
	conn        *grpc.ClientConn
	rt          runtimeapi.RuntimeServiceClient
	img         runtimeapi.ImageServiceClient
}

func newEnv(t testing.TB, configure func(*Proxy)) *env {
	t.Helper()
	dir := shortTempDir(t)
	e := &env{fake: &fakeRuntime{}, runtimeSock: filepath.Join(dir, "runtime.sock")}
	e.server = startFake(t, e.fake, e.runtimeSock)
	p, err := New(Options{RuntimeEndpoint: "unix://" + e.runtimeSock})
	if err != nil {
		t.Fatal(err)
	}
	if configure != nil {
		configure(p)
	}
	e.proxy = p
	ln, err := Listen("unix://"+filepath.Join(dir, "criguard.sock"), 0o660)
	if err != nil {
		t.Fatal(err)
	}
	go p.Serve(ln)
	t.Cleanup(func() { p.Shutdown(time.Second) })
	e.conn, err = grpc.NewClient("unix://"+filepath.Join(dir, "criguard.sock"),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.conn.Close() })
	e.rt = runtimeapi.NewRuntimeServiceClient(e.conn)
	e.img = runtimeapi.NewImageServiceClient(e.conn)
	return e
}

// shortTempDir keeps unix socket paths under the 108-byte limit.
func shortTempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "cg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestUnaryMethodsRoundTripUnchanged(t *testing.T) {
	e := newEnv(t, nil)
	e.fake.containers = 3
	ctx := ctxTimeout(t, 5*time.Second)

	direct, err := grpc.NewClient("unix://"+e.runtimeSock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	drt, dimg := runtimeapi.NewRuntimeServiceClient(direct), runtimeapi.NewImageServiceClient(direct)

	calls := []struct {
		name          string
		proxy, direct func() (proto.Message, error)
	}{
		{"Version",
			func() (proto.Message, error) { return e.rt.Version(ctx, &runtimeapi.VersionRequest{Version: "v1"}) },
			func() (proto.Message, error) { return drt.Version(ctx, &runtimeapi.VersionRequest{Version: "v1"}) }},
		{"ListContainers",
			func() (proto.Message, error) { return e.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{}) },
			func() (proto.Message, error) { return drt.ListContainers(ctx, &runtimeapi.ListContainersRequest{}) }},
		{"ContainerStatus",
			func() (proto.Message, error) {
				return e.rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: "abc", Verbose: true})
			},
			func() (proto.Message, error) {
				return drt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: "abc", Verbose: true})
			}},
		{"ImageStatus",
			func() (proto.Message, error) {
				return e.img.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: "busybox"}})
			},
			func() (proto.Message, error) {
				return dimg.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: "busybox"}})
			}},
		{"ListImages",
			func() (proto.Message, error) { return e.img.ListImages(ctx, &runtimeapi.ListImagesRequest{}) },
			func() (proto.Message, error) { return dimg.ListImages(ctx, &runtimeapi.ListImagesRequest{}) }},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			got, err := c.proxy()
			if err != nil {
				t.Fatalf("through proxy: %v", err)
			}
			want, err := c.direct()
			if err != nil {
				t.Fatalf("direct: %v", err)
			}
			gb, _ := proto.MarshalOptions{Deterministic: true}.Marshal(got)
			wb, _ := proto.MarshalOptions{Deterministic: true}.Marshal(want)
			if !bytes.Equal(gb, wb) || len(gb) == 0 {
				t.Fatalf("response differs through the proxy:\n got %v\nwant %v", got, want)
			}
		})
	}
}

// A message with a field no version of CRI defines must reach the runtime
// byte for byte: a decoding proxy would drop it.
func TestUnknownMethodAndFieldsForwardedByteForByte(t *testing.T) {
	e := newEnv(t, nil)
	ctx := ctxTimeout(t, 5*time.Second)
	req := protowire.AppendTag(nil, 1, protowire.BytesType)
	req = protowire.AppendString(req, "hello")
	req = protowire.AppendTag(req, 9999, protowire.VarintType)
	req = protowire.AppendVarint(req, 7)
	for _, method := range []string{"/runtime.v1.RuntimeService/SomeFutureMethod", "/runtime.v1.ImageService/FutureImageCall", "/runtime.v2.RuntimeService/Version"} {
		in, out := frame{}, frame{}
		in.setBytes(append([]byte(nil), req...))
		if err := e.conn.Invoke(ctx, method, &in, &out, grpc.ForceCodecV2(rawCodec{})); err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		e.fake.mu.Lock()
		got := e.fake.raw[method]
		e.fake.mu.Unlock()
		if !bytes.Equal(got, req) {
			t.Fatalf("%s: runtime received %x, want %x", method, got, req)
		}
		if !bytes.Equal(out.bytes(), req) {
			t.Fatalf("%s: caller received %x, want the echo %x", method, out.bytes(), req)
		}
	}
}

func TestMetadataAndDeadlineReachRuntime(t *testing.T) {
	e := newEnv(t, nil)
	deadline := time.Now().Add(7 * time.Second)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "x-trace-id", "abc123", "x-bin-bin", "\x00\x01")
	if _, err := e.rt.Version(ctx, &runtimeapi.VersionRequest{}); err != nil {
		t.Fatal(err)
	}
	e.fake.mu.Lock()
	defer e.fake.mu.Unlock()
	if got := e.fake.lastMD.Get("x-trace-id"); len(got) != 1 || got[0] != "abc123" {
		t.Errorf("x-trace-id upstream = %v, want [abc123]", got)
	}
	if got := e.fake.lastMD.Get("x-bin-bin"); len(got) != 1 || got[0] != "\x00\x01" {
		t.Errorf("binary metadata upstream = %q", got)
	}
	if e.fake.lastDL.IsZero() || e.fake.lastDL.Sub(deadline).Abs() > 500*time.Millisecond {
		t.Errorf("deadline upstream = %v, want about %v", e.fake.lastDL, deadline)
	}
}

func TestErrorWithDetailsPassesUnchanged(t *testing.T) {
	e := newEnv(t, nil)
	want, err := status.New(codes.FailedPrecondition, "container is paused").WithDetails(
		&errdetails.ErrorInfo{Reason: "PAUSED", Domain: "runtime", Metadata: map[string]string{"id": "abc"}})
	if err != nil {
		t.Fatal(err)
	}
	e.fake.listErr = want.Err()
	_, err = e.rt.ListContainers(ctxTimeout(t, 5*time.Second), &runtimeapi.ListContainersRequest{})
	got := status.Convert(err)
	if got.Code() != want.Code() || got.Message() != want.Message() {
		t.Fatalf("got %v %q, want %v %q", got.Code(), got.Message(), want.Code(), want.Message())
	}
	if !proto.Equal(got.Proto(), want.Proto()) {
		t.Fatalf("details changed: got %v, want %v", got.Proto(), want.Proto())
	}
}

func TestLargeResponsePasses(t *testing.T) {
	e := newEnv(t, nil)
	e.fake.containers = 20 * 1024 // ~1 KiB each: about 20 MiB
	resp, err := e.rt.ListContainers(ctxTimeout(t, 30*time.Second), &runtimeapi.ListContainersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if size := proto.Size(resp); size < 20<<20 {
		t.Fatalf("response is %d bytes, want at least 20 MiB", size)
	}
	if len(resp.Containers) != e.fake.containers {
		t.Fatalf("got %d containers, want %d", len(resp.Containers), e.fake.containers)
	}
}

func TestEventStreamDeliversAndCancels(t *testing.T) {
	e := newEnv(t, nil)
	e.fake.events = []*runtimeapi.ContainerEventResponse{
		{ContainerId: "a", ContainerEventType: runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT},
		{ContainerId: "a", ContainerEventType: runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT},
	}
	e.fake.streamDone = make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := e.rt.GetContainerEvents(ctx, &runtimeapi.GetEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range e.fake.events {
		got, err := stream.Recv()
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		if !proto.Equal(got, want) {
			t.Fatalf("event %d = %v, want %v", i, got, want)
		}
	}
	cancel()
	select {
	case <-e.fake.streamDone:
	case <-time.After(5 * time.Second):
		t.Fatal("the runtime's stream was not cancelled after the client cancelled")
	}
}

func TestEventStreamPropagatesRuntimeError(t *testing.T) {
	e := newEnv(t, nil)
	e.fake.events = []*runtimeapi.ContainerEventResponse{{ContainerId: "x"}}
	e.fake.eventsErr = status.Error(codes.ResourceExhausted, "too many subscribers")
	stream, err := e.rt.GetContainerEvents(ctxTimeout(t, 5*time.Second), &runtimeapi.GetEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatalf("first event: %v", err)
	}
	_, err = stream.Recv()
	if st := status.Convert(err); st.Code() != codes.ResourceExhausted || st.Message() != "too many subscribers" {
		t.Fatalf("got %v, want ResourceExhausted: too many subscribers", err)
	}
}

func TestRuntimeDownIsUnavailableFastThenRecovers(t *testing.T) {
	e := newEnv(t, nil)
	ctx := ctxTimeout(t, 30*time.Second)
	if _, err := e.rt.Version(ctx, &runtimeapi.VersionRequest{}); err != nil {
		t.Fatal(err)
	}
	e.server.Stop() // the runtime goes away; its socket file goes with it

	for i := range 3 {
		start := time.Now()
		callCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
		_, err := e.rt.Version(callCtx, &runtimeapi.VersionRequest{})
		cancel()
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("call %d with the runtime down: got %v, want Unavailable", i, err)
		}
		if took := time.Since(start); took > 3*time.Second {
			t.Fatalf("call %d took %v to fail; the caller must not hang", i, took)
		}
	}

	startFake(t, e.fake, e.runtimeSock)
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := e.rt.Version(ctx, &runtimeapi.VersionRequest{})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the proxy did not reconnect within 10s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestHooksSeeAndRewriteOnlyTheirMethod(t *testing.T) {
	var mu sync.Mutex
	var seenReq, seenResp []byte
	var seenErr error
	var seenState *runtimeapi.VersionRequest
	e := newEnv(t, func(p *Proxy) {
		p.Handle("/runtime.v1.RuntimeService/Version", Hook{
			Before: func(_ context.Context, req []byte) ([]byte, any, error) {
				var r runtimeapi.VersionRequest
				if err := proto.Unmarshal(req, &r); err != nil {
					return nil, nil, err
				}
				r.Version = "rewritten"
				out, err := proto.Marshal(&r)
				return out, &r, err
			},
			After: func(_ context.Context, state any, req, resp []byte, err error) error {
				mu.Lock()
				defer mu.Unlock()
				seenReq, seenResp, seenErr = req, resp, err
				seenState, _ = state.(*runtimeapi.VersionRequest)
				return err
			},
		})
		p.Handle("/runtime.v1.RuntimeService/ListContainers", Hook{
			After: func(_ context.Context, _ any, _, _ []byte, err error) error {
				if err == nil {
					return status.Error(codes.Aborted, "refused by hook")
				}
				return err
			},
		})
	})
	ctx := ctxTimeout(t, 5*time.Second)
	resp, err := e.rt.Version(ctx, &runtimeapi.VersionRequest{Version: "original"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Version != "rewritten" {
		t.Fatalf("runtime saw version %q, want the hook's rewrite", resp.Version)
	}
	mu.Lock()
	var r runtimeapi.VersionRequest
	var rr runtimeapi.VersionResponse
	if err := proto.Unmarshal(seenReq, &r); err != nil || r.Version != "rewritten" {
		t.Errorf("after-hook request = %v (%v)", &r, err)
	}
	if err := proto.Unmarshal(seenResp, &rr); err != nil || rr.RuntimeName != "fake" {
		t.Errorf("after-hook response = %v (%v)", &rr, err)
	}
	if seenErr != nil {
		t.Errorf("after-hook err = %v", seenErr)
	}
	if seenState.GetVersion() != "rewritten" {
		t.Errorf("after-hook state = %v, want the request Before decoded", seenState)
	}
	mu.Unlock()
	if _, err := e.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{}); status.Code(err) != codes.Aborted {
		t.Fatalf("after-hook error not returned: %v", err)
	}
	// A method without a hook is untouched.
	if _, err := e.rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: "x"}); err != nil {
		t.Fatal(err)
	}
}

func TestImageEndpointSeparate(t *testing.T) {
	dir := shortTempDir(t)
	rt, img := &fakeRuntime{imageServed: "runtime"}, &fakeRuntime{imageServed: "image"}
	startFake(t, rt, filepath.Join(dir, "rt.sock"))
	startFake(t, img, filepath.Join(dir, "img.sock"))
	p, err := New(Options{RuntimeEndpoint: filepath.Join(dir, "rt.sock"), ImageEndpoint: "unix://" + filepath.Join(dir, "img.sock")})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := Listen(filepath.Join(dir, "p.sock"), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	go p.Serve(ln)
	defer p.Shutdown(time.Second)
	conn, err := grpc.NewClient("unix://"+filepath.Join(dir, "p.sock"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := ctxTimeout(t, 5*time.Second)
	is, err := runtimeapi.NewImageServiceClient(conn).ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: "x"}})
	if err != nil {
		t.Fatal(err)
	}
	if is.Info["by"] != "image" {
		t.Fatalf("image call served by %q, want the image endpoint", is.Info["by"])
	}
	v, err := runtimeapi.NewRuntimeServiceClient(conn).Version(ctx, &runtimeapi.VersionRequest{})
	if err != nil || v.RuntimeName != "fake" {
		t.Fatalf("runtime call: %v %v", v, err)
	}
}

func TestListenReplacesStaleSocketAndRefusesLiveOne(t *testing.T) {
	dir := shortTempDir(t)
	path := filepath.Join(dir, "sub", "dir", "c.sock")
	ln, err := Listen("unix://"+path, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o640 {
		t.Errorf("socket mode = %o, want 640", fi.Mode().Perm())
	}
	if _, err := Listen(path, 0o660); !errors.Is(err, ErrSocketInUse) {
		t.Fatalf("second listener on a live socket: %v, want ErrSocketInUse", err)
	}
	// Leave a stale socket file behind, as a crash would.
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("stale socket should still exist: %v", err)
	}
	ln2, err := Listen(path, 0o660)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	ln2.Close()
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket not removed on close: %v", err)
	}
	regular := filepath.Join(dir, "file")
	os.WriteFile(regular, nil, 0o600)
	if _, err := Listen(regular, 0o660); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("a regular file in the way: %v, want a refusal", err)
	}
	if _, err := Listen("relative.sock", 0o660); !errors.Is(err, ErrBadEndpoint) {
		t.Errorf("relative endpoint: %v, want ErrBadEndpoint", err)
	}
}

func TestShutdownLetsUnaryFinishAndEndsStreams(t *testing.T) {
	e := newEnv(t, nil)
	e.fake.streamDone = make(chan struct{})
	stream, err := e.rt.GetContainerEvents(ctxTimeout(t, 10*time.Second), &runtimeapi.GetEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if h, err := stream.Header(); err != nil || strings.Join(h.Get("x-subscribed"), ",") != "yes" {
		t.Fatalf("stream header = %v, %v; want the runtime's header", h, err)
	}
	done := make(chan struct{})
	go func() { e.proxy.Shutdown(5 * time.Second); close(done) }()
	_, err = stream.Recv()
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("event stream at shutdown: %v, want Unavailable so kubelet re-subscribes", err)
	}
	select {
	case <-done:
	case <-time.After(4 * time.Second):
		t.Fatal("shutdown waited for the event stream instead of ending it")
	}
}
