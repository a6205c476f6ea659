package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

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

// EnvEchoChild makes a binary that calls [ServeEchoIfChild] serve the echo
// as a separate process (the baseline of a cross-process hop).
const EnvEchoChild = "PRISM_BENCH_ECHO_CHILD"

// ServeEchoIfChild serves the echo and exits when this process was started by
// [StartEchoProcess]; otherwise it returns at once. Call it first in main.
func ServeEchoIfChild() {
	if os.Getenv(EnvEchoChild) != "1" {
		return
	}
	addr, stop, err := StartEcho(make([]byte, ValueSize))
	if err != nil {
		fmt.Fprintln(os.Stderr, "echo:", err)
		os.Exit(1)
	}
	fmt.Println(addr)
	_, _ = io.Copy(io.Discard, os.Stdin) // the parent keeps stdin open while it needs us
	stop()
	os.Exit(0)
}

// StartEchoProcess re-runs this binary as an echo server in its own process
// (it must call ServeEchoIfChild) and returns its dial target and a stop
// function, so the echo baseline crosses a process boundary like a plugin.
func StartEchoProcess() (string, func(), error) {
	self, err := os.Executable()
	if err != nil {
		return "", nil, fmt.Errorf("start echo process: %w", err)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), EnvEchoChild+"=1")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return "", nil, fmt.Errorf("start echo process: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return "", nil, fmt.Errorf("start echo process: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("start echo process: %w", err)
	}
	stop := func() { _ = stdin.Close(); _ = cmd.Wait() }
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		_ = cmd.Process.Kill()
		stop()
		return "", nil, fmt.Errorf("start echo process: read its address: %w", err)
	}
	return strings.TrimSpace(line), stop, nil
}
