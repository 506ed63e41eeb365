// Command thinproxy is the benchmark's reference for one extra hop: the thinnest
// raw-bytes gRPC forwarder (one unknown-service handler, a pass-through codec, no
// hooks, no metrics, no logs). Unary calls only: the benchmark sends nothing else.
// With -metadata it also passes the caller's metadata upstream and the runtime's
// headers and trailers back, as a correct CRI proxy must: the reference that tells
// criguard's own cost from the price of that transparency. With -metrics-addr it
// counts the calls it forwarded (thin_calls_total on /metrics), so an idle window
// under kubelet, whose call rate varies, is compared per call too. With -tuned it
// takes criguard's transport settings (fixed flow-control windows, four stream
// workers): the reference that tells criguard's own cost from what those settings save.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"sync/atomic"

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
	tuned := flag.Bool("tuned", false, "criguard's transport settings: fixed flow-control windows, four stream workers")
	metricsAddr := flag.String("metrics-addr", "", "serve the call count on http://ADDR/metrics (empty: off)")
	flag.Parse()
	if err := run(*listen, *upstream, *withMetadata, *tuned, *metricsAddr); err != nil {
		fmt.Fprintln(os.Stderr, "thinproxy:", err)
		os.Exit(1)
	}
}

func run(listen, upstream string, withMetadata, tuned bool, metricsAddr string) error {
	var calls atomic.Int64
	server, err := newServer(upstream, withMetadata, tuned, &calls)
	if err != nil {
		return err
	}
	if metricsAddr != "" {
		if err := serveCalls(metricsAddr, &calls); err != nil {
			return err
		}
	}
	_ = os.Remove(listen)
	ln, err := net.Listen("unix", listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", listen, err)
	}
	return server.Serve(ln)
}

// serveCalls serves the call count and logs its address as criguard does (one JSON
// line, "metrics serving" with addr), where the benchmark looks for it. The answer is
// written by hand, not by net/http's server, so that counting touches next to none
// of the reference's pages (its RSS is a benchmark figure).
func serveCalls(addr string, calls *atomic.Int64) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = conn.Read(make([]byte, 4096)) // the GET; its content does not matter
			_, _ = fmt.Fprintf(conn, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nthin_calls_total %d\n", calls.Load())
			conn.Close()
		}
	}()
	return json.NewEncoder(os.Stderr).Encode(map[string]string{"msg": "metrics serving", "addr": ln.Addr().String()})
}

// newServer returns a gRPC server that forwards every unary call to upstream,
// counting them in calls.
func newServer(upstream string, withMetadata, tuned bool, calls *atomic.Int64) (*grpc.Server, error) {
	dialOpts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	serverOpts := []grpc.ServerOption{grpc.ForceServerCodecV2(rawCodec{})}
	if tuned { // the values of criguard's proxy package
		dialOpts = append(dialOpts, grpc.WithStaticStreamWindowSize(4<<20), grpc.WithStaticConnWindowSize(16<<20))
		serverOpts = append(serverOpts, grpc.StaticStreamWindowSize(4<<20), grpc.StaticConnWindowSize(16<<20), grpc.NumStreamWorkers(4))
	}
	conn, err := grpc.NewClient("unix:"+strings.TrimPrefix(upstream, "unix://"), dialOpts...)
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
		calls.Add(1)
		if err != nil {
			return err
		}
		return ss.SendMsg(&resp)
	}
	return grpc.NewServer(append(serverOpts, grpc.UnknownServiceHandler(forward))...), nil
}
