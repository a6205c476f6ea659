package bench

import (
	"context"
	"net"
	"os"
	"path/filepath"

	"google.golang.org/grpc"

	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
)

// echoServer answers KeyValue Get and Set without storing anything: the cost
// of one gRPC hop over a unix socket, the baseline every series is compared to.
type echoServer struct {
	keyvaluev1.UnimplementedKeyValueServer
	value []byte
}

func (e *echoServer) Get(context.Context, *keyvaluev1.GetRequest) (*keyvaluev1.GetResponse, error) {
	return &keyvaluev1.GetResponse{Value: e.value}, nil
}

func (e *echoServer) Set(context.Context, *keyvaluev1.SetRequest) (*keyvaluev1.SetResponse, error) {
	return &keyvaluev1.SetResponse{}, nil
}

// StartEcho serves the echo on a new unix socket and returns its dial target
// and a stop function.
func StartEcho(value []byte) (string, func(), error) {
	dir, err := os.MkdirTemp("", "prism-echo-")
	if err != nil {
		return "", nil, err
	}
	path := filepath.Join(dir, "echo.sock")
	lis, err := net.Listen("unix", path)
	if err != nil {
		return "", nil, err
	}
	srv := grpc.NewServer()
	keyvaluev1.RegisterKeyValueServer(srv, &echoServer{value: value})
	go func() { _ = srv.Serve(lis) }()
	return "unix://" + path, func() { srv.Stop(); _ = os.RemoveAll(dir) }, nil
}
