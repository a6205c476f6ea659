package redis

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/prism-suite/prism/backends/sdk"
)

// wrap turns an error from go-redis into one the SDK maps to the right code.
// op is the "verb noun" the message starts with, e.g. `get "k"`.
//
//   - the caller's context ended: its error (DeadlineExceeded or Canceled),
//     whatever go-redis made of it;
//   - the network, the pool, a timeout, a server that is loading, read-only
//     or in failover: [sdk.ErrUnavailable];
//   - NOAUTH / WRONGPASS (credentials changed under us): [sdk.ErrUnauthenticated];
//   - NOPERM: PermissionDenied;
//   - OOM: [sdk.ErrFull];
//   - anything else (WRONGTYPE on a key another client wrote, say): as is,
//     which the SDK reports as Internal.
func wrap(ctx context.Context, op string, err error) error {
	if cerr := ctxErr(ctx); cerr != nil {
		return fmt.Errorf("%s: %w", op, cerr)
	}
	switch {
	case goredis.IsAuthError(err):
		return fmt.Errorf("%s: redis no longer accepts this plugin's credentials (%s): %w", op, redisCode(err), sdk.ErrUnauthenticated)
	case goredis.IsPermissionError(err):
		return status.Errorf(codes.PermissionDenied, "%s: %v", op, err)
	case goredis.IsOOMError(err):
		return fmt.Errorf("%s: %w: %w", op, sdk.ErrFull, err)
	case unavailable(err):
		return fmt.Errorf("%s: %w: %w", op, sdk.ErrUnavailable, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// ctxErr is ctx.Err(), or DeadlineExceeded once the deadline has passed: a
// socket deadline set from ctx's can fire a moment before ctx is marked done.
func ctxErr(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
		return context.DeadlineExceeded
	}
	return nil
}

// unavailable reports whether err means Redis cannot serve us right now.
func unavailable(err error) bool {
	var netErr net.Error
	var recErr tls.RecordHeaderError
	var alertErr tls.AlertError
	var certErr *tls.CertificateVerificationError
	var authorityErr x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	switch {
	case errors.As(err, &netErr),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, goredis.ErrClosed), errors.Is(err, goredis.ErrPoolTimeout), errors.Is(err, goredis.ErrPoolExhausted),
		// The caller's context is alive (wrap checked), so a context error
		// comes from go-redis's own dial timeout.
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled),
		errors.As(err, &recErr), errors.As(err, &alertErr), errors.As(err, &certErr),
		errors.As(err, &authorityErr), errors.As(err, &hostErr):
		return true
	}
	return goredis.IsLoadingError(err) || goredis.IsReadOnlyError(err) || goredis.IsMasterDownError(err) ||
		goredis.IsTryAgainError(err) || goredis.IsClusterDownError(err) || goredis.IsMaxClientsError(err)
}

// unreachable reports whether err means no connection could be made at all
// (as opposed to one that was made, or waited for, and timed out).
func unreachable(err error) bool {
	var opErr *net.OpError
	return errors.Is(err, syscall.ECONNREFUSED) || (errors.As(err, &opErr) && opErr.Op == "dial")
}

// redisCode returns the first word of a Redis error ("WRONGPASS"), which
// names the problem without echoing anything the client sent.
func redisCode(err error) string {
	var rerr goredis.Error
	if !errors.As(err, &rerr) {
		return "no redis error code"
	}
	msg := strings.TrimPrefix(rerr.Error(), "ERR ")
	if i := strings.IndexByte(msg, ' '); i > 0 {
		msg = msg[:i]
	}
	return msg
}

// initError explains why Init could not use the server at addr. It never
// includes the password: auth failures are described, not quoted.
func initError(ctx context.Context, addr string, cred Credentials, err error) error {
	if cerr := ctxErr(ctx); cerr != nil {
		return fmt.Errorf("ping redis %s: %w (last error: %v)", addr, cerr, scrub(err, cred))
	}
	switch {
	case goredis.HasErrorPrefix(err, "NOAUTH") && cred.Password == "":
		return fmt.Errorf("authenticate to redis %s: redis requires a password and none was given: %w", addr, sdk.ErrUnauthenticated)
	case goredis.IsAuthError(err):
		return fmt.Errorf("authenticate to redis %s: redis rejected the credentials for user %q (%s): %w",
			addr, cred.user(), redisCode(err), sdk.ErrUnauthenticated)
	case goredis.IsPermissionError(err):
		return fmt.Errorf("authenticate to redis %s: redis user %q may not run PING (%s): %w",
			addr, cred.user(), redisCode(err), sdk.ErrUnauthenticated)
	case strings.Contains(err.Error(), "DB index is out of range") || strings.Contains(err.Error(), "invalid DB index"):
		return sdk.InvalidConfig("db", "redis %s refused to SELECT it: %v", addr, err)
	case unavailable(err):
		return fmt.Errorf("dial redis %s: %w: %w", addr, sdk.ErrUnavailable, scrubbed{err, cred})
	}
	return fmt.Errorf("ping redis %s: %w", addr, scrubbed{err, cred})
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
