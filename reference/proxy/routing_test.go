package proxy_test

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
	"github.com/prism-suite/prism/reference/proxy"
)

func TestForwardedIsAnAllowList(t *testing.T) {
	for k, want := range map[string]bool{
		"x-request-id": true, "traceparent": true, "tracestate": true,
		"x-prism-namespace": true, "x-prism-tenant": true, "X-Prism-Tenant": true,

		"authorization": false, "Authorization": false, "x-authorization": false, "proxy-authorization": false,
		"cookie": false, "x-api-key": false, "x-prism-api-key": false, "x-prism-token": false,
		"x-prism-secret": false, "x-prism-session": false, "x-prism-password": false, "x-prism-credentials": false,
		"x-prism-auth": false, "x-amz-security-token": false, "x-forwarded-for": false, "user-agent": false,
		"grpc-timeout": false, "grpc-trace-bin": false, "content-type": false, ":authority": false,
		"baggage": false, "x-custom": false,
	} {
		if got := proxy.Forwarded(k); got != want {
			t.Errorf("Forwarded(%q) = %v, want %v", k, got, want)
		}
	}
}

// TestNamespaceMetadataIsExact: with auth off too, the namespace is given
// exactly once and is a name; x-request-id is bounded. Errors are
// InvalidArgument naming the metadata, and echo nothing the client sent.
func TestNamespaceMetadataIsExact(t *testing.T) {
	_, conn := start(t, testConfig(kvNamespace("a", ""), kvNamespace("b", "b")))
	kv := keyvaluev1.NewKeyValueClient(conn)
	long := strings.Repeat("n", 64<<10)
	for _, tc := range []struct {
		name string
		md   []string
		code codes.Code
		key  string
	}{
		{"two namespaces", []string{proxy.NamespaceKey, "a", proxy.NamespaceKey, "b"}, codes.InvalidArgument, proxy.NamespaceKey},
		{"the same namespace twice", []string{proxy.NamespaceKey, "a", proxy.NamespaceKey, "a"}, codes.InvalidArgument, proxy.NamespaceKey},
		{"empty namespace", []string{proxy.NamespaceKey, ""}, codes.InvalidArgument, proxy.NamespaceKey},
		{"64 KiB namespace", []string{proxy.NamespaceKey, long}, codes.InvalidArgument, proxy.NamespaceKey},
		{"namespace with a slash", []string{proxy.NamespaceKey, "a/../b"}, codes.InvalidArgument, proxy.NamespaceKey},
		{"129-byte namespace", []string{proxy.NamespaceKey, strings.Repeat("a", 129)}, codes.InvalidArgument, proxy.NamespaceKey},
		{"128-byte unknown namespace", []string{proxy.NamespaceKey, strings.Repeat("a", 128)}, codes.NotFound, proxy.NamespaceKey},
		{"two request ids", []string{proxy.NamespaceKey, "a", proxy.RequestIDKey, "1", proxy.RequestIDKey, "2"}, codes.InvalidArgument, proxy.RequestIDKey},
		{"a 64 KiB request id", []string{proxy.NamespaceKey, "a", proxy.RequestIDKey, long}, codes.InvalidArgument, proxy.RequestIDKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := nsCtx("")
			defer cancel()
			ctx = metadata.AppendToOutgoingContext(ctx, tc.md...)
			_, err := kv.Get(ctx, &keyvaluev1.GetRequest{Key: "k"})
			wantCode(t, tc.name, err, tc.code)
			msg := status.Convert(err).Message()
			if !strings.Contains(msg, tc.key) {
				t.Errorf("message %q does not name %s", msg, tc.key)
			}
			if len(msg) > 512 {
				t.Errorf("message is %d bytes, want it short", len(msg))
			}
		})
	}
}
