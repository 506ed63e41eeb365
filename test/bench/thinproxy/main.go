// Command thinproxy is the benchmark's reference for one extra hop: the thinnest
// raw-bytes gRPC forwarder (one unknown-service handler, a pass-through codec, no
// hooks, no metrics, no logs). Unary calls only: the benchmark sends nothing else.
// With -metadata it also passes the caller's metadata upstream and the runtime's
// headers and trailers back, as a correct CRI proxy must: the reference that tells
// criguard's own cost from the price of that transparency.
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
	"google.golang.org/grpc/metadata"
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
	withMetadata := flag.Bool("metadata", false, "forward metadata, headers and trailers")
	flag.Parse()
	if err := run(*listen, *upstream, *withMetadata); err != nil {
		fmt.Fprintln(os.Stderr, "thinproxy:", err)
		os.Exit(1)
	}
}

func run(listen, upstream string, withMetadata bool) error {
	server, err := newServer(upstream, withMetadata)
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
func newServer(upstream string, withMetadata bool) (*grpc.Server, error) {
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
		ctx, opts := ss.Context(), []grpc.CallOption{grpc.ForceCodecV2(rawCodec{})}
		var header, trailer metadata.MD
		if withMetadata {
			md, _ := metadata.FromIncomingContext(ctx) // already a copy
			delete(md, ":authority")
			ctx = metadata.NewOutgoingContext(ctx, md)
			opts = append(opts, grpc.Header(&header), grpc.Trailer(&trailer))
		}
		err := conn.Invoke(ctx, method, &req, &resp, opts...)
		if withMetadata {
			if len(header) > 0 {
				_ = ss.SetHeader(header)
			}
			ss.SetTrailer(trailer)
		}
		if err != nil {
			return err
		}
		return ss.SendMsg(&resp)
	}
	return grpc.NewServer(grpc.ForceServerCodecV2(rawCodec{}), grpc.UnknownServiceHandler(forward)), nil
}
