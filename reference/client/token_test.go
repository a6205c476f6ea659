package client_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"

	"golang.org/x/oauth2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
	"github.com/prism-suite/prism/reference/client"
)

// recorder records the authorization metadata of every Get.
type recorder struct {
	keyvaluev1.UnimplementedKeyValueServer
	mu    sync.Mutex
	authz []string
}

func (r *recorder) Get(ctx context.Context, _ *keyvaluev1.GetRequest) (*keyvaluev1.GetResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.authz = append(r.authz, md.Get("authorization")...)
	return &keyvaluev1.GetResponse{Value: []byte("v")}, nil
}

func (r *recorder) seen() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.authz...)
}

// sequence hands out tokens t1, t2, ... one per call, or fails.
type sequence struct {
	n   int
	err error
}

func (s *sequence) Token() (*oauth2.Token, error) {
	if s.err != nil {
		return nil, s.err
	}
	s.n++
	return &oauth2.Token{AccessToken: "t" + string(rune('0'+s.n)), TokenType: "bearer"}, nil
}

func TestWithTokenSourceAsksForEachCall(t *testing.T) {
	rec := &recorder{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	keyvaluev1.RegisterKeyValueServer(srv, rec)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)

	seq := &sequence{}
	c, err := client.New(ln.Addr().String(), client.WithNamespace("ns"), client.WithTokenSource(seq))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	for range 2 {
		if _, err := c.KeyValue().Get(ctx, "k"); err != nil {
			t.Fatal(err)
		}
	}
	if got := rec.seen(); len(got) != 2 || got[0] != "Bearer t1" || got[1] != "Bearer t2" {
		t.Errorf("authorization = %q, want [Bearer t1 Bearer t2]", got)
	}

	seq.err = errors.New("the token in /x expired: run prismctl login")
	_, err = c.KeyValue().Get(ctx, "k")
	if status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "run prismctl login") {
		t.Errorf("a failing token source: err = %v, want Unauthenticated carrying its error", err)
	}
	if len(rec.seen()) != 2 {
		t.Errorf("a call without a token reached the server")
	}
}
