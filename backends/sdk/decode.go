package sdk

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	protoapi "google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// decodeCodec is gRPC's proto codec, except that a Prism message (of the
// prism.* packages) that does not decode is not an error to gRPC, which
// would answer Internal at once: the codec remembers it, and the service's
// handler answers InvalidArgument for it (a malformed request, such as a
// string field that is not UTF-8) before the message is used (see
// [decodeFailures.desc], which wraps every Prism service the SDK serves).
type decodeCodec struct {
	encoding.CodecV2
	failed *decodeFailures
}

func newDecodeCodec(failed *decodeFailures) decodeCodec {
	return decodeCodec{CodecV2: encoding.GetCodecV2(proto.Name), failed: failed}
}

// Unmarshal decodes with the proto codec; a Prism message that does not
// decode is remembered instead of failing.
func (c decodeCodec) Unmarshal(data mem.BufferSlice, v any) error {
	err := c.CodecV2.Unmarshal(data, v)
	if err != nil {
		if m, ok := v.(protoapi.Message); ok && strings.HasPrefix(string(m.ProtoReflect().Descriptor().FullName()), "prism.") {
			if f := badUTF8Field(m.ProtoReflect().Descriptor(), data.Materialize()); f != "" {
				err = fmt.Errorf("field %s: string is not valid UTF-8", f)
			}
			c.failed.m.Store(v, err)
			return nil
		}
	}
	return err
}

// Name is "proto", so the content type on the wire stays application/grpc+proto.
func (decodeCodec) Name() string { return proto.Name }

// badUTF8Field returns the path of the first string field of a message of
// type md in b whose value is not UTF-8 ("key", "subscription.topic"), or
// "" when there is none (the message fails to decode for another reason).
func badUTF8Field(md protoreflect.MessageDescriptor, b []byte) string {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return ""
		}
		b = b[n:]
		if typ != protowire.BytesType {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return ""
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return ""
		}
		b = b[n:]
		fd := md.Fields().ByNumber(num)
		if fd == nil {
			continue
		}
		switch fd.Kind() {
		case protoreflect.StringKind:
			if !utf8.Valid(v) {
				return string(fd.Name())
			}
		case protoreflect.MessageKind:
			if inner := badUTF8Field(fd.Message(), v); inner != "" {
				return string(fd.Name()) + "." + inner
			}
		}
	}
	return ""
}

// decodeFailures holds the messages that failed to decode until their
// handler turns the error into InvalidArgument.
type decodeFailures struct{ m sync.Map }

// check returns InvalidArgument when v did not decode, else err.
func (d *decodeFailures) check(v any, err error) error {
	if e, ok := d.m.LoadAndDelete(v); ok {
		return status.Errorf(codes.InvalidArgument, "decode request: %v", e)
	}
	return err
}

// desc returns a copy of sd whose handlers answer InvalidArgument for a
// request message that does not decode.
func (d *decodeFailures) desc(sd *grpc.ServiceDesc) *grpc.ServiceDesc {
	c := *sd
	c.Methods = append([]grpc.MethodDesc(nil), sd.Methods...)
	for i := range c.Methods {
		h := c.Methods[i].Handler
		c.Methods[i].Handler = func(srv any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
			return h(srv, ctx, func(v any) error { return d.check(v, dec(v)) }, ic)
		}
	}
	c.Streams = append([]grpc.StreamDesc(nil), sd.Streams...)
	for i := range c.Streams {
		h := c.Streams[i].Handler
		c.Streams[i].Handler = func(srv any, ss grpc.ServerStream) error {
			return h(srv, decodeStream{ServerStream: ss, d: d})
		}
	}
	return &c
}

// decodeStream answers InvalidArgument for a stream message that does not
// decode.
type decodeStream struct {
	grpc.ServerStream
	d *decodeFailures
}

func (s decodeStream) RecvMsg(m any) error { return s.d.check(m, s.ServerStream.RecvMsg(m)) }
