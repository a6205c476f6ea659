package sdk

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Sentinel errors a driver returns (wrapped as it likes); the SDK maps them to
// gRPC status codes.
var (
	// ErrNotFound: the key (or other named thing) does not exist → NotFound.
	ErrNotFound = errors.New("not found")
	// ErrFull: a capacity or quota is reached → ResourceExhausted.
	ErrFull = errors.New("capacity exhausted")
	// ErrUnavailable: the backend cannot be reached → Unavailable.
	ErrUnavailable = errors.New("backend unavailable")
	// ErrUnauthenticated: the backend rejected the credentials → Unauthenticated.
	ErrUnauthenticated = errors.New("backend rejected credentials")
	// ErrInvalid: the request is invalid in a way only the driver can tell → InvalidArgument.
	ErrInvalid = errors.New("invalid argument")
)

// ConfigError reports a bad config field; Initialize answers InvalidArgument
// with a message naming the field.
type ConfigError struct {
	Field  string
	Reason string
}

// Error implements error.
func (e *ConfigError) Error() string { return fmt.Sprintf("config field %q: %s", e.Field, e.Reason) }

// InvalidConfig returns a *ConfigError for field.
func InvalidConfig(field, format string, args ...any) error {
	return &ConfigError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// ToStatus maps a driver error to a gRPC status error. Status errors pass
// through unchanged; unknown errors become Internal.
func ToStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	var ce *ConfigError
	switch {
	case errors.As(err, &ce):
		return status.Error(codes.InvalidArgument, ce.Error())
	case errors.Is(err, ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, ErrFull):
		return status.Error(codes.ResourceExhausted, err.Error())
	case errors.Is(err, ErrUnavailable):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, ErrUnauthenticated):
		return status.Error(codes.Unauthenticated, err.Error())
	case errors.Is(err, ErrInvalid):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}
