package proxy

import (
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
)

// frame is one gRPC message as received: its bytes are forwarded as they
// are, never unmarshalled. The frame holds one reference to its buffers,
// which passes to gRPC when the frame is sent.
type frame struct {
	data mem.BufferSlice
}

// free releases the frame's buffers when it will not be sent.
func (f *frame) free() {
	if f.data != nil {
		f.data.Free()
		f.data = nil
	}
}

// rawCodec passes frames through untouched and handles every other message
// (health, reflection) with the proto codec. It is named "proto" so the
// content type on the wire stays application/grpc+proto.
type rawCodec struct{ fallback encoding.CodecV2 }

func newRawCodec() rawCodec { return rawCodec{fallback: encoding.GetCodecV2(proto.Name)} }

func (c rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	if f, ok := v.(*frame); ok {
		out := f.data
		f.data = nil // gRPC frees it once written
		if out == nil {
			out = mem.BufferSlice{}
		}
		return out, nil
	}
	return c.fallback.Marshal(v)
}

func (c rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if f, ok := v.(*frame); ok {
		data.Ref()
		f.data = data
		return nil
	}
	return c.fallback.Unmarshal(data, v)
}

func (rawCodec) Name() string { return proto.Name }

// TakeEncoded gives a builtin's in-process channel the frame's bytes and
// their reference (sdk.Encoded): the driver's side decodes and frees them.
func (f *frame) TakeEncoded() mem.BufferSlice {
	d := f.data
	f.data = nil
	return d
}

// SetEncoded takes a response a builtin's channel encoded (sdk.Encoded).
func (f *frame) SetEncoded(d mem.BufferSlice) { f.data = d }
