package tracing

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/url"
	"strings"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// exportTimeout bounds one upload of a batch of spans.
const exportTimeout = 10 * time.Second

// otlpClient is the OTLP/gRPC transport of the exporter: the OTel SDK's
// otlptrace exporter (batching, the span → protobuf transform) over the
// collector's generated TraceService client.
//
// Why not otlptracegrpc (or otlptracehttp)? Both import
// google.golang.org/grpc/encoding/gzip, which registers gzip with gRPC for
// the whole process: from then on every gRPC client in it (the Go client,
// the proxy's calls to its plugins) advertises grpc-accept-encoding on
// every call, and every server parses it, even with tracing off: 5 more
// allocations and 1.2 KiB per proxied call (BenchmarkForwardTracing). This
// transport has no such side effect; it does no retries (the batch is
// dropped, as a collector that is down should never slow a call) and reads
// no OTEL_EXPORTER_OTLP_HEADERS.
type otlpClient struct {
	target string
	creds  credentials.TransportCredentials
	conn   *grpc.ClientConn
	svc    collectortrace.TraceServiceClient
}

// newOTLPClient returns the transport to endpoint: http://host:port
// (plaintext), https://host:port (TLS) or host:port (plaintext).
func newOTLPClient(endpoint string) (*otlpClient, error) {
	bad := fmt.Errorf("endpoint %q: want http://host:port, https://host:port or host:port", endpoint)
	if !strings.Contains(endpoint, "://") {
		if strings.ContainsAny(endpoint, "/ ") || !strings.Contains(endpoint, ":") {
			return nil, bad
		}
		return &otlpClient{target: endpoint, creds: insecure.NewCredentials()}, nil
	}
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return nil, bad
	}
	switch u.Scheme {
	case "http":
		return &otlpClient{target: u.Host, creds: insecure.NewCredentials()}, nil
	case "https":
		return &otlpClient{target: u.Host, creds: credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12})}, nil
	}
	return nil, bad
}

var _ otlptrace.Client = (*otlpClient)(nil)

// Start implements otlptrace.Client; the connection is lazy (it never
// blocks on a collector that is down).
func (c *otlpClient) Start(context.Context) error {
	conn, err := grpc.NewClient(c.target, grpc.WithTransportCredentials(c.creds))
	if err != nil {
		return fmt.Errorf("dial otlp collector %s: %w", c.target, err)
	}
	c.conn, c.svc = conn, collectortrace.NewTraceServiceClient(conn)
	return nil
}

// Stop implements otlptrace.Client.
func (c *otlpClient) Stop(context.Context) error {
	if c.conn == nil {
		return nil
	}
	return c.conn.Close()
}

// UploadTraces implements otlptrace.Client.
func (c *otlpClient) UploadTraces(ctx context.Context, spans []*tracepb.ResourceSpans) error {
	ctx, cancel := context.WithTimeout(ctx, exportTimeout)
	defer cancel()
	resp, err := c.svc.Export(ctx, &collectortrace.ExportTraceServiceRequest{ResourceSpans: spans})
	if err != nil {
		return fmt.Errorf("export spans to %s: %w", c.target, err)
	}
	if ps := resp.GetPartialSuccess(); ps != nil && ps.GetRejectedSpans() > 0 {
		return fmt.Errorf("export spans to %s: %d rejected: %s", c.target, ps.GetRejectedSpans(), ps.GetErrorMessage())
	}
	return nil
}
