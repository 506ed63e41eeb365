package proxy

import (
	"fmt"

	"google.golang.org/grpc/mem"
)

// frame is one gRPC message carried as opaque bytes. The proxy never decodes a
// message it does not intercept, so it forwards methods it has never heard of.
type frame struct {
	// bufs holds the received wire bytes by reference (no copy) until they are
	// marshaled again, which hands the reference back to gRPC to free.
	bufs mem.BufferSlice
}

// bytes returns the message as one contiguous slice (a copy), for hooks.
func (f *frame) bytes() []byte { return f.bufs.Materialize() }

// setBytes replaces the message, e.g. with a request a hook rewrote.
func (f *frame) setBytes(b []byte) {
	f.free()
	f.bufs = mem.BufferSlice{mem.SliceBuffer(b)}
}

func (f *frame) free() {
	f.bufs.Free()
	f.bufs = nil
}

// rawCodec passes frames through unchanged. Its name is "proto" so the
// content-type on both sides stays application/grpc+proto.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	f, ok := v.(*frame)
	if !ok {
		return nil, fmt.Errorf("proxy: raw codec cannot marshal %T", v)
	}
	out := f.bufs
	f.bufs = nil // ownership passes to gRPC
	if out == nil {
		out = mem.BufferSlice{}
	}
	return out, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	f, ok := v.(*frame)
	if !ok {
		return fmt.Errorf("proxy: raw codec cannot unmarshal into %T", v)
	}
	data.Ref()
	f.bufs = data
	return nil
}
