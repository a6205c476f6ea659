package sdk_test

import (
	"context"
	"slices"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/prism-suite/prism/backends/memstore"
	"github.com/prism-suite/prism/backends/sdk"
	"github.com/prism-suite/prism/proto/capability"
	lifecyclev1 "github.com/prism-suite/prism/proto/prism/lifecycle/v1"
)

// rotating is memstore with backend credentials that it can rotate.
type rotating struct {
	*memstore.Store
	mu  sync.Mutex
	got []map[string]string
}

func (r *rotating) AuthenticatesWithCredentials() {}

func (r *rotating) RotateCredentials(_ context.Context, creds map[string]string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if creds["password"] == "wrong" {
		return sdk.ErrUnauthenticated
	}
	r.got = append(r.got, creds)
	return nil
}

// onlyRotator rotates but does not authenticate with credentials.
type onlyRotator struct{ *memstore.Store }

func (onlyRotator) RotateCredentials(context.Context, map[string]string) error { return nil }

func TestAuthCapabilitiesFollowTheInterfaces(t *testing.T) {
	got := sdk.Capabilities(&rotating{Store: memstore.New()})
	if !slices.Contains(got, capability.AuthBackendCredentials) || !slices.Contains(got, capability.AuthRotation) {
		t.Errorf("rotating driver declares %v, want auth.backend-credentials and auth.rotation", got)
	}
	got = sdk.Capabilities(onlyRotator{memstore.New()})
	if slices.Contains(got, capability.AuthRotation) {
		t.Errorf("a rotator without backend credentials declares %v: auth.rotation needs auth.backend-credentials", got)
	}
	if got := sdk.Capabilities(memstore.New()); slices.Contains(got, capability.AuthBackendCredentials) {
		t.Errorf("memstore declares %v", got)
	}
}

func TestRotateCredentials(t *testing.T) {
	ctx := context.Background()
	req := &lifecyclev1.RotateCredentialsRequest{Credentials: map[string]string{"password": "n3w"}}
	lc, _ := serve(t, memstore.New())
	if _, err := lc.RotateCredentials(ctx, req); status.Code(err) != codes.Unimplemented {
		t.Errorf("RotateCredentials on memstore = %v, want Unimplemented", err)
	}
	d := &rotating{Store: memstore.New()}
	lc, _ = serve(t, d)
	if _, err := lc.RotateCredentials(ctx, req); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("RotateCredentials before Initialize = %v, want FailedPrecondition", err)
	}
	start(t, lc)
	if _, err := lc.RotateCredentials(ctx, req); err != nil {
		t.Fatalf("RotateCredentials: %v", err)
	}
	bad := &lifecyclev1.RotateCredentialsRequest{Credentials: map[string]string{"password": "wrong"}}
	if _, err := lc.RotateCredentials(ctx, bad); status.Code(err) != codes.Unauthenticated {
		t.Errorf("RotateCredentials(rejected) = %v, want Unauthenticated", err)
	}
	if len(d.got) != 1 || d.got[0]["password"] != "n3w" {
		t.Errorf("the driver got %v", d.got)
	}
}
