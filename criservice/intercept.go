package criservice

import (
	"context"
	"log/slog"

	"github.com/criguard/criguard/cgroup"
	"google.golang.org/protobuf/proto"
)

// Hook mirrors proxy.Hook so that this package does not depend on the proxy.
type Hook struct {
	Before func(ctx context.Context, req []byte) (out []byte, state any, err error)
	After  func(ctx context.Context, state any, req, resp []byte, err error) error
	Answer func(ctx context.Context, req []byte, err error) ([]byte, bool)
}

const runtimeService = "/runtime.v1.RuntimeService/"

// criFront is the CRI front end: it decodes the few calls that matter, once each,
// and drives the engine's events with the pod and container they name. It holds no
// state of its own between calls.
type criFront struct {
	engine      *Service
	store       *store // the pods a CreateContainer and the stats calls name
	io          cgroup.IO
	controllers ControllerMounts
	codec       protoCodec
	log         *slog.Logger
}

// CRIHooks are the calls the CRI front end decodes, by full method name, one
// handler each, driving engine. Every other call passes through the proxy untouched.
func CRIHooks(engine *Service) map[string]Hook {
	return newCRIFront(engine).hooks()
}

func newCRIFront(engine *Service) *criFront {
	return &criFront{engine: engine, store: engine.store, io: engine.opts.IO, controllers: engine.opts.Controllers,
		codec: protoCodec{unmarshal: proto.Unmarshal, marshal: proto.Marshal}, log: engine.log}
}

func (f *criFront) hooks() map[string]Hook {
	hooks := map[string]Hook{
		runtimeService + "RunPodSandbox":            f.runPodSandbox(),
		runtimeService + "RemovePodSandbox":         f.removePodSandbox(),
		runtimeService + "CreateContainer":          f.createContainer(),
		runtimeService + "StartContainer":           f.startContainer(),
		runtimeService + "UpdateContainerResources": f.updateContainerResources(),
		runtimeService + "StopContainer":            f.stopContainer(),
		runtimeService + "RemoveContainer":          f.removeContainer(),
		runtimeService + "ListPodSandboxStats":      {Answer: f.answerListPodSandboxStats},
		runtimeService + "PodSandboxStats":          {Answer: f.answerPodSandboxStats},
	}
	for method, h := range hooks {
		if h.Before == nil && h.After == nil && h.Answer == nil {
			delete(hooks, method) // not needed on this host: forwarded undecoded
		}
	}
	return hooks
}

// call is one intercepted CRI call: its request, decoded once, and the engine's
// event begun before forwarding it (the container, its pod, the policy's decision
// and the plan), which the work after the reply goes on with. event is the zero
// value when Before did not run.
type call[Req proto.Message, E any] struct {
	req   Req
	event E
}

// handler is one intercepted method. before may change c.req and reports whether
// it did; after runs only when the runtime's reply is a success, refused when it is
// an error (and before ran). They run on a
// context detached from the caller's, bounded by --apply-timeout: kubelet's cancel
// must not cut a half-written throttle, and nothing here holds kubelet longer.
type handler[Req, Resp proto.Message, E any] struct {
	method  string
	newReq  func() Req
	newResp func() Resp // nil: after does not read the reply
	before  func(ctx context.Context, c *call[Req, E]) bool
	after   func(ctx context.Context, c *call[Req, E], resp Resp) error
	refused func(c *call[Req, E])
}

// intercept wraps a handler into the proxy's hook: it owns decoding (once per call)
// and encoding, detached contexts, and fail-open: a message it cannot decode is
// logged and left alone, and the call goes on as it came.
func intercept[Req, Resp proto.Message, E any](f *criFront, h handler[Req, Resp, E]) Hook {
	var hook Hook
	if h.before != nil {
		hook.Before = func(ctx context.Context, reqB []byte) ([]byte, any, error) {
			c := &call[Req, E]{req: h.newReq()}
			if !f.decode(h.method, reqB, c.req) {
				return reqB, nil, nil
			}
			ctx, cancel := f.engine.detached(ctx)
			defer cancel()
			if h.before(ctx, c) {
				return f.encode(h.method, c.req, reqB), c, nil
			}
			return reqB, c, nil
		}
	}
	if h.after != nil {
		hook.After = func(ctx context.Context, state any, reqB, respB []byte, callErr error) error {
			if callErr != nil {
				if c, ok := state.(*call[Req, E]); ok && h.refused != nil {
					h.refused(c)
				}
				return callErr
			}
			c, ok := state.(*call[Req, E])
			if !ok { // no Before, or one that could not decode it
				c = &call[Req, E]{req: h.newReq()}
				if !f.decode(h.method, reqB, c.req) {
					return nil
				}
			}
			var resp Resp
			if h.newResp != nil {
				resp = h.newResp()
				if !f.decode(h.method, respB, resp) {
					return nil
				}
			}
			ctx, cancel := f.engine.detached(ctx)
			defer cancel()
			return h.after(ctx, c, resp)
		}
	}
	return hook
}

// decode reads what a handler needs; a message it cannot decode is logged and
// left alone: the call itself already went through unchanged.
func (f *criFront) decode(method string, b []byte, m proto.Message) bool {
	if err := f.codec.unmarshal(b, m); err != nil {
		f.log.Warn("cannot decode intercepted CRI message; not acting on it", "method", method, "err", err)
		return false
	}
	return true
}

// encode is a rewritten request; one that cannot be encoded leaves kubelet's,
// orig, to go on as it came.
func (f *criFront) encode(method string, m proto.Message, orig []byte) []byte {
	out, err := f.codec.marshal(m)
	if err != nil {
		f.log.Warn("cannot encode rewritten CRI message; passing kubelet's", "method", method, "err", err)
		return orig
	}
	return out
}

// protoCodec decodes and encodes the intercepted messages: proto's, counted by tests.
type protoCodec struct {
	unmarshal func([]byte, proto.Message) error
	marshal   func(proto.Message) ([]byte, error)
}
