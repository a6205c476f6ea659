package auth

import (
	"context"
	"errors"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"golang.org/x/oauth2"
	"google.golang.org/grpc/codes"

	"github.com/prism-suite/prism/harness/devidp"
	"github.com/prism-suite/prism/suites/fixture"
)

// describeDevIdP checks the proxy against prism-dev-idp, an OpenID
// Provider nobody here hand-wrote the tokens of: the user logs in with the
// device flow, approving at the provider's HTML page, and the proxy must
// accept and scope what the provider issues, refreshed tokens included.
func describeDevIdP(s func() *session) {
	Describe("prism-dev-idp", func() {
		var idp *devidp.IdP
		BeforeEach(func() {
			if idp = s().a.DevIdP; idp == nil {
				Skip("the auth proxy trusts the test issuer: prism-accept --auth --issuer dev-idp runs these specs against prism-dev-idp")
			}
		})
		// login runs the device flow as the user; its trouble is the harness's.
		login := func() *oauth2.Token {
			GinkgoHelper()
			ctx, cancel := context.WithTimeout(context.Background(), s().fx.Timeouts.Eventually)
			defer cancel()
			tok, err := idp.DeviceLogin(ctx)
			fixture.Harness(err, "log in to prism-dev-idp %s with the device flow", idp.Issuer)
			return tok
		}
		refresh := func(rt string) (*oauth2.Token, error) {
			ctx, cancel := context.WithTimeout(context.Background(), s().fx.Timeouts.Call)
			defer cancel()
			return idp.Refresh(ctx, rt)
		}
		invalidGrant := func(err error) bool {
			var re *oauth2.RetrieveError
			return errors.As(err, &re) && re.ErrorCode == "invalid_grant"
		}

		It("accepts the access token a user got through the device flow", jwtLabel, func() {
			tok := login()
			Expect(s().call(s().a.Namespace, Write, bearer(tok.AccessToken)).err).NotTo(HaveOccurred(), "a write with the device-flow token")
			Expect(s().call(s().a.Namespace, Read, bearer(tok.AccessToken)).err).NotTo(HaveOccurred(), "a read with the device-flow token")
			s().expectRejected("the same token with a character of its signature changed", bearer(tamper(tok.AccessToken)))
		})

		It("scopes a device-flow token to the user's groups: its namespace, a mapped read, PermissionDenied elsewhere", nsLabel, func() {
			t := bearer(login().AccessToken)
			Expect(s().call(s().a.Namespace, Write, t).err).NotTo(HaveOccurred(), "write on %q, granted by the group prism:%s:write", s().a.Namespace, s().a.Namespace)
			Expect(s().call(s().a.Other, Read, t).err).NotTo(HaveOccurred(), "read on %q, granted through grants.mapping", s().a.Other)
			Expect(s().call(s().a.Other, Write, t).err).To(fixture.HaveCodeNaming(codes.PermissionDenied, s().a.Other),
				"write on %q, which no group of the user grants", s().a.Other)
			none := s().a.Namespace + "-none"
			Expect(s().call(none, Read, t).err).To(fixture.HaveCodeNaming(codes.PermissionDenied, none),
				"read on %q, a namespace no group names (checked before routing)", none)
		})

		It("accepts the access token a refresh gives, and refuses the refresh token it replaced", jwtLabel, func() {
			first := login()
			Expect(first.RefreshToken).NotTo(BeEmpty(), "the device flow asked for offline_access: a refresh token")
			next, err := refresh(first.RefreshToken)
			Expect(err).NotTo(HaveOccurred(), "refresh with the refresh token")
			Expect(next.AccessToken).NotTo(Equal(first.AccessToken), "a refresh gives a new access token")
			Expect(s().call(s().a.Namespace, Write, bearer(next.AccessToken)).err).NotTo(HaveOccurred(), "a write with the refreshed token")
			_, err = refresh(first.RefreshToken)
			Expect(invalidGrant(err)).To(BeTrue(), "the replaced refresh token used again: got %v, want invalid_grant", err)
		})

		It("refuses a refresh with a revoked refresh token", jwtLabel, func() {
			tok := login()
			ctx, cancel := context.WithTimeout(context.Background(), s().fx.Timeouts.Call)
			defer cancel()
			fixture.Harness(idp.Revoke(ctx, tok.RefreshToken, "refresh_token"), "revoke the refresh token at %s", idp.Issuer)
			_, err := refresh(tok.RefreshToken)
			Expect(invalidGrant(err)).To(BeTrue(), "refresh with a revoked refresh token: got %v, want invalid_grant", err)
		})

		It("refuses a refresh with an expired refresh token", jwtLabel, func() {
			ttl := idp.Options().RefreshTokenTTL
			tok := login()
			issued := time.Now()
			// Waiting out a lifetime, not for readiness: a refresh in
			// between would replace the token and restart its lifetime.
			time.Sleep(time.Until(issued.Add(ttl + 500*time.Millisecond)))
			_, err := refresh(tok.RefreshToken)
			Expect(invalidGrant(err)).To(BeTrue(), "refresh with a refresh token older than its lifetime %v: got %v, want invalid_grant", ttl, err)
		})
	})
}

// tamper changes a character in the middle of a JWT's signature (the last
// character may only carry padding bits).
func tamper(jwt string) string {
	i := strings.LastIndexByte(jwt, '.') + (len(jwt)-strings.LastIndexByte(jwt, '.'))/2
	c := byte('A')
	if jwt[i] == 'A' {
		c = 'B'
	}
	return jwt[:i] + string(c) + jwt[i+1:]
}
