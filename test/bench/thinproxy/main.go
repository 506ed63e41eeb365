// Command thinproxy is the benchmark's reference for one extra hop: the thinnest
// raw-bytes gRPC forwarder (one unknown-service handler, a pass-through codec, no
// hooks, no metrics, no logs). Unary calls only: the benchmark sends nothing else.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
)

// rawCodec hands the wire bytes through by reference, as criguard's proxy does.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return *(v.(*mem.BufferSlice)), nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	data.Ref()
	*(v.(*mem.BufferSlice)) = data
	return nil
}

func main() {
	listen := flag.String("listen", "", "unix socket path to serve on")
	upstream := flag.String("upstream", "", "runtime endpoint, unix:///path")
	flag.Parse()
	if err := run(*listen, *upstream); err != nil {
		fmt.Fprintln(os.Stderr, "thinproxy:", err)
		os.Exit(1)
	}
}

func run(listen, upstream string) error {
	server, err := newServer(upstream)
	if err != nil {
		return err
	}
	_ = os.Remove(listen)
	ln, err := net.Listen("unix", listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", listen, err)
	}
	return server.Serve(ln)
}

// newServer returns a gRPC server that forwards every unary call to upstream.
func newServer(upstream string) (*grpc.Server, error) {
	conn, err := grpc.NewClient("unix:"+strings.TrimPrefix(upstream, "unix://"),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", upstream, err)
	}
	forward := func(_ any, ss grpc.ServerStream) error {
		method, _ := grpc.MethodFromServerStream(ss)
		var req, resp mem.BufferSlice
		if err := ss.RecvMsg(&req); err != nil {
			return err
		}
		if err := conn.Invoke(ss.Context(), method, &req, &resp, grpc.ForceCodecV2(rawCodec{})); err != nil {
			return err
		}
		return ss.SendMsg(&resp)
	}
	return grpc.NewServer(grpc.ForceServerCodecV2(rawCodec{}), grpc.UnknownServiceHandler(forward)), nil
}
