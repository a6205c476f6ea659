package auth

import (
	"context"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc/codes"

	"github.com/prism-suite/prism/harness/plugin"
	"github.com/prism-suite/prism/proto/detail"
	lifecyclev1 "github.com/prism-suite/prism/proto/prism/lifecycle/v1"
	"github.com/prism-suite/prism/suites/fixture"
)

func describeNamespaces(s func() *session) {
	Describe("Namespaces", nsLabel, func() {
		BeforeEach(func() { s().needMinter() })
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
			// The witness is the plugin's standard health detail
			// prism.authorization_headers_seen (proto/PROTOCOL.md §5): how
			// many data calls reached it with authorization metadata.
			By("checking that the plugin counts authorization metadata it receives (the control: a direct call)")
			direct := lifecyclev1.NewLifecycleClient(s().a.Direct.Conn)
			before, ok := authorizationSeen(s(), direct)
			if !ok {
				Skip("the plugin does not report " + detail.AuthorizationHeadersSeen + " in its HealthCheck details (a standard " +
					"detail of proto/PROTOCOL.md), so whether the proxy forwards tokens cannot be seen")
			}
			ctl := s().callVia(s().a.Direct, Read, bearer(s().good()))
			Expect(ctl.err).NotTo(HaveOccurred(), "a direct read with an authorization header")
			after, _ := authorizationSeen(s(), direct)
			Expect(after).To(BeNumerically(">", before),
				"%s of the plugin after a direct call with an authorization header (before: %d): the witness does not count it", detail.AuthorizationHeadersSeen, before)

			By("calling through the proxy with a good token")
			pid, err := s().a.Proxy.PluginPID(s().fx.Ctx(), s().a.Namespace)
			Expect(err).NotTo(HaveOccurred(), "find the proxy's plugin process of %q", s().a.Namespace)
			conn, err := plugin.DialPID(pid)
			Expect(err).NotTo(HaveOccurred(), "connect to the proxy's plugin process of %q", s().a.Namespace)
			defer conn.Close()
			behind := lifecyclev1.NewLifecycleClient(conn)
			before, ok = authorizationSeen(s(), behind)
			Expect(ok).To(BeTrue(), "the proxy's plugin process reports %s", detail.AuthorizationHeadersSeen)
			t := as(grants(s().a.Namespace, Read, Write)...)
			for _, access := range []Access{Read, Write} {
				r := s().call(s().a.Namespace, access, t)
				Expect(r.err).NotTo(HaveOccurred(), "%s through the proxy", access)
			}
			// Counted when a call arrives, so both calls are in the count by now.
			after, _ = authorizationSeen(s(), behind)
			Expect(after).To(Equal(before),
				"%s of the plugin behind the proxy after a read and a write with a token: the proxy forwarded authorization metadata", detail.AuthorizationHeadersSeen)
		})
	})
}

// authorizationSeen reads the plugin's standard detail
// prism.authorization_headers_seen; ok is false when it reports none.
func authorizationSeen(s *session, lc lifecyclev1.LifecycleClient) (n int64, ok bool) {
	GinkgoHelper()
	ctx, cancel := context.WithTimeout(context.Background(), s.fx.Timeouts.Call)
	defer cancel()
	h, err := lc.HealthCheck(ctx, &lifecyclev1.HealthCheckRequest{})
	Expect(err).NotTo(HaveOccurred(), "HealthCheck")
	n, ok, err = detail.Get(h.GetDetails(), detail.AuthorizationHeadersSeen)
	Expect(err).NotTo(HaveOccurred())
	return n, ok
}
