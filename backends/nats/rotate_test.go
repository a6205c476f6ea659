package nats_test

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	gonats "github.com/nats-io/nats.go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/prism-suite/prism/backends/nats"
	"github.com/prism-suite/prism/backends/sdk"
	"github.com/prism-suite/prism/proto/capability"
)

func TestDeclaresAuthCapabilities(t *testing.T) {
	got := sdk.Capabilities(nats.New())
	for _, want := range []capability.Name{capability.AuthBackendCredentials, capability.AuthRotation} {
		found := false
		for _, c := range got {
			found = found || c == want
		}
		if !found {
			t.Errorf("Capabilities = %v, want %s among them", got, want)
		}
	}
}

// scoped returns the config of namespace scope and the NATS user that may
// run it and nothing else.
func scoped(url, scope, user, password string) (map[string]any, *server.User) {
	o := nats.DefaultOptions()
	o.SubjectPrefix, o.Stream, o.PayloadBucket = scope, strings.ToUpper(scope), strings.ToUpper(scope)+"_PAYLOADS"
	p := nats.PermissionsFor(o)
	return map[string]any{"url": url, "subject_prefix": o.SubjectPrefix, "stream": o.Stream, "payload_bucket": o.PayloadBucket,
			"max_payload_bytes": float64(4 << 20), "request_timeout": "20s"},
		&server.User{Username: user, Password: password, Permissions: &server.Permissions{
			Publish: &server.SubjectPermission{Allow: p.Publish}, Subscribe: &server.SubjectPermission{Allow: p.Subscribe}}}
}

// TestScopedUserRotation runs a namespace's plugin as a user with only the
// permissions PermissionsFor lists (so they must be enough for every
// feature), rotates it to a second user under load without a failed call,
// removes the first user (the server drops its connections), and checks the
// subscription made before the rotation still receives, and that the user
// cannot touch another namespace's subjects or stream.
func TestScopedUserRotation(t *testing.T) {
	srv := startServer(t, func(o *server.Options) {
		o.MaxPayload = 64 << 10
		o.Users = []*server.User{{Username: "admin", Password: "admin-Pa55"}}
	})
	cfgA, a1 := scoped(srv.url(), "nsa", "nsa-1", "a1-Pa55")
	_, a2 := scoped(srv.url(), "nsa", "nsa-2", "a2-Pa55")
	cfgB, b := scoped(srv.url(), "nsb", "nsb", "b-Pa55")
	setUsers := func(users ...*server.User) {
		t.Helper()
		o := srv.opts
		o.Users = append([]*server.User{{Username: "admin", Password: "admin-Pa55"}}, users...)
		if err := srv.srv.ReloadOptions(&o); err != nil {
			t.Fatalf("reload users: %v", err)
		}
		srv.opts = o
	}
	setUsers(a1, b)
	ctx := ctxT(t, 90*time.Second)
	d := connect(t, cfgA, map[string]string{"user": "nsa-1", "password": "a1-Pa55"})
	connect(t, cfgB, map[string]string{"user": "nsb", "password": "b-Pa55"})

	plain, durable := newSink(), newSink()
	sub, err := d.Subscribe(ctx, "t", plain)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	dsub, err := d.SubscribeDurable(ctx, "t", "d", 0, durable)
	if err != nil {
		t.Fatal(err)
	}
	defer dsub.Unsubscribe()
	big := bytes.Repeat([]byte{7}, 1<<20)
	if _, err := d.PublishBatch(ctx, []sdk.Message{{Topic: "t", Payload: big}, {Topic: "t", Payload: []byte("small")}}); err != nil {
		t.Fatalf("publish as the scoped user: %v", err)
	}
	if got := durable.wait(t, 2); !bytes.Equal(got[0].Payload, big) {
		t.Fatalf("durable got %d bytes, want the 1 MiB payload", len(got[0].Payload))
	} else if err := d.Ack(ctx, "t", "d", []string{got[0].AckToken, got[1].AckToken}); err != nil {
		t.Fatalf("ack as the scoped user: %v", err)
	}
	plain.wait(t, 2)

	var stop atomic.Bool
	var ops, fails atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for w := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				_, err := d.Publish(ctx, sdk.Message{Topic: fmt.Sprintf("load-%d", w), Payload: []byte("x")})
				ops.Add(1)
				if err != nil {
					fails.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
			}
		}()
	}
	waitOps := func(n int64) {
		t.Helper()
		for target := ops.Load() + n; ops.Load() < target; {
			if ctx.Err() != nil {
				t.Fatal(ctx.Err())
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitOps(100)
	setUsers(a1, a2, b) // both valid during the roll
	if err := d.RotateCredentials(ctx, map[string]string{"user": "nsa-2", "password": "a2-Pa55"}); err != nil {
		t.Fatalf("RotateCredentials: %v", err)
	}
	waitOps(100)
	setUsers(a2, b) // the old user is gone: the server drops its connections
	waitOps(300)
	stop.Store(true)
	wg.Wait()
	if n := fails.Load(); n > 0 {
		t.Errorf("%d of %d publishes failed across the rotation; first: %v", n, ops.Load(), firstErr.Load())
	}
	if _, err := gonats.Connect(srv.url(), gonats.UserInfo("nsa-1", "a1-Pa55")); err == nil {
		t.Errorf("the removed user can still connect")
	}
	// The subscription made on the old connection comes back as the new user.
	deadline := time.Now().Add(30 * time.Second)
	for n := 3; ; n++ {
		if _, err := d.Publish(ctx, sdk.Message{Topic: "t", Payload: []byte("after")}); err != nil {
			t.Fatal(err)
		}
		if func() bool { plain.mu.Lock(); defer plain.mu.Unlock(); return len(plain.msgs) >= 3 }() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the subscription made before the rotation receives nothing after the old user was removed")
		}
		time.Sleep(50 * time.Millisecond)
	}

	err = d.RotateCredentials(ctx, map[string]string{"user": "nsa-2", "password": "wr0ng-guess"})
	if !errors.Is(err, sdk.ErrUnauthenticated) || strings.Contains(err.Error(), "wr0ng-guess") {
		t.Errorf("RotateCredentials(wrong) = %v, want ErrUnauthenticated without the password", err)
	}

	// nsb cannot reach into nsa.
	violations := make(chan error, 8)
	nc, err := gonats.Connect(srv.url(), gonats.UserInfo("nsb", "b-Pa55"),
		gonats.ErrorHandler(func(_ *gonats.Conn, _ *gonats.Subscription, err error) { violations <- err }))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	for _, subj := range []string{"nsa.t.x", "$JS.API.STREAM.DELETE.NSA"} {
		if err := nc.Publish(subj, []byte("x")); err != nil {
			t.Fatal(err)
		}
		_ = nc.Flush()
		select {
		case err := <-violations:
			if !errors.Is(err, gonats.ErrPermissionViolation) {
				t.Errorf("publish to %s as nsb: %v, want a permissions violation", subj, err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("publish to %s as nsb: no permissions violation", subj)
		}
	}
	bd := nats.New()
	defer bd.Close(ctx)
	cfgBinA := map[string]any{}
	for k, v := range cfgA {
		cfgBinA[k] = v
	}
	cfgBinA["request_timeout"] = "1s" // its JetStream requests are refused: no answer comes
	err = bd.Init(ctx, sdk.Config{Values: cfgBinA, Credentials: map[string]string{"user": "nsb", "password": "b-Pa55"}})
	if err == nil {
		t.Errorf("nsb initialised a plugin on nsa's stream")
	} else if c := status.Code(sdk.ToStatus(err)); c == codes.OK {
		t.Errorf("nsb on nsa's stream: %v", err)
	}
}
