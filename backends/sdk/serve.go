package sdk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/prism-suite/prism/proto/handshake"
	"github.com/prism-suite/prism/proto/tracing"
)

// ShutdownGrace bounds how long a plugin process drains when its host goes
// away or it receives SIGTERM: PROTOCOL.md's 3 s, inside the host's stop
// grace (5 s) so that releasing the backend and exiting still fit.
const ShutdownGrace = 3 * time.Second

// Serve runs d as a plugin process and returns the process exit code:
// it listens (unix socket by default, TCP when PRISM_PLUGIN_NETWORK=tcp),
// prints the one handshake line to stdout, logs slog JSON to stderr, and
// exits when stdin closes or on SIGTERM/SIGINT. With OTEL_EXPORTER_OTLP_ENDPOINT
// (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) set, it continues its callers'
// traces and exports them over OTLP/gRPC ([WithTracing], package
// proto/tracing); without, nothing of tracing is installed. A thin main is:
//
//	func main() { os.Exit(sdk.Serve(memstore.New())) }
func Serve(d Driver, opts ...ServerOption) int {
	if os.Getenv(handshake.EnvMagic) != handshake.MagicValue {
		fmt.Fprintf(os.Stderr, "This binary is a Prism plugin (%s). It is started by a host, not by hand:\n"+
			"  prism-accept --plugin %s      certify it\n"+
			"  prism-proxy --config proxy.yaml     serve it through the reference proxy\n",
			d.Describe().Name, os.Args[0])
		return 1
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: logLevel()})).
		With("plugin", d.Describe().Name, "pid", os.Getpid())
	tcfg, err := tracing.FromEnv(os.Getenv)
	if err != nil {
		log.Error("tracing", "error", err.Error())
		return 1
	}
	tr, err := tracing.Start(context.Background(), tcfg, serviceName(os.Args), tracing.ContinueOnly())
	if err != nil {
		log.Error("tracing", "error", err.Error())
		return 1
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), ShutdownGrace)
		defer cancel()
		if err := tr.Shutdown(ctx); err != nil {
			log.Warn("tracing", "error", err.Error())
		}
	}()
	opts = append([]ServerOption{WithLogger(log), WithTracing(tr)}, opts...)
	srv := NewServer(d, opts...)

	lis, cleanup, err := listen()
	if err != nil {
		log.Error("listen", "error", err.Error())
		return 1
	}
	defer cleanup()
	line := handshake.Line{Version: handshake.ProtocolVersion, Network: lis.Addr().Network(), Address: lis.Addr().String()}
	if _, err := fmt.Fprintln(os.Stdout, line.String()); err != nil {
		log.Error("print handshake", "error", err.Error())
		return 1
	}
	log.Info("serving", "network", line.Network, "address", line.Address)

	served := make(chan error, 1)
	go func() { served <- srv.GRPC().Serve(lis) }()

	hostGone := make(chan struct{})
	go func() {
		// The host keeps our stdin open for as long as it lives.
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(hostGone)
	}()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)

	select {
	case <-hostGone:
		log.Info("stdin closed, exiting")
	case s := <-sigs:
		log.Info("signal, exiting", "signal", s.String())
	case err := <-served:
		if err != nil {
			log.Error("serve", "error", err.Error())
			return 1
		}
		return 0
	}
	srv.Shutdown(ShutdownGrace)
	return 0
}

func logLevel() slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(os.Getenv("PRISM_LOG_LEVEL"))); err != nil {
		return slog.LevelInfo
	}
	return l
}

func listen() (net.Listener, func(), error) {
	switch n := os.Getenv(handshake.EnvNetwork); n {
	case "", "unix":
		dir := os.Getenv(handshake.EnvSocketDir)
		made := false
		if dir == "" {
			d, err := os.MkdirTemp("", "prism-plugin-")
			if err != nil {
				return nil, nil, fmt.Errorf("create socket dir: %w", err)
			}
			dir, made = d, true
		}
		path := filepath.Join(dir, fmt.Sprintf("plugin-%d.sock", os.Getpid()))
		lis, err := net.Listen("unix", path)
		if err != nil {
			return nil, nil, fmt.Errorf("listen unix %s: %w", path, err)
		}
		return lis, func() {
			_ = lis.Close()
			_ = os.Remove(path)
			if made {
				_ = os.Remove(dir)
			}
		}, nil
	case "tcp":
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, nil, fmt.Errorf("listen tcp: %w", err)
		}
		return lis, func() { _ = lis.Close() }, nil
	default:
		return nil, nil, errors.New("listen: " + handshake.EnvNetwork + " must be unix or tcp, got " + n)
	}
}
