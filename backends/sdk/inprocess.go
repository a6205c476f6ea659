package sdk

import (
	"context"

	"github.com/fullstorydev/grpchan/inprocgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"
)

// Encoded is a message a caller of [Server.InProcess] holds as its encoded
// bytes (a proxy that forwards frames it never unmarshals). The in-process
// channel decodes an Encoded request into the typed request with the SDK's
// decode rules (a string that is not UTF-8 is InvalidArgument, as over a
// socket) and encodes a typed response into an Encoded one, so a message is
// unmarshalled once and marshalled once between the caller and the driver.
type Encoded interface {
	// TakeEncoded returns the message's bytes and gives up its reference to
	// them: the channel frees them once decoded. The channel calls it on the
	// server's goroutine, so the caller must not touch a request message
	// once it is passed to Invoke or SendMsg.
	TakeEncoded() mem.BufferSlice
	// SetEncoded gives the message data, and the one reference to it.
	SetEncoded(data mem.BufferSlice)
}

// InProcess returns a connection to s that runs in this process: the same
// services, interceptors, decode rules, lifecycle state machine and gRPC
// health as [Server.GRPC] serves on a socket, with no socket, no handshake
// and no HTTP/2 in between. The call's outgoing metadata becomes the
// driver's incoming metadata; its deadline and cancellation carry over.
// Messages are typed protobuf messages or [Encoded]. Every call returns the
// same connection; [Server.Shutdown] or the Lifecycle service's Stop ends
// the driver as for a process.
func (s *Server) InProcess() grpc.ClientConnInterface {
	s.inproc.once.Do(func() {
		unary, stream := s.unary, s.stream
		if s.tracing != nil {
			unary = append([]grpc.UnaryServerInterceptor{s.inprocTraceUnary}, unary...)
			stream = append([]grpc.StreamServerInterceptor{s.inprocTraceStream}, stream...)
		}
		ch := (&inprocgrpc.Channel{}).
			WithCloner(encodedCloner{codec: newDecodeCodec(s.failed)}).
			WithServerUnaryInterceptor(chainUnary(unary)).
			WithServerStreamInterceptor(chainStream(stream))
		s.register(ch)
		s.inproc.ch = ch
	})
	return s.inproc.ch
}

// encodedMsg is a message in flight on the in-process channel's streams:
// its bytes, encoded once by the sender.
type encodedMsg struct{ data mem.BufferSlice }

// encodedCloner is the in-process channel's Cloner: a message crosses as
// bytes, encoded by the side that holds it typed and decoded, with the
// SDK's decode codec, by the side that wants it typed. An [Encoded] message
// passes its bytes on untouched.
type encodedCloner struct{ codec decodeCodec }

func (c encodedCloner) take(in any) (mem.BufferSlice, error) {
	switch m := in.(type) {
	case *encodedMsg:
		d := m.data
		m.data = nil
		return d, nil
	case Encoded:
		d := m.TakeEncoded()
		if d == nil {
			d = mem.BufferSlice{}
		}
		return d, nil
	default:
		return c.codec.Marshal(in)
	}
}

// Clone encodes in (a stream message, sent now and received later).
func (c encodedCloner) Clone(in any) (any, error) {
	d, err := c.take(in)
	if err != nil {
		return nil, err
	}
	return &encodedMsg{data: d}, nil
}

// Copy moves in into out: its bytes into an Encoded out, or decoded into a
// typed one. A Prism message that does not decode is remembered for its
// handler, which answers InvalidArgument (see decodeCodec).
func (c encodedCloner) Copy(out, in any) error {
	d, err := c.take(in)
	if err != nil {
		return err
	}
	if e, ok := out.(Encoded); ok {
		e.SetEncoded(d)
		return nil
	}
	defer d.Free()
	return c.codec.Unmarshal(d, out)
}

// chainUnary chains interceptors the way grpc.ChainUnaryInterceptor does:
// the first is the outermost.
func chainUnary(is []grpc.UnaryServerInterceptor) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		next := h
		for i := len(is) - 1; i >= 0; i-- {
			in, inner := is[i], next
			next = func(ctx context.Context, req any) (any, error) { return in(ctx, req, info, inner) }
		}
		return next(ctx, req)
	}
}

// chainStream chains stream interceptors, the first outermost.
func chainStream(is []grpc.StreamServerInterceptor) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		next := h
		for i := len(is) - 1; i >= 0; i-- {
			in, inner := is[i], next
			next = func(srv any, ss grpc.ServerStream) error { return in(srv, ss, info, inner) }
		}
		return next(srv, ss)
	}
}
