package proxy_test

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/prism-suite/prism/harness/oidc"
	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
	registryv1 "github.com/prism-suite/prism/proto/prism/registry/v1"
	"github.com/prism-suite/prism/reference/auth"
)

// TestHostileInput throws what a hostile client can send at a proxy with
// auth on and small limits, over loopback only and bounded in count and
// time, and checks each answer, that the proxy's goroutines and memory stay
// bounded (read from its /metrics; the proxy runs in the test's process, so
// they count the test's clients too), and that it serves normally afterwards
// (issue 13, item 6).
func TestHostileInput(t *testing.T) {
	iss, err := oidc.Start(oidc.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer iss.Close()
	cfg := testConfig(kvNamespace("a", ""), registryNamespace("devices", nil))
	ac := auth.DefaultConfig()
	ac.Issuer, ac.Audience = iss.URL(), iss.Audience()
	cfg.Auth = &ac
	cfg.Limits.MaxConcurrentStreams = 16
	cfg.Limits.MaxInFlight = 24
	cfg.Limits.FirstMessageTimeout = 2 * time.Second
	cfg.Limits.MaxHealthWatchers = 4
	cfg.Limits.MaxHeaderBytes = 64 << 10
	p, conn := start(t, cfg)
	tok := iss.MustMint(iss.Claims("alice", "prism:a:read", "prism:a:write", "prism:devices:read", "prism:devices:write"))
	authed := func(ns string) (context.Context, context.CancelFunc) {
		ctx, cancel := nsCtx(ns)
		return bearer(ctx, tok), cancel
	}
	kv := keyvaluev1.NewKeyValueClient(conn)
	mustServe := func(what string) {
		t.Helper()
		ctx, cancel := authed("a")
		defer cancel()
		if _, err := kv.Set(ctx, &keyvaluev1.SetRequest{Key: "k", Value: []byte(what)}); err != nil {
			t.Fatalf("%s: the proxy no longer serves: %v", what, err)
		}
	}
	mustServe("before")
	metrics := "http://" + p.MetricsAddr() + "/metrics"
	baseG, baseRSS := metric(t, metrics, "go_goroutines"), metric(t, metrics, "process_resident_memory_bytes")

	t.Run("half-open streams are cut at first_message_timeout", func(t *testing.T) {
		h := dialRaw(t, p.Addr())
		if got := h.settings[http2.SettingMaxConcurrentStreams]; got != 16 {
			t.Errorf("server SETTINGS_MAX_CONCURRENT_STREAMS = %d, want 16", got)
		}
		const n = 16
		began := time.Now()
		for i := range n {
			h.open(t, uint32(2*i+1), "/prism.keyvalue.v1.KeyValue/Get", "x-prism-namespace", "a", "authorization", "Bearer "+tok)
		}
		// While they hang, they count as in flight: with 16 held, max_in_flight 24 leaves room.
		ends := h.waitEnds(t, n, 8*time.Second)
		if d := time.Since(began); d > 5*time.Second {
			t.Errorf("the half-open streams ended after %v, want about first_message_timeout (2s)", d)
		}
		for id, e := range ends {
			if e != "grpc-status "+strconv.Itoa(int(codes.DeadlineExceeded)) {
				t.Errorf("stream %d ended with %s, want DeadlineExceeded", id, e)
			}
		}
	})

	t.Run("a half-open registry Receive is cut too", func(t *testing.T) {
		h := dialRaw(t, p.Addr())
		h.open(t, 1, "/prism.registry.v1.Registry/Receive", "x-prism-namespace", "devices", "authorization", "Bearer "+tok)
		for id, e := range h.waitEnds(t, 1, 8*time.Second) {
			if e != "grpc-status "+strconv.Itoa(int(codes.DeadlineExceeded)) {
				t.Errorf("stream %d ended with %s, want DeadlineExceeded", id, e)
			}
		}
	})

	t.Run("a stream flood beyond max_concurrent_streams is refused", func(t *testing.T) {
		h := dialRaw(t, p.Addr())
		const n = 64
		for i := range n {
			h.open(t, uint32(2*i+1), "/prism.keyvalue.v1.KeyValue/Get", "x-prism-namespace", "a", "authorization", "Bearer "+tok)
		}
		ends := h.waitEnds(t, n, 8*time.Second)
		refused := 0
		for _, e := range ends {
			if e == "RST_STREAM "+http2.ErrCodeRefusedStream.String() {
				refused++
			}
		}
		if refused < n-16 {
			t.Errorf("%d of %d streams refused, want at least %d (max_concurrent_streams 16): %v", refused, n, n-16, ends)
		}
	})

	t.Run("a ping flood gets GOAWAY", func(t *testing.T) {
		h := dialRaw(t, p.Addr())
		for i := range 10 {
			if err := h.fr.WritePing(false, [8]byte{byte(i)}); err != nil {
				break // the server may close first
			}
		}
		_ = h.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			f, err := h.fr.ReadFrame()
			if err != nil {
				t.Fatalf("connection ended without GOAWAY: %v", err)
			}
			if g, ok := f.(*http2.GoAwayFrame); ok {
				if g.ErrCode != http2.ErrCodeEnhanceYourCalm {
					t.Errorf("GOAWAY %v, want ENHANCE_YOUR_CALM (too_many_pings)", g.ErrCode)
				}
				return
			}
		}
	})

	t.Run("max_in_flight answers ResourceExhausted", func(t *testing.T) {
		var hs []*rawH2
		for c := range 2 { // 2 connections × 14 half-open streams > max_in_flight 24
			h := dialRaw(t, p.Addr())
			hs = append(hs, h)
			for i := range 14 {
				h.open(t, uint32(2*i+1), "/prism.keyvalue.v1.KeyValue/Get", "x-prism-namespace", "a", "authorization", "Bearer "+tok)
			}
			_ = c
		}
		ends := 0
		exhausted := 0
		for _, h := range hs {
			for _, e := range h.waitEnds(t, 14, 8*time.Second) {
				ends++
				if e == "grpc-status "+strconv.Itoa(int(codes.ResourceExhausted)) {
					exhausted++
				}
			}
		}
		if exhausted < 28-24 {
			t.Errorf("%d of %d streams over max_in_flight got ResourceExhausted, want at least %d", exhausted, ends, 28-24)
		}
	})

	t.Run("health Watch needs a token and is capped", func(t *testing.T) {
		hc := healthpb.NewHealthClient(conn)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		w, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{})
		if err == nil {
			_, err = w.Recv()
		}
		wantCode(t, "Watch without a token", err, codes.Unauthenticated)
		if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			t.Errorf("Check without a token: %v (Check stays open)", err)
		}
		actx := bearer(ctx, tok)
		for i := range 4 {
			w, err := hc.Watch(actx, &healthpb.HealthCheckRequest{})
			if err == nil {
				_, err = w.Recv()
			}
			if err != nil {
				t.Fatalf("Watch %d with a token: %v", i, err)
			}
		}
		w, err = hc.Watch(actx, &healthpb.HealthCheckRequest{})
		if err == nil {
			_, err = w.Recv()
		}
		wantCode(t, "a fifth Watch", err, codes.ResourceExhausted)
	})

	t.Run("oversize messages", func(t *testing.T) {
		big := grpc.MaxCallSendMsgSize(64 << 20)
		for _, size := range []int{3 << 20, 5 << 20} {
			ctx, cancel := authed("a")
			_, err := kv.Set(ctx, &keyvaluev1.SetRequest{Key: "k", Value: make([]byte, size)}, big)
			cancel()
			wantCode(t, "Set of "+strconv.Itoa(size)+" bytes", err, codes.ResourceExhausted)
		}
		ctx, cancel := authed("devices")
		defer cancel()
		md := map[string]*registryv1.Value{"blob": {Kind: &registryv1.Value_StringValue{StringValue: strings.Repeat("x", 2<<20)}}}
		_, err := registryv1.NewRegistryClient(conn).Register(ctx, &registryv1.RegisterRequest{Identity: "i", Metadata: md}, big)
		wantCode(t, "Register of 2 MiB", err, codes.ResourceExhausted)
	})

	t.Run("filter bombs", func(t *testing.T) {
		for n, want := range map[int]codes.Code{100_000: codes.InvalidArgument, 1_000_000: codes.ResourceExhausted} {
			ctx, cancel := authed("devices")
			err := conn.Invoke(ctx, "/prism.registry.v1.Registry/Enumerate", filterBomb(n), &[]byte{}, grpc.ForceCodec(bytesCodec{}))
			cancel()
			wantCode(t, strconv.Itoa(n)+" empty ands", err, want)
			if want == codes.InvalidArgument && !strings.Contains(status.Convert(err).Message(), "filter") {
				t.Errorf("message %q does not name the filter", status.Convert(err).Message())
			}
		}
	})

	t.Run("duplicate and long metadata", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			md   []string
			want codes.Code
		}{
			{"two namespaces", []string{"x-prism-namespace", "a", "x-prism-namespace", "devices", "authorization", "Bearer " + tok}, codes.InvalidArgument},
			{"two tokens", []string{"x-prism-namespace", "a", "authorization", "Bearer " + tok, "authorization", "Bearer " + tok}, codes.Unauthenticated},
			{"32 KiB namespace", []string{"x-prism-namespace", strings.Repeat("n", 32<<10), "authorization", "Bearer " + tok}, codes.InvalidArgument},
			{"32 KiB request id", []string{"x-prism-namespace", "a", "x-request-id", strings.Repeat("r", 32<<10), "authorization", "Bearer " + tok}, codes.InvalidArgument},
		} {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			ctx = metadata.AppendToOutgoingContext(ctx, tc.md...)
			_, err := kv.Get(ctx, &keyvaluev1.GetRequest{Key: "k"})
			cancel()
			wantCode(t, tc.name, err, tc.want)
			if n := len(status.Convert(err).Message()); n > 512 {
				t.Errorf("%s: message of %d bytes", tc.name, n)
			}
		}
		// Over max_header_bytes, gRPC itself refuses the call; the proxy lives on.
		ctx, cancel := authed("a")
		ctx = metadata.AppendToOutgoingContext(ctx, "x-prism-padding", strings.Repeat("p", 1<<20))
		_, err := kv.Get(ctx, &keyvaluev1.GetRequest{Key: "k"})
		cancel()
		if err == nil {
			t.Error("a call with 1 MiB of metadata succeeded")
		}
	})

	// Recovery: everything above is over; the proxy serves and its
	// goroutines come back near where they were.
	mustServe("after")
	deadline := time.Now().Add(10 * time.Second)
	for {
		g := metric(t, metrics, "go_goroutines")
		if g <= baseG+40 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("goroutines %v after the attacks, %v before: not released", g, baseG)
		}
		time.Sleep(50 * time.Millisecond) // polling a gauge, not waiting for readiness
	}
	if rss := metric(t, metrics, "process_resident_memory_bytes"); rss-baseRSS > 256<<20 {
		t.Errorf("RSS grew by %.0f MiB over the attacks, want at most 256 MiB", (rss-baseRSS)/(1<<20))
	}
}

// filterBomb encodes an EnumerateRequest whose filter is an and of n empty
// ands (4 bytes each), without building n messages in the test.
func filterBomb(n int) *[]byte {
	empty := protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), nil) // Filter{and: {}}
	one := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), empty) // FilterList.filters
	list := bytes.Repeat(one, n)
	filter := protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), list) // Filter{and: list}
	req := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), filter)  // EnumerateRequest.filter
	return &req
}

// bytesCodec sends a *[]byte as it is and ignores the answer's bytes.
type bytesCodec struct{}

func (bytesCodec) Marshal(v any) ([]byte, error) { return *v.(*[]byte), nil }
func (bytesCodec) Unmarshal(data []byte, v any) error {
	*v.(*[]byte) = append([]byte(nil), data...)
	return nil
}
func (bytesCodec) Name() string { return "proto" }

// metric reads one unlabelled sample from a Prometheus text page.
func metric(t *testing.T, url, name string) float64 {
	t.Helper()
	for _, line := range strings.Split(httpGet(t, url), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("metric %s: %v", name, err)
			}
			return f
		}
	}
	t.Fatalf("metric %s not found at %s", name, url)
	return 0
}

// rawH2 is a hand-driven HTTP/2 client connection (golang.org/x/net/http2's
// framer), for what a gRPC client never sends: streams that send headers
// and then nothing.
type rawH2 struct {
	c        net.Conn
	fr       *http2.Framer
	settings map[http2.SettingID]uint32
	enc      *hpack.Encoder
	hbuf     bytes.Buffer
	addr     string
}

func dialRaw(t *testing.T, addr string) *rawH2 {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	h := &rawH2{c: c, settings: map[http2.SettingID]uint32{}, addr: addr}
	h.fr = http2.NewFramer(c, bufio.NewReader(c))
	h.fr.ReadMetaHeaders = hpack.NewDecoder(64<<10, nil)
	h.enc = hpack.NewEncoder(&h.hbuf)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := h.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	for {
		f, err := h.fr.ReadFrame()
		if err != nil {
			t.Fatalf("read server settings: %v", err)
		}
		if s, ok := f.(*http2.SettingsFrame); ok && !s.IsAck() {
			_ = s.ForeachSetting(func(s http2.Setting) error { h.settings[s.ID] = s.Val; return nil })
			if err := h.fr.WriteSettingsAck(); err != nil {
				t.Fatal(err)
			}
			return h
		}
	}
}

// open starts stream id on method with the gRPC request headers and the
// metadata pairs kv, and sends nothing more: a half-open stream.
func (h *rawH2) open(t *testing.T, id uint32, method string, kv ...string) {
	t.Helper()
	h.hbuf.Reset()
	for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", method}, {":authority", h.addr},
		{"content-type", "application/grpc"}, {"te", "trailers"}} {
		_ = h.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	for i := 0; i+1 < len(kv); i += 2 {
		_ = h.enc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
	}
	if err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: h.hbuf.Bytes(), EndHeaders: true}); err != nil {
		t.Fatalf("open stream %d: %v", id, err)
	}
}

// waitEnds reads frames until n streams have ended, each with
// "grpc-status <code>" (its trailers) or "RST_STREAM <code>", or fails
// after timeout.
func (h *rawH2) waitEnds(t *testing.T, n int, timeout time.Duration) map[uint32]string {
	t.Helper()
	_ = h.c.SetReadDeadline(time.Now().Add(timeout))
	ends := map[uint32]string{}
	for len(ends) < n {
		f, err := h.fr.ReadFrame()
		if err != nil {
			t.Fatalf("%d of %d streams ended before: %v (%v)", len(ends), n, err, ends)
		}
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			if _, done := ends[f.StreamID]; done {
				continue
			}
			if code := f.PseudoValue("status"); code != "" && code != "200" {
				ends[f.StreamID] = "HTTP " + code
			}
			for _, hf := range f.RegularFields() {
				if hf.Name == "grpc-status" && f.StreamEnded() {
					ends[f.StreamID] = "grpc-status " + hf.Value
				}
			}
		case *http2.RSTStreamFrame:
			if _, done := ends[f.StreamID]; !done { // gRPC resets a stream it answered that the client never closed
				ends[f.StreamID] = "RST_STREAM " + f.ErrCode.String()
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				_ = h.fr.WritePing(true, f.Data)
			}
		case *http2.GoAwayFrame:
			t.Fatalf("GOAWAY %v after %d of %d streams ended", f.ErrCode, len(ends), n)
		}
	}
	return ends
}
