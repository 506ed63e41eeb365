package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The proxy's two connections carry no flow-control pings: with gRPC's bandwidth
// estimate on, each side pings its peer about once per message it receives, and
// that is a tenth of the proxy's work per call.
func TestForwardingSendsNoPings(t *testing.T) {
	dir := shortTempDir(t)
	ln, err := net.Listen("unix", filepath.Join(dir, "runtime.sock"))
	if err != nil {
		t.Fatal(err)
	}
	fromProxy := &recordingListener{Listener: ln}
	serveFake(t, &fakeRuntime{containers: 3}, fromProxy)
	p, err := New(Options{RuntimeEndpoint: "unix://" + ln.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	front, err := Listen("unix://"+filepath.Join(dir, "criguard.sock"), 0o660)
	if err != nil {
		t.Fatal(err)
	}
	go p.Serve(front)
	t.Cleanup(func() { p.Shutdown(time.Second) })

	var toClient recording
	conn, err := grpc.NewClient("unix://"+filepath.Join(dir, "criguard.sock"),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, "unix", filepath.Join(dir, "criguard.sock"))
			return &recordingConn{Conn: c, into: &toClient}, err
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rt := runtimeapi.NewRuntimeServiceClient(conn)
	ctx := ctxTimeout(t, 10*time.Second)
	const calls = 50
	for range calls {
		if _, err := rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{}); err != nil {
			t.Fatal(err)
		}
	}

	for _, wire := range fromProxy.recorded() {
		if n := pings(t, wire, true); n != 0 {
			t.Errorf("the proxy sent the runtime %d pings in %d calls, want none", n, calls)
		}
	}
	if n := pings(t, toClient.bytes(), false); n != 0 {
		t.Errorf("the proxy sent its client %d pings in %d calls, want none", n, calls)
	}
}

// pings counts the PING frames (not their acknowledgements) in one direction of an
// HTTP/2 connection; preface says whether it starts with the client's preface.
func pings(t *testing.T, wire []byte, preface bool) int {
	t.Helper()
	if preface {
		if !bytes.HasPrefix(wire, []byte(http2.ClientPreface)) {
			t.Fatalf("no HTTP/2 client preface in %d bytes", len(wire))
		}
		wire = wire[len(http2.ClientPreface):]
	}
	framer := http2.NewFramer(nil, bytes.NewReader(wire))
	n, frames := 0, 0
	for {
		f, err := framer.ReadFrame()
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			t.Fatalf("frame %d: %v", frames, err)
		}
		frames++
		if ping, ok := f.(*http2.PingFrame); ok && !ping.IsAck() {
			n++
		}
	}
	if frames == 0 {
		t.Fatal("no frame recorded")
	}
	return n
}

// recording keeps every byte read from a connection.
type recording struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (r *recording) bytes() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Clone(r.buf.Bytes())
}

type recordingConn struct {
	net.Conn
	into *recording
}

func (c *recordingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.into.mu.Lock()
	c.into.buf.Write(b[:n])
	c.into.mu.Unlock()
	return n, err
}

// recordingListener records what the server reads, connection by connection.
type recordingListener struct {
	net.Listener
	mu    sync.Mutex
	conns []*recording
}

func (l *recordingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	r := &recording{}
	l.mu.Lock()
	l.conns = append(l.conns, r)
	l.mu.Unlock()
	return &recordingConn{Conn: c, into: r}, nil
}

func (l *recordingListener) recorded() [][]byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	var wires [][]byte
	for _, r := range l.conns {
		wires = append(wires, r.bytes())
	}
	return wires
}
