package nats_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/prism-suite/prism/backends/nats"
	"github.com/prism-suite/prism/backends/sdk"
)

// natsServer is an in-process nats-server on 127.0.0.1 that can be
// restarted on the same port and store.
type natsServer struct {
	t    testing.TB
	opts server.Options
	srv  *server.Server
}

func startServer(t testing.TB, mutate func(*server.Options)) *natsServer {
	t.Helper()
	n := &natsServer{t: t, opts: server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true,
		JetStream: true, StoreDir: t.TempDir()}}
	if mutate != nil {
		mutate(&n.opts)
	}
	n.start()
	n.opts.Port = n.srv.Addr().(*net.TCPAddr).Port
	t.Cleanup(n.stop)
	return n
}

func (n *natsServer) start() {
	n.t.Helper()
	o := n.opts
	s, err := server.NewServer(&o)
	if err != nil {
		n.t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		n.t.Fatal("nats-server not ready")
	}
	n.srv = s
}

func (n *natsServer) stop() {
	if n.srv != nil {
		n.srv.Shutdown()
		n.srv.WaitForShutdown()
		n.srv = nil
	}
}

func (n *natsServer) url() string { return "nats://" + n.srv.Addr().String() }

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func connect(t testing.TB, values map[string]any, creds map[string]string) *nats.Driver {
	t.Helper()
	d := nats.New()
	if err := d.Init(ctxT(t, 10*time.Second), sdk.Config{Values: values, Credentials: creds}); err != nil {
		t.Fatalf("Init: %v", err)
	}
	t.Cleanup(func() { _ = d.Close(context.Background()) })
	return d
}

// sink records deliveries.
type sink struct {
	mu     sync.Mutex
	msgs   []sdk.Message
	failed error
	got    chan struct{}
}

func newSink() *sink { return &sink{got: make(chan struct{}, 1<<16)} }

func (s *sink) Deliver(m sdk.Message) {
	s.mu.Lock()
	s.msgs = append(s.msgs, m)
	s.mu.Unlock()
	s.got <- struct{}{}
}

func (s *sink) Fail(err error) { s.mu.Lock(); s.failed = err; s.mu.Unlock() }

// wait waits for n deliveries in all.
func (s *sink) wait(t *testing.T, n int) []sdk.Message {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		s.mu.Lock()
		if len(s.msgs) >= n {
			out := append([]sdk.Message(nil), s.msgs...)
			s.mu.Unlock()
			return out
		}
		s.mu.Unlock()
		select {
		case <-s.got:
		case <-deadline:
			s.mu.Lock()
			got := len(s.msgs)
			s.mu.Unlock()
			t.Fatalf("%d deliveries within 30s, want %d", got, n)
		}
	}
}

func TestInitRejectsBadConfigNamingTheField(t *testing.T) {
	cases := []struct {
		values map[string]any
		creds  map[string]string
		field  string
	}{
		{map[string]any{}, nil, "url"},
		{map[string]any{"url": "http://127.0.0.1:4222"}, nil, "url"},
		{map[string]any{"url": 4222.0}, nil, "url"},
		{map[string]any{"url": "nats://127.0.0.1:1", "stream": "a.b"}, nil, "stream"},
		{map[string]any{"url": "nats://127.0.0.1:1", "subject_prefix": "a.*"}, nil, "subject_prefix"},
		{map[string]any{"url": "nats://127.0.0.1:1", "ack_wait": "1ms"}, nil, "ack_wait"},
		{map[string]any{"url": "nats://127.0.0.1:1", "max_payload_bytes": 1e9}, nil, "max_payload_bytes"},
		{map[string]any{"url": "nats://127.0.0.1:1", "stream_replicas": "three"}, nil, "stream_replicas"},
		{map[string]any{"url": "nats://127.0.0.1:1", "colour": "blue"}, nil, "colour"},
		{map[string]any{"url": "nats://127.0.0.1:1"}, map[string]string{"user": "u"}, "credentials.password"},
		{map[string]any{"url": "nats://127.0.0.1:1"}, map[string]string{"token": "t", "user": "u", "password": "p"}, "credentials.token"},
		{map[string]any{"url": "nats://127.0.0.1:1"}, map[string]string{"pass": "p"}, "credentials.pass"},
	}
	for _, tc := range cases {
		err := nats.New().Init(context.Background(), sdk.Config{Values: tc.values, Credentials: tc.creds})
		var ce *sdk.ConfigError
		if !errors.As(err, &ce) || ce.Field != tc.field {
			t.Errorf("Init(%v) = %v, want a ConfigError naming %q", tc.values, err, tc.field)
		}
	}
}

func TestInitMapsConnectFailures(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	free := l.Addr().String()
	l.Close()
	err := nats.New().Init(ctxT(t, 10*time.Second), sdk.Config{Values: map[string]any{"url": "nats://" + free, "connect_timeout": "500ms"}})
	if status.Code(sdk.ToStatus(err)) != codes.Unavailable {
		t.Errorf("Init against nothing = %v, want Unavailable", err)
	}

	secured := startServer(t, func(o *server.Options) { o.Username, o.Password = "prism", "s3cret-Pa55" })
	err = nats.New().Init(ctxT(t, 10*time.Second), sdk.Config{Values: map[string]any{"url": secured.url()},
		Credentials: map[string]string{"user": "prism", "password": "wr0ng-guess"}})
	if status.Code(sdk.ToStatus(err)) != codes.Unauthenticated || strings.Contains(err.Error(), "wr0ng-guess") {
		t.Errorf("Init with a wrong password = %v, want Unauthenticated without the password", err)
	}
	connect(t, map[string]any{"url": secured.url()}, map[string]string{"user": "prism", "password": "s3cret-Pa55"})

	noJS := startServer(t, func(o *server.Options) { o.JetStream = false })
	err = nats.New().Init(ctxT(t, 10*time.Second), sdk.Config{Values: map[string]any{"url": noJS.url()}})
	if status.Code(sdk.ToStatus(err)) != codes.FailedPrecondition {
		t.Errorf("Init without JetStream = %v, want FailedPrecondition", err)
	}
}

func TestTopicsAreLiteralAndMetadataSurvives(t *testing.T) {
	srv := startServer(t, nil)
	d := connect(t, map[string]any{"url": srv.url()}, nil)
	ctx := ctxT(t, 20*time.Second)
	sinks := map[string]*sink{}
	for _, topic := range []string{"a", "a.b", "a.*", "a.>", "*", ">", "a b"} {
		sinks[topic] = newSink()
		sub, err := d.Subscribe(ctx, topic, sinks[topic])
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sub.Unsubscribe() })
	}
	md := map[string]string{"Content-Type": "text/plain", "content-type": "other", "lines": "a\r\nb", "pct": "100%", "pad": "  x  ", "empty": ""}
	for topic := range sinks {
		if _, err := d.Publish(ctx, sdk.Message{Topic: topic, Payload: []byte(topic), Metadata: md}); err != nil {
			t.Fatal(err)
		}
	}
	for topic, s := range sinks {
		got := s.wait(t, 1)
		if len(got) != 1 || string(got[0].Payload) != topic || got[0].Topic != topic {
			t.Errorf("subscriber of %q got %+v", topic, got)
			continue
		}
		for k, v := range md {
			if got[0].Metadata[k] != v {
				t.Errorf("metadata %q = %q, want %q", k, got[0].Metadata[k], v)
			}
		}
		if got[0].ID == "" || got[0].PublishTime.IsZero() {
			t.Errorf("message lacks id or publish time: %+v", got[0])
		}
	}
}

func TestLargePayloadTravelsThroughTheObjectStore(t *testing.T) {
	srv := startServer(t, func(o *server.Options) { o.MaxPayload = 64 << 10 })
	d := connect(t, map[string]any{"url": srv.url(), "max_payload_bytes": float64(4 << 20), "request_timeout": "20s"}, nil)
	ctx := ctxT(t, 60*time.Second)
	plain, durable := newSink(), newSink()
	sub, err := d.Subscribe(ctx, "big", plain)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	dsub, err := d.SubscribeDurable(ctx, "big", "d", 0, durable) // the default ack wait: no redelivery here
	if err != nil {
		t.Fatal(err)
	}
	defer dsub.Unsubscribe()
	big := bytes.Repeat([]byte{0, 1, 2, 255}, 1<<18) // 1 MiB, 16 times the server's max_payload
	ids, err := d.PublishBatch(ctx, []sdk.Message{{Topic: "big", Payload: big}, {Topic: "big", Payload: []byte("small")}})
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]*sink{"plain": plain, "durable": durable} {
		got := s.wait(t, 2)
		if got[0].ID != ids[0] || !bytes.Equal(got[0].Payload, big) || string(got[1].Payload) != "small" {
			t.Errorf("%s subscriber: got %d and %d bytes, want the 1 MiB payload then \"small\"", name, len(got[0].Payload), len(got[1].Payload))
		}
	}
	if err := d.Ack(ctx, "big", "d", []string{durable.wait(t, 2)[0].AckToken}); err != nil {
		t.Fatal(err)
	}
	if err := d.DeleteDurable(ctx, "big", "d"); err != nil {
		t.Fatal(err)
	}
}

func TestDurableAckAndTokens(t *testing.T) {
	srv := startServer(t, nil)
	d := connect(t, map[string]any{"url": srv.url()}, nil)
	ctx := ctxT(t, 20*time.Second)
	s := newSink()
	sub, err := d.SubscribeDurable(ctx, "orders", "billing", 200*time.Millisecond, s)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Publish(ctx, sdk.Message{Topic: "orders", Payload: []byte("o1")}); err != nil {
		t.Fatal(err)
	}
	got := s.wait(t, 2) // delivered, not acknowledged, delivered again
	if got[0].Attempt != 1 || got[1].Attempt != 2 || got[0].ID != got[1].ID || got[0].AckToken == "" {
		t.Fatalf("deliveries = %+v, want the same message as attempts 1 and 2 with ack tokens", got)
	}
	if err := d.Ack(ctx, "orders", "billing", []string{got[1].AckToken}); err != nil {
		t.Fatal(err)
	}
	if err := d.Ack(ctx, "orders", "billing", []string{"$JS.ACK.PRISM.someone-else.1.1.1.1.0"}); status.Code(sdk.ToStatus(err)) != codes.InvalidArgument {
		t.Errorf("Ack with another consumer's token = %v, want InvalidArgument", err)
	}
	if err := d.Ack(ctx, "orders", "nobody", []string{got[1].AckToken}); status.Code(sdk.ToStatus(err)) != codes.NotFound {
		t.Errorf("Ack on a missing consumer = %v, want NotFound", err)
	}
	_ = sub.Unsubscribe()
	if err := d.DeleteDurable(ctx, "orders", "billing"); err != nil {
		t.Fatal(err)
	}
	if err := d.DeleteDurable(ctx, "orders", "billing"); status.Code(sdk.ToStatus(err)) != codes.NotFound {
		t.Errorf("second DeleteDurable = %v, want NotFound", err)
	}
}

func TestRecoversAfterServerRestart(t *testing.T) {
	srv := startServer(t, nil)
	d := connect(t, map[string]any{"url": srv.url(), "reconnect_wait": "20ms", "reconnect_wait_max": "100ms"}, nil)
	ctx := ctxT(t, 30*time.Second)
	s := newSink()
	sub, err := d.Subscribe(ctx, "live", s)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if h := d.Health(ctx); h.Status != sdk.Healthy {
		t.Fatalf("Health = %+v, want healthy", h)
	}
	srv.stop()
	waitHealth(t, d, sdk.Unhealthy)
	if _, err := d.Publish(ctx, sdk.Message{Topic: "live", Payload: []byte("lost")}); status.Code(sdk.ToStatus(err)) != codes.Unavailable {
		t.Errorf("Publish with the server down = %v, want Unavailable", err)
	}
	srv.start()
	waitHealth(t, d, sdk.Healthy)
	// The subscription survived the restart.
	for i := 0; ; i++ {
		_, err := d.Publish(ctx, sdk.Message{Topic: "live", Payload: []byte("after")})
		if err == nil {
			break
		}
		if i == 100 {
			t.Fatalf("Publish after the restart: %v", err)
		}
		time.Sleep(20 * time.Millisecond) // JetStream may still be recovering its stream
	}
	if got := s.wait(t, 1); string(got[0].Payload) != "after" {
		t.Fatalf("got %q after the restart", got[0].Payload)
	}
}

// waitHealth polls the driver's own view of its connection until it is want,
// for at most 10s.
func waitHealth(t *testing.T, d *nats.Driver, want sdk.HealthStatus) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		h := d.Health(context.Background())
		if h.Status == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Health = %+v after 10s, want status %d", h, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCredentialsNeverShow(t *testing.T) {
	c := nats.Credentials{User: "u", Password: "hunter2", Token: ""}
	for _, s := range []string{c.String(), c.GoString(), (nats.Credentials{Token: "tok-123"}).String()} {
		if strings.Contains(s, "hunter2") || strings.Contains(s, "tok-123") {
			t.Errorf("credentials printed a secret: %s", s)
		}
	}
}
