package auth

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc/codes"

	"github.com/prism-suite/prism/suites/fixture"
)

func describeNamespaces(s func() *session) {
	Describe("Namespaces", nsLabel, func() {
		// as returns a token with the given grants.
		as := func(scope ...string) string { return bearer(s().mint(s().iss.Claims("prism-auth-suite", scope...))) }

		It("lets a token with read and write on a namespace read and write it", func() {
			t := as(grants(s().a.Namespace, Read, Write)...)
			Expect(s().call(s().a.Namespace, Write, t).err).NotTo(HaveOccurred(), "write")
			Expect(s().call(s().a.Namespace, Read, t).err).NotTo(HaveOccurred(), "read")
		})

		It("denies a token for one namespace reading or writing another with PermissionDenied", func() {
			t := as(grants(s().a.Namespace, Read, Write)...)
			Expect(s().call(s().a.Other, Read, t).err).To(fixture.HaveCodeNaming(codes.PermissionDenied, s().a.Other),
				"read of %q with a token for %q", s().a.Other, s().a.Namespace)
			Expect(s().call(s().a.Other, Write, t).err).To(fixture.HaveCodeNaming(codes.PermissionDenied, s().a.Other),
				"write of %q with a token for %q", s().a.Other, s().a.Namespace)
		})

		It("lets a read-only grant read but not write (PermissionDenied)", func() {
			t := as(grants(s().a.Namespace, Read)...)
			Expect(s().call(s().a.Namespace, Read, t).err).NotTo(HaveOccurred(), "read with a read grant")
			Expect(s().call(s().a.Namespace, Write, t).err).To(fixture.HaveCode(codes.PermissionDenied), "write with a read grant")
		})

		It("lets a write-only grant write but not read: write does not imply read", func() {
			t := as(grants(s().a.Namespace, Write)...)
			Expect(s().call(s().a.Namespace, Write, t).err).NotTo(HaveOccurred(), "write with a write grant")
			Expect(s().call(s().a.Namespace, Read, t).err).To(fixture.HaveCode(codes.PermissionDenied), "read with a write grant")
		})

		It("denies a valid token without any grant with PermissionDenied", func() {
			t := as()
			Expect(s().call(s().a.Namespace, Read, t).err).To(fixture.HaveCode(codes.PermissionDenied))
			Expect(s().call(s().a.Namespace, Write, t).err).To(fixture.HaveCode(codes.PermissionDenied))
		})

		It("denies a grant for another namespace whose name starts like this one", func() {
			t := as(grants(s().a.Namespace+"x", Read, Write)...)
			Expect(s().call(s().a.Namespace, Read, t).err).To(fixture.HaveCode(codes.PermissionDenied))
		})

		It("never forwards the token to the plugin", func() {
			By("checking that the plugin reports authorization metadata it receives (the control)")
			ctl := s().callVia(s().a.Direct, Read, bearer(s().good()))
			Expect(ctl.err).NotTo(HaveOccurred(), "a direct read with an authorization header")
			if len(ctl.trailer.Get(authorizationSeenKey)) == 0 {
				Skip("the plugin does not report authorization metadata it receives (the Go SDK's " + authorizationSeenKey +
					" trailer), so whether the proxy forwards tokens cannot be seen")
			}
			By("calling through the proxy with a good token")
			t := as(grants(s().a.Namespace, Read, Write)...)
			for _, access := range []Access{Read, Write} {
				r := s().call(s().a.Namespace, access, t)
				Expect(r.err).NotTo(HaveOccurred(), "%s through the proxy", access)
				Expect(r.trailer.Get(authorizationSeenKey)).To(BeEmpty(),
					"the plugin received the authorization metadata of a %s through the proxy", access)
			}
		})
	})
}

// authorizationSeenKey is the response trailer a plugin built on the Go SDK
// adds to a call that carried authorization metadata
// (backends/sdk.AuthorizationSeenKey; the suites observe plugins only
// through the protocol, so it is spelled here).
const authorizationSeenKey = "x-prism-plugin-saw-authorization"
