// Package otlptest is an OTLP/gRPC trace collector for tests: it listens on
// 127.0.0.1, keeps every span it is sent with its service name, and lets a
// test wait for the spans it expects (polling with a deadline).
package otlptest

import (
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
)

// Receiver is a running collector; [Start] makes one.
type Receiver struct {
	collectortrace.UnimplementedTraceServiceServer
	// Addr is its host:port; the OTLP endpoint is "http://" + Addr.
	Addr string

	mu    sync.Mutex
	spans []Span
}

// Span is a received span and the service.name of its resource.
type Span struct {
	Service string
	*tracepb.Span
}

// TraceID, SpanID and ParentID are the span's ids in hex ("" for no parent).
func (s Span) TraceID() string  { return hex.EncodeToString(s.TraceId) }
func (s Span) SpanID() string   { return hex.EncodeToString(s.Span.SpanId) }
func (s Span) ParentID() string { return hex.EncodeToString(s.ParentSpanId) }

// Attr returns the string attribute k ("" when absent).
func (s Span) Attr(k string) string {
	for _, a := range s.Attributes {
		if a.Key == k {
			return a.GetValue().GetStringValue()
		}
	}
	return ""
}

func (s Span) String() string {
	return fmt.Sprintf("%s %q kind=%v span=%s parent=%s", s.Service, s.Name, s.Kind, s.SpanID(), s.ParentID())
}

// Start runs a Receiver on 127.0.0.1 until the test ends.
func Start(t testing.TB) *Receiver {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &Receiver{Addr: lis.Addr().String()}
	srv := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(srv, r)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return r
}

// Endpoint is the OTLP endpoint of r.
func (r *Receiver) Endpoint() string { return "http://" + r.Addr }

// Export implements the collector's TraceService.
func (r *Receiver) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		var service string
		for _, a := range rs.GetResource().GetAttributes() {
			if a.Key == "service.name" {
				service = a.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, sp := range ss.GetSpans() {
				r.spans = append(r.spans, Span{Service: service, Span: sp})
			}
		}
	}
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

// Spans returns the spans received so far.
func (r *Receiver) Spans() []Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.spans)
}

// Trace returns the spans received so far of trace id (hex).
func (r *Receiver) Trace(id string) []Span {
	var out []Span
	for _, s := range r.Spans() {
		if s.TraceID() == id {
			out = append(out, s)
		}
	}
	return out
}

// WaitFor polls until ok holds for the spans received, or fails the test
// after timeout, listing what it got.
func (r *Receiver) WaitFor(t testing.TB, what string, timeout time.Duration, ok func([]Span) bool) []Span {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := r.Spans()
		if ok(got) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v; received %d spans:\n%s", what, timeout, len(got), List(got))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// List prints spans one a line, for failure messages.
func List(spans []Span) string {
	var b strings.Builder
	for _, s := range spans {
		fmt.Fprintf(&b, "  %s trace=%s\n", s, s.TraceID())
	}
	return b.String()
}
