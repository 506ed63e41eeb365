// Package proxy serves CRI on a unix socket and forwards every call to the
// container runtime as raw bytes. It decodes nothing itself: callers register
// hooks by full method name and only those methods are handed over as bytes.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// DefaultMaxMsgSize bounds one message each way. kubelet allows 16 MiB; a full
// node's ListContainers or a large image list must never be cut below that.
const DefaultMaxMsgSize = 128 << 20

// The transport's settings, both ways. Fixed flow-control windows turn off gRPC's
// bandwidth-delay estimation, which pings the peer about once per message received:
// over a unix socket the delay is microseconds, the estimate buys nothing, and its
// pings cost about a tenth of the proxy's work per call (BenchmarkUnary). The windows
// are as large as the estimate may grow them, so a large ListContainers still moves
// in a few round trips.
const (
	streamWindow = 4 << 20
	connWindow   = 16 << 20
	// streamWorkers serve calls on goroutines that live on, rather than a new
	// goroutine per call whose stack grows anew each time. Calls beyond them (kubelet
	// seldom has more in flight) each get a goroutine, as before.
	streamWorkers = 4
)

// Hook intercepts one method. Before may rewrite the request, and returns a state
// of its own that After gets back: what was decoded and decided before the call
// is not done again after it. After sees that state (nil when Before is unset),
// the request, the response (nil on error) and the upstream error, and returns the
// error the caller gets (usually err unchanged). Answer, when set, is asked only
// when the runtime's reply is an error: a response it returns with true is sent
// instead of that error (After then sees it as the reply).
type Hook struct {
	Before func(ctx context.Context, req []byte) (out []byte, state any, err error)
	After  func(ctx context.Context, state any, req, resp []byte, err error) error
	Answer func(ctx context.Context, req []byte, err error) ([]byte, bool)
}

// Observer is told about every forwarded call (metrics live outside this package).
type Observer interface {
	ObserveCall(method string, code codes.Code, elapsed time.Duration)
}

// Options configure a Proxy.
type Options struct {
	RuntimeEndpoint string // unix:///run/containerd/containerd.sock
	ImageEndpoint   string // defaults to RuntimeEndpoint
	MaxMsgSize      int    // defaults to DefaultMaxMsgSize
	Logger          *slog.Logger
	Observer        Observer
	// KubeletNames are the executables taken for kubelet; DefaultKubeletNames if empty.
	KubeletNames []string
	// ProcRoot is where the peers' /proc/PID are read; "/proc" if empty.
	ProcRoot string
}

// Proxy forwards CRI calls to the runtime.
type Proxy struct {
	runtime, image *grpc.ClientConn
	server         *grpc.Server
	hooks          map[string]Hook
	log            *slog.Logger
	observer       Observer
	kubelet        KubeletObserver // observer's, if it is one
	maxMsgSize     int

	// closing ends long-lived streams at shutdown so that graceful stop only
	// waits for calls that will finish by themselves.
	closing   chan struct{}
	closeOnce sync.Once
	// unaryInFlight lets Shutdown end streams only once unary calls are done.
	unaryInFlight atomic.Int64
}

// knownMethods are the CRI methods this build knows, true for the unary ones: they
// take the cheaper path. Any other name, known or not, is forwarded as a
// bidirectional stream, which carries unary and streaming calls alike.
var knownMethods = func() map[string]bool {
	m := map[string]bool{}
	for _, sd := range []grpc.ServiceDesc{runtimeapi.RuntimeService_ServiceDesc, runtimeapi.ImageService_ServiceDesc} {
		for _, md := range sd.Methods {
			m["/"+sd.ServiceName+"/"+md.MethodName] = true
		}
		for _, st := range sd.Streams {
			m["/"+sd.ServiceName+"/"+st.StreamName] = false
		}
	}
	return m
}()

// New connects (lazily) to the runtime and image endpoints (Dial).
func New(opts Options) (*Proxy, error) {
	if opts.ImageEndpoint == "" {
		opts.ImageEndpoint = opts.RuntimeEndpoint
	}
	if opts.MaxMsgSize <= 0 {
		opts.MaxMsgSize = DefaultMaxMsgSize
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	p := &Proxy{
		hooks:      map[string]Hook{},
		log:        opts.Logger,
		observer:   opts.Observer,
		maxMsgSize: opts.MaxMsgSize,
		closing:    make(chan struct{}),
	}
	p.kubelet, _ = opts.Observer.(KubeletObserver)
	if len(opts.KubeletNames) == 0 {
		opts.KubeletNames = DefaultKubeletNames
	}
	if opts.ProcRoot == "" {
		opts.ProcRoot = "/proc"
	}
	var err error
	if p.runtime, err = Dial(opts.RuntimeEndpoint, p.maxMsgSize); err != nil {
		return nil, fmt.Errorf("proxy: runtime endpoint: %w", err)
	}
	p.image = p.runtime
	if opts.ImageEndpoint != opts.RuntimeEndpoint {
		if p.image, err = Dial(opts.ImageEndpoint, p.maxMsgSize); err != nil {
			p.runtime.Close()
			return nil, fmt.Errorf("proxy: image endpoint: %w", err)
		}
	}
	p.server = grpc.NewServer(
		grpc.Creds(peerCredentials{procRoot: opts.ProcRoot, kubeletNames: opts.KubeletNames}),
		grpc.ForceServerCodecV2(rawCodec{}),
		grpc.UnknownServiceHandler(p.forward),
		grpc.MaxRecvMsgSize(p.maxMsgSize),
		grpc.MaxSendMsgSize(p.maxMsgSize),
		grpc.StaticStreamWindowSize(streamWindow),
		grpc.StaticConnWindowSize(connWindow),
		grpc.NumStreamWorkers(streamWorkers),
	)
	return p, nil
}

// Dial connects (lazily) to a CRI endpoint with the proxy's transport: messages up
// to maxMsgSize each way, fixed windows, and a reconnect backoff capped at one
// second, so a caller is served again within a second of the runtime coming back.
func Dial(endpoint string, maxMsgSize int) (*grpc.ClientConn, error) {
	target, err := dialTarget(endpoint)
	if err != nil {
		return nil, err
	}
	bo := backoff.DefaultConfig
	bo.BaseDelay = 50 * time.Millisecond
	bo.MaxDelay = time.Second
	conn, err := grpc.NewClient(target,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: bo, MinConnectTimeout: 2 * time.Second}),
		grpc.WithStaticStreamWindowSize(streamWindow),
		grpc.WithStaticConnWindowSize(connWindow),
		grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(maxMsgSize),
			grpc.MaxCallSendMsgSize(maxMsgSize),
		),
	)
	if err != nil {
		return nil, err
	}
	conn.Connect()
	return conn, nil
}

// Handle registers a hook for a full method name such as
// "/runtime.v1.RuntimeService/StartContainer". Call before Serve.
func (p *Proxy) Handle(method string, h Hook) { p.hooks[method] = h }

// RuntimeConn is the upstream runtime connection, for callers that make their
// own CRI calls (status, reconcile) over the same channel.
func (p *Proxy) RuntimeConn() *grpc.ClientConn { return p.runtime }

// Serve serves on ln until Shutdown.
func (p *Proxy) Serve(ln net.Listener) error {
	err := p.server.Serve(ln)
	if errors.Is(err, grpc.ErrServerStopped) {
		return nil
	}
	return err
}

// Shutdown stops accepting calls, lets in-flight unary calls finish within
// grace, then ends event streams with Unavailable (clients re-subscribe).
// Streams end last: a client told to re-subscribe while this process still
// drains would wait out the drain (on a socket held across restarts) or be
// refused; told at the end, it reaches the next criguard at once.
func (p *Proxy) Shutdown(grace time.Duration) {
	timer := time.NewTimer(grace)
	defer timer.Stop()
	done := make(chan struct{})
	go func() {
		p.server.GracefulStop()
		close(done)
	}()
	graceOver := !p.waitForUnary(timer.C, done)
	p.closeOnce.Do(func() { close(p.closing) })
	if !graceOver {
		select {
		case <-done:
		case <-timer.C:
			graceOver = true
		}
	}
	if graceOver {
		p.log.Warn("shutdown grace period over; cutting in-flight calls", "grace", grace)
		p.server.Stop()
		<-done
	}
	p.runtime.Close()
	if p.image != p.runtime {
		p.image.Close()
	}
}

// waitForUnary waits until no unary call is in flight or the server has
// stopped; false means the grace ran out first.
func (p *Proxy) waitForUnary(graceOver <-chan time.Time, stopped <-chan struct{}) bool {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for p.unaryInFlight.Load() > 0 {
		select {
		case <-graceOver:
			return false
		case <-stopped:
			return true
		case <-tick.C:
		}
	}
	return true
}

func (p *Proxy) connFor(method string) *grpc.ClientConn {
	service, _, _ := strings.Cut(strings.TrimPrefix(method, "/"), "/")
	if strings.HasSuffix(service, ".ImageService") {
		return p.image
	}
	return p.runtime
}

// forward is the one handler behind every method.
func (p *Proxy) forward(_ any, ss grpc.ServerStream) error {
	start := time.Now()
	method, ok := grpc.MethodFromServerStream(ss)
	if !ok {
		return status.Error(codes.Internal, "proxy: no method in stream")
	}
	ctx := outgoingContext(ss.Context())
	var err error
	if knownMethods[method] {
		p.unaryInFlight.Add(1)
		err = p.forwardUnary(ctx, method, ss)
		p.unaryInFlight.Add(-1)
	} else {
		err = p.forwardStream(ctx, method, ss)
	}
	if p.observer != nil {
		p.observer.ObserveCall(method, status.Code(err), time.Since(start))
	}
	if p.kubelet != nil {
		if peer, ok := PeerFromContext(ss.Context()); ok && peer.Kubelet {
			p.kubelet.KubeletCalled()
		}
	}
	return err
}

// outgoingContext carries the caller's metadata, deadline and cancellation upstream.
func outgoingContext(ctx context.Context) context.Context {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return ctx
	}
	// FromIncomingContext returns a copy: it is ours to change.
	delete(md, ":authority")
	return metadata.NewOutgoingContext(ctx, md)
}

func (p *Proxy) forwardUnary(ctx context.Context, method string, ss grpc.ServerStream) error {
	var req, resp frame
	if err := ss.RecvMsg(&req); err != nil {
		return err
	}
	hook, hooked := p.hooks[method]
	var reqBytes []byte
	var state any
	if hooked {
		reqBytes = req.bytes()
		if hook.Before != nil {
			rewritten, st, err := hook.Before(ctx, reqBytes)
			if err != nil {
				req.free()
				return err
			}
			state = st
			if rewritten != nil {
				reqBytes = rewritten
				req.setBytes(rewritten)
			}
		}
	}
	var header, trailer metadata.MD
	err := p.connFor(method).Invoke(ctx, method, &req, &resp,
		grpc.ForceCodecV2(rawCodec{}), grpc.Header(&header), grpc.Trailer(&trailer))
	if err != nil && hooked && hook.Answer != nil {
		if answer, ok := hook.Answer(ctx, reqBytes, err); ok {
			resp.setBytes(answer)
			err = nil
		}
	}
	if hooked && hook.After != nil {
		var respBytes []byte
		if err == nil {
			respBytes = resp.bytes()
		}
		err = hook.After(ctx, state, reqBytes, respBytes, err)
	}
	if len(header) > 0 {
		if herr := ss.SetHeader(header); herr != nil {
			p.log.Debug("set header", "method", method, "err", herr)
		}
	}
	ss.SetTrailer(trailer)
	if err != nil {
		resp.free()
		return err
	}
	return ss.SendMsg(&resp)
}

var bidi = &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}

// forwardStream pumps messages both ways: one upstream stream per client
// stream. The client's cancel cancels upstream; upstream's end reaches the client.
func (p *Proxy) forwardStream(ctx context.Context, method string, ss grpc.ServerStream) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cs, err := p.connFor(method).NewStream(ctx, bidi, method, grpc.ForceCodecV2(rawCodec{}))
	if err != nil {
		return err
	}
	go func() {
		for {
			var f frame
			if err := ss.RecvMsg(&f); err != nil {
				if errors.Is(err, io.EOF) {
					cs.CloseSend()
				} else {
					cancel()
				}
				return
			}
			if err := cs.SendMsg(&f); err != nil {
				return // the receive side below sees the upstream error
			}
		}
	}()
	go func() {
		select {
		case <-p.closing:
			cancel()
		case <-ctx.Done():
		}
	}()

	header, err := cs.Header()
	if err == nil && len(header) > 0 {
		if err := ss.SendHeader(header); err != nil {
			return err
		}
	}
	for {
		var f frame
		err := cs.RecvMsg(&f)
		if err != nil {
			ss.SetTrailer(cs.Trailer())
			if errors.Is(err, io.EOF) {
				return nil
			}
			if isClosing(p.closing) && status.Code(err) == codes.Canceled {
				return status.Error(codes.Unavailable, "criguard is shutting down")
			}
			return err
		}
		if err := ss.SendMsg(&f); err != nil {
			return err
		}
	}
}

func isClosing(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
