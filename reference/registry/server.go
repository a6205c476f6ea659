package registry

import (
	"context"

	registryv1 "github.com/prism-suite/prism/proto/prism/registry/v1"
)

// Lookup finds the coordinator that serves a call: method is the full
// method name ("/prism.registry.v1.Registry/Register"). It returns a status
// error when there is none (the proxy's routing errors), or the coordinator
// and a function to call with the call's outcome when it ends.
type Lookup func(ctx context.Context, method string) (*Coordinator, func(error), error)

// Server serves prism.registry.v1.Registry by handing each call to the
// coordinator its Lookup returns, so one gRPC server serves the registry of
// every registry namespace.
type Server struct {
	registryv1.UnimplementedRegistryServer
	lookup Lookup
}

// NewServer returns a Server over lookup.
func NewServer(lookup Lookup) *Server { return &Server{lookup: lookup} }

var methodPrefix = "/" + registryv1.Registry_ServiceDesc.ServiceName + "/"

func unary[Req, Resp any](s *Server, ctx context.Context, method string, req Req, fn func(*Coordinator, context.Context, Req) (Resp, error)) (resp Resp, err error) {
	c, done, err := s.lookup(ctx, methodPrefix+method)
	if err != nil {
		return resp, err
	}
	defer func() { done(err) }()
	return fn(c, ctx, req)
}

// Register implements registryv1.RegistryServer.
func (s *Server) Register(ctx context.Context, req *registryv1.RegisterRequest) (*registryv1.RegisterResponse, error) {
	return unary(s, ctx, "Register", req, (*Coordinator).Register)
}

// Unregister implements registryv1.RegistryServer.
func (s *Server) Unregister(ctx context.Context, req *registryv1.UnregisterRequest) (*registryv1.UnregisterResponse, error) {
	return unary(s, ctx, "Unregister", req, (*Coordinator).Unregister)
}

// Enumerate implements registryv1.RegistryServer.
func (s *Server) Enumerate(ctx context.Context, req *registryv1.EnumerateRequest) (*registryv1.EnumerateResponse, error) {
	return unary(s, ctx, "Enumerate", req, func(c *Coordinator, ctx context.Context, req *registryv1.EnumerateRequest) (*registryv1.EnumerateResponse, error) {
		return c.enumerate(ctx, req, true)
	})
}

// Multicast implements registryv1.RegistryServer.
func (s *Server) Multicast(ctx context.Context, req *registryv1.MulticastRequest) (*registryv1.MulticastResponse, error) {
	return unary(s, ctx, "Multicast", req, (*Coordinator).Multicast)
}

// Receive implements registryv1.RegistryServer.
func (s *Server) Receive(stream registryv1.Registry_ReceiveServer) (err error) {
	c, done, err := s.lookup(stream.Context(), methodPrefix+"Receive")
	if err != nil {
		return err
	}
	defer func() { done(err) }()
	return c.Receive(stream)
}
