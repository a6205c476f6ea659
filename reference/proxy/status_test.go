package proxy

import (
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestShortStatus: a plugin's 1 MB status message reaches the client cut to
// maxStatusMessageBytes, with its code and details.
func TestShortStatus(t *testing.T) {
	st, err := status.New(codes.InvalidArgument, strings.Repeat("m", 1<<20)).
		WithDetails(&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: "value"}}})
	if err != nil {
		t.Fatal(err)
	}
	got := status.Convert(shortStatus(st.Err()))
	if got.Code() != codes.InvalidArgument || len(got.Details()) != 1 {
		t.Errorf("code %v, %d details; want InvalidArgument and the detail", got.Code(), len(got.Details()))
	}
	if n := len(got.Message()); n > maxStatusMessageBytes+32 || !strings.HasSuffix(got.Message(), "[1048576 bytes]") {
		t.Errorf("message of %d bytes ending %q", n, got.Message()[max(0, n-20):])
	}
	short := status.Error(codes.NotFound, "get \"k\": not found")
	if shortStatus(short) != short {
		t.Error("a short status was changed")
	}
}
