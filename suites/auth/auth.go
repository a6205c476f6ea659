// Package auth holds the Ginkgo specs that certify the auth capabilities:
//
//   - auth.jwt and auth.namespace are properties of the reference proxy,
//     not of a plugin: the specs call through a proxy with auth on
//     (Fixture.Auth.Proxy) that trusts a test OIDC issuer
//     (Fixture.Auth.Issuer), with tokens good and forged, and check who gets
//     in, to which namespace, for reading or writing, and that the token
//     never reaches the plugin. No plugin declares them: the runner
//     declares them for the proxy it starts (prism-accept --auth).
//   - auth.backend-credentials and auth.rotation are the plugin's: the
//     specs launch processes of the plugin with backend users the harness
//     creates (Fixture.Auth.Users), right, wrong, missing and empty, confined
//     to one namespace's data, and rotate them under load.
//   - with prism-accept --issuer dev-idp the proxy trusts prism-dev-idp
//     instead (Fixture.Auth.DevIdP): tokens a user gets through its device
//     flow are accepted and scoped, refreshed ones too, and revoked or
//     expired refresh tokens stop working; the specs that mint tokens skip.
//
// [Register] only registers specs; it never calls RunSpecs. The fixture is
// read when each spec runs: without Fixture.Auth every spec is skipped with
// that reason; then each spec is gated by its capability label. Data calls
// are KeyValue calls when the plugin declares keyvalue.basic, else PubSub
// calls.
package auth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/prism-suite/prism/harness/oidc"
	"github.com/prism-suite/prism/harness/target"
	"github.com/prism-suite/prism/proto/capability"
	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
	pubsubv1 "github.com/prism-suite/prism/proto/prism/pubsub/v1"
	"github.com/prism-suite/prism/suites/fixture"
)

// Labels of the auth capabilities.
var (
	jwtLabel      = Label(string(capability.AuthJWT))
	nsLabel       = Label(string(capability.AuthNamespace))
	credsLabel    = Label(string(capability.AuthBackendCredentials))
	rotationLabel = Label(string(capability.AuthRotation))
)

// Register adds the auth specs under "Auth", labelled "auth" (so
// --label-filter auth selects them all).
func Register(p fixture.Provider) bool {
	return Describe("Auth", Label("auth"), func() {
		var s *session
		BeforeEach(func() {
			fx := p()
			if fx.Auth == nil {
				Skip("the run does not certify auth: prism-accept --auth starts a test OIDC issuer and a proxy with auth on")
			}
			fixture.Gate(fx)
			s = &session{fx: fx, a: fx.Auth, iss: fx.Auth.Issuer, prefix: fx.Prefix()}
		})
		get := func() *session { return s }
		describeTokens(get)
		describeKeys(get)
		describeNearMisses(get)
		describeExpiry(get)
		describeNamespaces(get)
		describeCredentials(get)
		describeRotation(get)
		describeDevIdP(get)
	})
}

// needMinter skips a spec that mints its own tokens when the proxy trusts
// prism-dev-idp, which issues only its user's real tokens.
func (s *session) needMinter() {
	if s.iss == nil {
		Skip("the auth proxy trusts prism-dev-idp (prism-accept --issuer dev-idp), which issues only its user's tokens: " +
			"this spec needs tokens with chosen claims or keys, which the test issuer (--issuer test) mints")
	}
}

// Access is what a data call needs: read or write.
type Access int

// The accesses.
const (
	Read Access = iota
	Write
)

func (a Access) String() string { return [...]string{"read", "write"}[a] }

// session is one spec's view of the fixture.
type session struct {
	fx     *fixture.Fixture
	a      *fixture.Auth
	iss    *oidc.Issuer
	prefix string
}

// keyValue reports whether data calls are KeyValue calls (else PubSub).
func (s *session) keyValue() bool { return s.fx.Declared().Has(capability.KeyValueBasic) }

// grants returns scope values granting access on ns.
func grants(ns string, access ...Access) []string {
	var out []string
	for _, a := range access {
		out = append(out, fmt.Sprintf("prism:%s:%s", ns, a))
	}
	return out
}

// claims returns good claims granting read and write on the namespace
// under test.
func (s *session) claims() oidc.Claims {
	return s.iss.Claims("prism-auth-suite", grants(s.a.Namespace, Read, Write)...)
}

// mint signs claims (by default with the issuer's key).
func (s *session) mint(c oidc.Claims, opts ...oidc.MintOption) string {
	GinkgoHelper()
	t, err := s.iss.Mint(c, opts...)
	Expect(err).NotTo(HaveOccurred(), "mint a token")
	return t
}

// good returns a valid token granting read and write on the namespace
// under test.
func (s *session) good() string { return s.mint(s.claims()) }

// result is the outcome of one data call.
type result struct {
	err     error
	trailer metadata.MD
}

// call makes one data call needing access in namespace ns through the auth
// proxy, with authz as its authorization metadata values (none: no
// metadata). A read of a missing key counts as success.
func (s *session) call(ns string, access Access, authz ...string) result {
	return s.callVia(s.a.Target(ns), access, authz...)
}

// callVia is call on any target.
func (s *session) callVia(t target.Target, access Access, authz ...string) result {
	ctx, cancel := context.WithTimeout(context.Background(), s.fx.Timeouts.Call)
	defer cancel()
	for _, v := range authz {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", v)
	}
	var r result
	key := s.prefix + "auth"
	switch {
	case s.keyValue() && access == Read:
		_, r.err = t.KeyValue().Get(ctx, &keyvaluev1.GetRequest{Key: key}, grpc.Trailer(&r.trailer))
		if status.Code(r.err) == codes.NotFound {
			r.err = nil
		}
	case s.keyValue():
		_, r.err = t.KeyValue().Set(ctx, &keyvaluev1.SetRequest{Key: key, Value: []byte("v")}, grpc.Trailer(&r.trailer))
	case access == Write:
		_, r.err = t.PubSub().Publish(ctx, &pubsubv1.PublishRequest{Topic: key, Payload: []byte("v")},
			grpc.Trailer(&r.trailer))
	default:
		r = subscribeOnce(ctx, t, key)
	}
	return r
}

// subscribeOnce subscribes to topic, unsubscribes at once and reads the
// stream to its end, for its status and trailer.
func subscribeOnce(ctx context.Context, t target.Target, topic string) result {
	stream, err := t.PubSub().Subscribe(ctx)
	if err != nil {
		return result{err: err}
	}
	if err := stream.Send(&pubsubv1.SubscribeRequest{Request: &pubsubv1.SubscribeRequest_Subscription{
		Subscription: &pubsubv1.Subscription{Topic: topic}}}); err != nil && !errors.Is(err, io.EOF) {
		return result{err: err}
	}
	ev, err := stream.Recv()
	if err != nil {
		return result{err: err, trailer: stream.Trailer()}
	}
	if ev.GetSubscribed() == nil {
		return result{err: fmt.Errorf("the first event of a subscription must be Subscribed, got %v", ev)}
	}
	_ = stream.Send(&pubsubv1.SubscribeRequest{Request: &pubsubv1.SubscribeRequest_Unsubscribe{Unsubscribe: &pubsubv1.Unsubscribe{}}})
	_ = stream.CloseSend()
	for {
		if _, err := stream.Recv(); err != nil {
			if errors.Is(err, io.EOF) {
				err = nil
			}
			return result{err: err, trailer: stream.Trailer()}
		}
	}
}

// baseline is the message of a call without any token: every token problem
// must answer the same, so that a caller learns nothing about why.
func (s *session) baseline() string {
	GinkgoHelper()
	r := s.call(s.a.Namespace, Read)
	Expect(r.err).To(fixture.HaveCode(codes.Unauthenticated), "a call without a token")
	return status.Convert(r.err).Message()
}

// expectRejected asserts that a read with authz is Unauthenticated with the
// generic message.
func (s *session) expectRejected(what string, authz ...string) {
	GinkgoHelper()
	want := s.baseline()
	r := s.call(s.a.Namespace, Read, authz...)
	Expect(r.err).To(fixture.HaveCode(codes.Unauthenticated), what)
	Expect(status.Convert(r.err).Message()).To(Equal(want),
		"%s: the message must be the one of a call without a token, saying nothing about the token", what)
}

// expectAccepted asserts that a read with authz succeeds.
func (s *session) expectAccepted(what string, authz ...string) {
	GinkgoHelper()
	r := s.call(s.a.Namespace, Read, authz...)
	Expect(r.err).NotTo(HaveOccurred(), what)
}

// bearer returns "Bearer <token>".
func bearer(token string) string { return "Bearer " + token }

// attacker keys are generated once per process (RSA keys are slow to make).
var (
	keysOnce           sync.Once
	attacker, sameKID  *oidc.Key
	keysErr            error
	attackerKIDDefault = "attacker-1"
)

// attackerKeys returns a key the issuer never published, and another one
// with the kid of the issuer's signing key.
func (s *session) attackerKeys() (*oidc.Key, *oidc.Key) {
	GinkgoHelper()
	keysOnce.Do(func() {
		if attacker, keysErr = oidc.NewKey("RS256", attackerKIDDefault); keysErr != nil {
			return
		}
		sameKID, keysErr = oidc.NewKey("RS256", s.iss.Key().KID)
	})
	fixture.Harness(keysErr, "make the attacker's keys")
	return attacker, sameKID
}
