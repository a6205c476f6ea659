package auth

import (
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Kinds of [Error], for errors.Is.
var (
	// ErrUnauthenticated is any problem with the token or its absence. Its
	// message is the only one a client sees, whatever the problem was.
	ErrUnauthenticated = errors.New("invalid or missing credentials")
	// ErrPermissionDenied is a valid token without the grant a call needs.
	ErrPermissionDenied = errors.New("permission denied")
	// ErrUnavailable is an issuer whose signing keys could not be fetched
	// yet (discovery or JWKS failing): no token can be checked.
	ErrUnavailable = errors.New("authentication is unavailable: the issuer's signing keys could not be fetched")
)

// Error is what [Authorizer.Verify] and [Authorizer.Authorize] return. Its
// Error() is the message for the client: generic for [ErrUnauthenticated]
// and [ErrUnavailable], naming the namespace and access for
// [ErrPermissionDenied]. Reason says what exactly was wrong, for a debug log
// field only; it never holds the token.
type Error struct {
	// Kind is ErrUnauthenticated, ErrPermissionDenied or ErrUnavailable.
	Kind error
	// Reason is the detail for logs ("token expired", "unknown kid ...").
	Reason string
	// Namespace and Access are set for ErrPermissionDenied.
	Namespace string
	Access    Access
	// Subject is the token's sub when the token was valid.
	Subject string
}

// Error returns the client-facing message.
func (e *Error) Error() string {
	if e.Kind == ErrPermissionDenied {
		return fmt.Sprintf("permission denied: the token does not grant %s access to namespace %q", e.Access, e.Namespace)
	}
	return e.Kind.Error()
}

// Unwrap returns Kind.
func (e *Error) Unwrap() error { return e.Kind }

// Code is the gRPC code: Unauthenticated, PermissionDenied or Unavailable.
func (e *Error) Code() codes.Code {
	switch e.Kind {
	case ErrPermissionDenied:
		return codes.PermissionDenied
	case ErrUnavailable:
		return codes.Unavailable
	}
	return codes.Unauthenticated
}

// GRPCStatus makes status.Convert and status.Code see the right code and
// the client-facing message.
func (e *Error) GRPCStatus() *status.Status { return status.New(e.Code(), e.Error()) }

func unauthenticated(format string, a ...any) *Error {
	return &Error{Kind: ErrUnauthenticated, Reason: fmt.Sprintf(format, a...)}
}

// quote shortens an untrusted string for a log reason.
func quote(s string) string {
	const max = 64
	if len(s) > max {
		return fmt.Sprintf("%q…", s[:max])
	}
	return fmt.Sprintf("%q", s)
}
