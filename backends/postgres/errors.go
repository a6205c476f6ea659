package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/prism-suite/prism/backends/sdk"
)

// wrap turns an error from pgx into one the SDK maps to the right code. op
// is the "verb noun" the message starts with, e.g. `get "k"`.
//
//   - the caller's context ended: its error (DeadlineExceeded or Canceled),
//     whatever pgx made of it;
//   - SQLSTATE class 28 (credentials no longer valid): [sdk.ErrUnauthenticated];
//   - 42501 insufficient_privilege: PermissionDenied;
//   - 53100 disk_full, 53200 out_of_memory: [sdk.ErrFull];
//   - 40001, 40P01 (serialization failure, deadlock): Aborted;
//   - the network, a closed pool, class 08 (connection exception), 57P0x
//     (shutdown, cannot connect now), 53300 (too many connections):
//     [sdk.ErrUnavailable];
//   - anything else: as is (the SDK reports Internal).
func wrap(ctx context.Context, op string, err error) error {
	if cerr := ctxErr(ctx); cerr != nil {
		return fmt.Errorf("%s: %w", op, cerr)
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case strings.HasPrefix(pe.Code, "28"):
			return fmt.Errorf("%s: postgres no longer accepts this plugin's credentials (SQLSTATE %s): %w", op, pe.Code, sdk.ErrUnauthenticated)
		case pe.Code == "42501":
			return status.Errorf(codes.PermissionDenied, "%s: %s (SQLSTATE %s)", op, pe.Message, pe.Code)
		case pe.Code == "53100" || pe.Code == "53200":
			return fmt.Errorf("%s: %w: %s (SQLSTATE %s)", op, sdk.ErrFull, pe.Message, pe.Code)
		case pe.Code == "40001" || pe.Code == "40P01":
			return status.Errorf(codes.Aborted, "%s: %s (SQLSTATE %s)", op, pe.Message, pe.Code)
		}
	}
	if unavailable(err) {
		return fmt.Errorf("%s: %w: %w", op, sdk.ErrUnavailable, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// ctxErr is ctx.Err(), or DeadlineExceeded once the deadline has passed.
func ctxErr(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
		return context.DeadlineExceeded
	}
	return nil
}

// unavailable reports whether err means PostgreSQL cannot serve us now.
func unavailable(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return strings.HasPrefix(pe.Code, "08") || strings.HasPrefix(pe.Code, "57P") || pe.Code == "53300"
	}
	var netErr net.Error
	var connErr *pgconn.ConnectError
	return errors.As(err, &netErr) || errors.As(err, &connErr) || pgconn.Timeout(err) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		// The caller's context is alive (wrap checked), so a context error
		// comes from connect_timeout.
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		strings.Contains(err.Error(), "closed pool") || strings.Contains(err.Error(), "conn closed")
}

// unreachable reports whether err means no connection could be made at all.
func unreachable(err error) bool {
	var opErr *net.OpError
	return errors.Is(err, syscall.ECONNREFUSED) || (errors.As(err, &opErr) && opErr.Op == "dial")
}

// initError explains why Init could not use the server at addr, never
// including the password.
func initError(ctx context.Context, addr string, cred Credentials, err error) error {
	if cerr := ctxErr(ctx); cerr != nil {
		return fmt.Errorf("connect to postgres %s: %w (last error: %v)", addr, cerr, scrub(err, cred))
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case pe.Code == "28P01" || pe.Code == "28000":
			return fmt.Errorf("authenticate to postgres %s: postgres rejected the credentials for user %q (SQLSTATE %s): %w",
				addr, cred.user(), pe.Code, sdk.ErrUnauthenticated)
		case pe.Code == "3D000":
			return sdk.InvalidConfig("database", "postgres %s has no such database (SQLSTATE 3D000)", addr)
		case pe.Code == "3F000":
			return sdk.InvalidConfig("schema", "postgres %s has no such schema (SQLSTATE 3F000); create it first", addr)
		case pe.Code == "42501":
			return status.Errorf(codes.PermissionDenied, "prepare table on postgres %s: user %q may not create or use it (SQLSTATE 42501): %s",
				addr, cred.user(), pe.Message)
		}
	}
	// pgx asks for a password the server wants but was not given before it
	// sends anything; the message says so without a SQLSTATE.
	if cred.Password == "" && strings.Contains(err.Error(), "password") && !unreachable(err) {
		return fmt.Errorf("authenticate to postgres %s: postgres requires a password for user %q and none was given: %w",
			addr, cred.user(), sdk.ErrUnauthenticated)
	}
	if unavailable(err) {
		return fmt.Errorf("connect to postgres %s: %w: %w", addr, sdk.ErrUnavailable, scrubbed{err, cred})
	}
	return fmt.Errorf("connect to postgres %s: %w", addr, scrubbed{err, cred})
}

// scrubbed is an error whose message has the password removed, should any
// layer ever echo it; errors.Is and errors.As still see the original.
type scrubbed struct {
	err  error
	cred Credentials
}

func (s scrubbed) Error() string { return scrub(s.err, s.cred) }
func (s scrubbed) Unwrap() error { return s.err }

func scrub(err error, cred Credentials) string {
	msg := err.Error()
	if cred.Password != "" {
		msg = strings.ReplaceAll(msg, cred.Password, "[redacted]")
	}
	return msg
}
