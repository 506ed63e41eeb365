package criservice

import (
	"context"

	"google.golang.org/protobuf/proto"
)

// Hook mirrors proxy.Hook so that this package does not depend on the proxy.
type Hook struct {
	Before func(ctx context.Context, req []byte) (out []byte, state any, err error)
	After  func(ctx context.Context, state any, req, resp []byte, err error) error
	Answer func(ctx context.Context, req []byte, err error) ([]byte, bool)
}

const runtimeService = "/runtime.v1.RuntimeService/"

// Hooks are the calls criservice decodes, by full method name, one handler each.
// Every other call passes through the proxy untouched.
func (s *Service) Hooks() map[string]Hook {
	hooks := map[string]Hook{
		runtimeService + "RunPodSandbox":            s.runPodSandbox(),
		runtimeService + "RemovePodSandbox":         s.removePodSandbox(),
		runtimeService + "CreateContainer":          s.createContainer(),
		runtimeService + "StartContainer":           s.startContainer(),
		runtimeService + "UpdateContainerResources": s.updateContainerResources(),
		runtimeService + "StopContainer":            s.stopContainer(),
		runtimeService + "RemoveContainer":          s.removeContainer(),
		runtimeService + "ListPodSandboxStats":      {Answer: s.answerListPodSandboxStats},
		runtimeService + "PodSandboxStats":          {Answer: s.answerPodSandboxStats},
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
func intercept[Req, Resp proto.Message, E any](s *Service, h handler[Req, Resp, E]) Hook {
	var hook Hook
	if h.before != nil {
		hook.Before = func(ctx context.Context, reqB []byte) ([]byte, any, error) {
			c := &call[Req, E]{req: h.newReq()}
			if !s.decode(h.method, reqB, c.req) {
				return reqB, nil, nil
			}
			ctx, cancel := s.detached(ctx)
			defer cancel()
			if h.before(ctx, c) {
				return s.encode(h.method, c.req, reqB), c, nil
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
				if !s.decode(h.method, reqB, c.req) {
					return nil
				}
			}
			var resp Resp
			if h.newResp != nil {
				resp = h.newResp()
				if !s.decode(h.method, respB, resp) {
					return nil
				}
			}
			ctx, cancel := s.detached(ctx)
			defer cancel()
			return h.after(ctx, c, resp)
		}
	}
	return hook
}

// decode reads what a handler needs; a message it cannot decode is logged and
// left alone: the call itself already went through unchanged.
func (s *Service) decode(method string, b []byte, m proto.Message) bool {
	if err := s.codec.unmarshal(b, m); err != nil {
		s.log.Warn("cannot decode intercepted CRI message; not acting on it", "method", method, "err", err)
		return false
	}
	return true
}

// encode is a rewritten request; one that cannot be encoded leaves kubelet's,
// orig, to go on as it came.
func (s *Service) encode(method string, m proto.Message, orig []byte) []byte {
	out, err := s.codec.marshal(m)
	if err != nil {
		s.log.Warn("cannot encode rewritten CRI message; passing kubelet's", "method", method, "err", err)
		return orig
	}
	return out
}

// protoCodec decodes and encodes the intercepted messages: proto's, counted by tests.
type protoCodec struct {
	unmarshal func([]byte, proto.Message) error
	marshal   func(proto.Message) ([]byte, error)
}

// detached is the context for criguard's own work around a call: the caller's
// cancel must not cut a half-written throttle.
func (s *Service) detached(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), s.opts.ApplyTimeout)
}

// failed logs and counts a throttle that could not be applied; the reconcile
// loop retries it. A container that vanished in the meantime, or was being torn
// down, is not a failure.
func (s *Service) failed(scope, id string, err error) {
	if vanished(err) {
		s.log.Info(scope+" vanished before its throttle was applied", scope, id, "why", err)
		return
	}
	s.log.Error("throttle not applied; will retry", scope, id, "err", err)
	s.metrics.throttle("failed", scope)
}
