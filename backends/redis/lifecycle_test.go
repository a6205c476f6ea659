package redis_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/prism-suite/prism/backends/redis"
	"github.com/prism-suite/prism/backends/sdk"
)

func TestInitUnreachable(t *testing.T) {
	addr := freeAddr(t)
	d := redis.New()
	defer d.Close(context.Background())
	start := time.Now()
	err := d.Init(testCtx(t, 3*time.Second), config(addr, nil, nil))
	if !errors.Is(err, sdk.ErrUnavailable) {
		t.Fatalf("Init(%s) error = %v, want ErrUnavailable", addr, err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("Init against a refused port took %v; it should fail at once (no dial retries)", took)
	}
	if want := "dial redis " + addr + ": "; !strings.HasPrefix(err.Error(), want) {
		t.Errorf("Init error %q does not start with %q", err, want)
	}
}

// silentServer accepts connections and never answers.
func silentServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return l.Addr().String()
}

func TestInitHonoursTheDeadline(t *testing.T) {
	addr := silentServer(t)
	d := redis.New()
	defer d.Close(context.Background())
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := d.Init(ctx, config(addr, map[string]any{"read_timeout": "1m", "write_timeout": "1m"}, nil))
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, sdk.ErrUnavailable) {
		t.Errorf("Init against a silent server error = %v, want DeadlineExceeded only", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("Init took %v with a 300ms deadline", took)
	}
}

func TestReadTimeoutWithoutDeadline(t *testing.T) {
	addr := silentServer(t)
	d := redis.New()
	defer d.Close(context.Background())
	start := time.Now()
	err := d.Init(context.Background(), config(addr, map[string]any{"read_timeout": "200ms"}, nil))
	if !errors.Is(err, sdk.ErrUnavailable) {
		t.Errorf("Init against a silent server without a deadline error = %v, want ErrUnavailable (read timeout)", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Init took %v with read_timeout 200ms", took)
	}
}

func TestTLSAgainstAPlainServer(t *testing.T) {
	m := startMiniredis(t)
	d := redis.New()
	defer d.Close(context.Background())
	err := d.Init(testCtx(t, 3*time.Second), config(m.Addr(), map[string]any{"tls": true}, nil))
	if !errors.Is(err, sdk.ErrUnavailable) {
		t.Errorf("Init with tls against a plain server error = %v, want ErrUnavailable", err)
	}
}

func TestInitAuth(t *testing.T) {
	const secret = "s3cret-Pa55"
	m := startMiniredis(t)
	m.RequireAuth(secret)
	m.RequireUserAuth("alice", "alice-Pa55")

	tests := []struct {
		name  string
		creds map[string]string
		want  string // in the message
	}{
		{"no password", nil, "redis requires a password and none was given"},
		{"wrong password", map[string]string{"password": "wr0ng-guess"}, `redis rejected the credentials for user "default"`},
		{"wrong user password", map[string]string{"username": "alice", "password": "wr0ng-guess"}, `redis rejected the credentials for user "alice"`},
		{"unknown user", map[string]string{"username": "bob", "password": secret}, `redis rejected the credentials for user "bob"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := redis.New()
			defer d.Close(context.Background())
			err := d.Init(testCtx(t, 3*time.Second), config(m.Addr(), nil, tc.creds))
			if !errors.Is(err, sdk.ErrUnauthenticated) {
				t.Fatalf("Init error = %v, want ErrUnauthenticated", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Init error %q does not say %q", err, tc.want)
			}
			for _, pw := range []string{secret, "wr0ng-guess", "alice-Pa55"} {
				if strings.Contains(err.Error(), pw) {
					t.Errorf("Init error %q shows a password", err)
				}
			}
		})
	}

	for _, creds := range []map[string]string{{"password": secret}, {"username": "alice", "password": "alice-Pa55"}} {
		d := newDriver(t, m.Addr(), nil, creds)
		if err := d.Set(testCtx(t, 3*time.Second), "k", []byte("v")); err != nil {
			t.Errorf("Set as %s: %v", creds["username"], err)
		}
	}
}

func TestRecoversAfterRestart(t *testing.T) {
	m := startMiniredis(t)
	d := newDriver(t, m.Addr(), nil, nil)
	if err := d.Set(testCtx(t, 3*time.Second), "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if h := d.Health(testCtx(t, 3*time.Second)); h.Status != sdk.Healthy {
		t.Errorf("Health = %+v, want Healthy", h)
	}

	addr := m.Addr()
	m.Close()
	for range 3 { // past the first failure too: the pool must not hang
		start := time.Now()
		_, err := d.Get(testCtx(t, 3*time.Second), "k")
		if !errors.Is(err, sdk.ErrUnavailable) {
			t.Errorf("Get while redis is down error = %v, want ErrUnavailable", err)
		}
		if took := time.Since(start); took > time.Second {
			t.Errorf("Get while redis is down took %v", took)
		}
	}
	h := d.Health(testCtx(t, 3*time.Second))
	if h.Status != sdk.Unhealthy || !strings.Contains(h.Message, addr) {
		t.Errorf("Health while redis is down = %+v, want Unhealthy naming %s", h, addr)
	}

	if err := m.Restart(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := d.Get(testCtx(t, time.Second), "k")
		if err == nil {
			if string(got) != "v" {
				t.Errorf("Get after restart = %q, want \"v\"", got)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("driver did not reconnect within 10s of the restart: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if h := d.Health(testCtx(t, 3*time.Second)); h.Status != sdk.Healthy {
		t.Errorf("Health after restart = %+v, want Healthy", h)
	}
}

func TestCallerDeadlineStaysDeadlineExceeded(t *testing.T) {
	m := startMiniredis(t)
	d := newDriver(t, m.Addr(), nil, nil)
	ctx, cancel := context.WithTimeout(t.Context(), time.Nanosecond)
	defer cancel()
	<-ctx.Done()
	if _, err := d.Get(ctx, "k"); !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, sdk.ErrUnavailable) {
		t.Errorf("Get with an expired context error = %v, want DeadlineExceeded only", err)
	}
	cctx, ccancel := context.WithCancel(t.Context())
	ccancel()
	if err := d.Set(cctx, "k", nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Set with a cancelled context error = %v, want Canceled", err)
	}
}

func TestHealth(t *testing.T) {
	m := startMiniredis(t)
	d := newDriver(t, m.Addr(), map[string]any{"pool_size": 10.0}, nil)
	ctx := testCtx(t, 10*time.Second)

	h := d.Health(ctx)
	if h.Status != sdk.Healthy {
		t.Fatalf("Health = %+v, want Healthy", h)
	}
	for _, k := range []string{"pool_size", "pool_total_conns", "pool_idle_conns", "pool_in_use", "pool_timeouts"} {
		if _, ok := h.Details[k]; !ok {
			t.Errorf("Health details lack %q: %v", k, h.Details)
		}
	}

	// Hold 9 of 10 connections in BLPOPs: Degraded.
	client := redis.ClientOf(d)
	var wg sync.WaitGroup
	for i := range 9 {
		wg.Go(func() { _ = client.BLPop(ctx, 5*time.Second, "block"+key(i)).Err() })
	}
	defer func() {
		for i := range 9 {
			_, _ = m.Lpush("block"+key(i), "x")
		}
		wg.Wait()
	}()
	for deadline := time.Now().Add(5 * time.Second); ; {
		st := client.PoolStats()
		if st.TotalConns-st.IdleConns >= 9 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("BLPOPs did not take 9 connections: %+v", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if h := d.Health(ctx); h.Status != sdk.Degraded || h.Details["pool_in_use"] != "9" {
		t.Errorf("Health with 9 of 10 connections in use = %+v, want Degraded", h)
	}
}

func TestHealthWithEveryConnectionBusy(t *testing.T) {
	m := startMiniredis(t)
	d := newDriver(t, m.Addr(), map[string]any{"pool_size": 2.0}, nil)
	ctx := testCtx(t, 10*time.Second)
	client := redis.ClientOf(d)
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Go(func() { _ = client.BLPop(ctx, 5*time.Second, "block"+key(i)).Err() })
	}
	defer func() {
		for i := range 2 {
			_, _ = m.Lpush("block"+key(i), "x")
		}
		wg.Wait()
	}()
	for deadline := time.Now().Add(5 * time.Second); ; {
		if st := client.PoolStats(); st.TotalConns-st.IdleConns >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("BLPOPs did not take both connections")
		}
		time.Sleep(10 * time.Millisecond)
	}
	start := time.Now()
	h := d.Health(ctx)
	if h.Status != sdk.Degraded {
		t.Errorf("Health with no free connection = %+v, want Degraded", h)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Health took %v, want about 1s at most", took)
	}
}

func TestUninitialised(t *testing.T) {
	d := redis.New()
	ctx := testCtx(t, time.Second)
	if h := d.Health(ctx); h.Status != sdk.Unhealthy {
		t.Errorf("Health before Init = %+v, want Unhealthy", h)
	}
	if _, err := d.Get(ctx, "k"); !errors.Is(err, sdk.ErrUnavailable) {
		t.Errorf("Get before Init error = %v, want ErrUnavailable", err)
	}
	if err := d.Close(ctx); err != nil {
		t.Errorf("Close before Init: %v", err)
	}
}

func TestReInit(t *testing.T) {
	m1 := startMiniredis(t)
	m2 := startMiniredis(t)
	d := newDriver(t, m1.Addr(), nil, nil)
	ctx := testCtx(t, 10*time.Second)
	first := redis.ClientOf(d)

	// A failed re-Init keeps the working client.
	if err := d.Init(ctx, config(freeAddr(t), nil, nil)); !errors.Is(err, sdk.ErrUnavailable) {
		t.Fatalf("re-Init to a dead address error = %v, want ErrUnavailable", err)
	}
	if err := d.Set(ctx, "k", []byte("one")); err != nil {
		t.Fatalf("Set after failed re-Init: %v", err)
	}

	if err := d.Init(ctx, config(m2.Addr(), nil, nil)); err != nil {
		t.Fatal(err)
	}
	if err := first.Ping(ctx).Err(); !errors.Is(err, goredis.ErrClosed) {
		t.Errorf("previous client after re-Init: Ping error = %v, want ErrClosed", err)
	}
	if err := d.Set(ctx, "k", []byte("two")); err != nil {
		t.Fatal(err)
	}
	if v1, _ := m1.Get("k"); v1 != "one" {
		t.Errorf("m1 k = %q, want one", v1)
	}
	if v2, _ := m2.Get("k"); v2 != "two" {
		t.Errorf("m2 k = %q, want two", v2)
	}

	if err := d.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(ctx); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
