// Package proxy holds the specs that only make sense through the reference
// proxy: routing errors (no, unknown or wrong-pattern namespace), namespace
// isolation, recovery from a SIGKILLed plugin, and draining on SIGTERM.
//
// [Register] only registers specs; it never calls RunSpecs. The fixture is
// read when each spec runs: its Target must go through the proxy and its
// Proxy field must be set, else the specs are skipped with that reason.
//
// The routing, isolation, health and fault specs run once per data service
// ("with KeyValue", gated by keyvalue.basic; "with PubSub", gated by
// pubsub.basic), so a PubSub-only plugin is certified through the proxy as
// well as a KeyValue one. The specs of open streams (a client that goes
// away, SIGTERM with a subscription open) run with PubSub; the queue group
// spec needs pubsub.queue.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/prism-suite/prism/harness/backend"
	hproxy "github.com/prism-suite/prism/harness/proxy"
	"github.com/prism-suite/prism/harness/target"
	"github.com/prism-suite/prism/proto/capability"
	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
	lifecyclev1 "github.com/prism-suite/prism/proto/prism/lifecycle/v1"
	"github.com/prism-suite/prism/suites/fixture"
)

// launchProxy starts another proxy like the fixture's (a harness step named
// by what: a failure is a harness error) and waits until the namespace under
// test serves; the spec's cleanup stops it, and a proxy that does not stop
// cleanly fails the spec.
func launchProxy(fx *fixture.Fixture, what string) *hproxy.Proxy {
	GinkgoHelper()
	ctx, cancel := context.WithTimeout(context.Background(), fx.Timeouts.Handshake+fx.Timeouts.Eventually)
	defer cancel()
	px, err := fx.LaunchProxy(ctx)
	if px != nil {
		fixture.DeferExpect("stop the proxy the spec started", px.Stop)
	}
	fixture.Harness(err, "%s", what)
	fixture.Harness(px.WaitServing(ctx, fx.Target.Namespace), "%s: wait for %q to serve", what, fx.Target.Namespace)
	return px
}

// Register adds the proxy specs under "Proxy".
func Register(p fixture.Provider) bool {
	return Describe("Proxy", Label("proxy"), func() {
		var fx *fixture.Fixture
		BeforeEach(func() {
			fx = p()
			fixture.Gate(fx)
			if fx.Proxy == nil || fx.Target.Via != target.Proxy {
				Skip("the target does not go through the reference proxy")
			}
		})
		for _, sh := range shapes {
			Context("with "+sh.name, Label(string(sh.cap)), func() {
				registerShape(func() *fixture.Fixture { return fx }, sh)
			})
		}
	})
}

// registerShape adds the specs that call the service of sh.
func registerShape(get func() *fixture.Fixture, sh shape) {
	var fx *fixture.Fixture
	BeforeEach(func() { fx = get() })
	on := func(ns string) target.Target {
		return target.Target{Via: target.Proxy, Namespace: ns, Conn: fx.Target.Conn}
	}

	It("answers NotFound for a namespace it does not serve", func() {
		err := sh.call(fx.Ctx(), on("prism-no-such-namespace"), fx.Prefix())
		Expect(err).To(fixture.HaveCode(codes.NotFound))
	})

	It("answers InvalidArgument naming x-prism-namespace when a call names no namespace", func() {
		err := sh.call(fx.Ctx(), on(""), fx.Prefix())
		Expect(err).To(fixture.HaveCodeNaming(codes.InvalidArgument, target.NamespaceKey))
	})

	It("answers Unimplemented for a service the namespace's pattern does not serve", func() {
		// The namespaces under test and isolated serve every pattern the
		// plugin declares the basics of; the single-service one serves one
		// of them when it declares several, so one namespace lacks a data
		// service.
		for _, ns := range []string{fx.Target.Namespace, fx.IsolatedNamespace, fx.SingleServiceNamespace} {
			if ns == "" {
				continue
			}
			pats, err := namespacePatterns(fx.Ctx(), fx.Proxy, ns)
			fixture.Harness(err, "read the patterns of %q", ns)
			if _, ok := otherShape(pats); !ok {
				continue
			}
			svc, err := wrongPatternCall(fx.Ctx(), on(ns), pats)
			Expect(err).To(fixture.HaveCode(codes.Unimplemented), "a %s call on namespace %q, which serves %v", svc, ns, pats)
			return
		}
		Skip("every namespace on the proxy serves both KeyValue and PubSub")
	})

	It("never forwards the plugin's Lifecycle service to clients", func() {
		_, err := lifecyclev1.NewLifecycleClient(fx.Target.Conn).Stop(fx.Target.Context(fx.Ctx()), &lifecyclev1.StopRequest{})
		Expect(err).To(fixture.HaveCode(codes.Unimplemented))
	})

	It("answers InvalidArgument, not Internal, for a request string that is not UTF-8", func() {
		var resp rawMessage
		err := fx.Target.Conn.Invoke(fx.Target.Context(fx.Ctx()), sh.method, &rawMessage{b: notUTF8Request}, &resp, grpc.ForceCodecV2(rawCodec{}))
		Expect(err).To(fixture.HaveCode(codes.InvalidArgument), "%s with a first field (a string) of the byte 0xff", sh.method)
	})

	It("carries the client's x-request-id to the plugin, and one of its own when the client sends none", func() {
		id := "prism-rid-" + strings.ReplaceAll(fx.Prefix(), ":", "-")
		var hdr, trl metadata.MD
		ctx := metadata.AppendToOutgoingContext(fx.Ctx(), requestIDKey, id)
		err := sh.call(ctx, fx.Target, fx.Prefix(), grpc.Header(&hdr), grpc.Trailer(&trl))
		Expect(sh.answered(err)).To(BeTrue(), "%s call: %v", sh.name, err)
		Expect(hdr.Get(requestIDKey)).To(Equal([]string{id}), "x-request-id in the response header")
		Expect(trl.Get(requestIDKey)).To(Equal([]string{id}), "x-request-id the plugin echoes in the response trailer")

		By("sending no x-request-id")
		hdr, trl = nil, nil
		err = sh.call(fx.Ctx(), fx.Target, fx.Prefix(), grpc.Header(&hdr), grpc.Trailer(&trl))
		Expect(sh.answered(err)).To(BeTrue(), "%s call: %v", sh.name, err)
		gen := hdr.Get(requestIDKey)
		Expect(gen).To(HaveLen(1), "the x-request-id the proxy generated, in the response header")
		Expect(gen[0]).NotTo(BeEmpty(), "the x-request-id the proxy generated")
		Expect(trl.Get(requestIDKey)).To(Equal(gen), "the plugin's trailer echoes the x-request-id the proxy generated")
	})

	It("reports the namespace NOT_SERVING while its plugin reports its backend unhealthy, and SERVING again after", Label("fault:outage"), func() {
		if _, ok := fx.Backend.(backend.Outager); !ok {
			Skip("the plugin's backend cannot be taken down and brought back")
		}
		pv := fx.Private()
		ns := pv.Target.Namespace
		hc := healthpb.NewHealthClient(pv.Proxy.Conn)
		serving := func() (healthpb.HealthCheckResponse_ServingStatus, error) {
			r, err := hc.Check(fx.Ctx(), &healthpb.HealthCheckRequest{Service: ns})
			return r.GetStatus(), err
		}
		Expect(serving()).To(Equal(healthpb.HealthCheckResponse_SERVING), "health of %q before the outage", ns)

		pv.Down()
		Eventually(func() error { return sh.call(fx.Ctx(), pv.Target, fx.Prefix()) }).
			WithTimeout(fx.Timeouts.Eventually).WithPolling(50*time.Millisecond).
			Should(fixture.HaveCode(codes.Unavailable), "a %s call while the backend is down", sh.name)
		Eventually(serving).WithTimeout(fx.Timeouts.Eventually).WithPolling(50*time.Millisecond).
			Should(Equal(healthpb.HealthCheckResponse_NOT_SERVING), "grpc.health.v1 Check of %q while its plugin's backend is down", ns)

		pv.Up()
		Eventually(func() bool { return sh.answered(sh.call(fx.Ctx(), pv.Target, fx.Prefix())) }).
			WithTimeout(fx.Timeouts.Eventually).WithPolling(50*time.Millisecond).
			Should(BeTrue(), "a %s call after the backend came back", sh.name)
		Eventually(serving).WithTimeout(fx.Timeouts.Eventually).WithPolling(50*time.Millisecond).
			Should(Equal(healthpb.HealthCheckResponse_SERVING), "grpc.health.v1 Check of %q after the backend came back", ns)
	})

	switch sh.cap {
	case capability.KeyValueBasic:
		registerKeyValue(func() *fixture.Fixture { return fx })
	case capability.PubSubBasic:
		registerPubSub(func() *fixture.Fixture { return fx })
	}
}

// requestIDKey is the request id's metadata key (see reference/proxy).
const requestIDKey = "x-request-id"

// registerKeyValue adds the specs that need KeyValue: isolation by key,
// recovery of a SIGKILLed plugin, and SIGTERM with a unary call in flight.
func registerKeyValue(get func() *fixture.Fixture) {
	var fx *fixture.Fixture
	BeforeEach(func() { fx = get() })
	kv := func(ns string) keyvaluev1.KeyValueClient {
		return target.Target{Via: target.Proxy, Namespace: ns, Conn: fx.Target.Conn}.KeyValue()
	}

	It("keeps namespaces apart: the same key in two namespaces holds two values", func() {
		if fx.IsolatedNamespace == "" {
			Skip("the fixture has no second namespace on the proxy")
		}
		key := fx.Prefix() + "isolated"
		a, b := fx.Target.KeyValue(), kv(fx.IsolatedNamespace)
		DeferCleanup(func() {
			_, _ = a.Delete(fx.Ctx(), &keyvaluev1.DeleteRequest{Key: key})
			_, _ = b.Delete(fx.Ctx(), &keyvaluev1.DeleteRequest{Key: key})
		})
		_, err := a.Set(fx.Ctx(), &keyvaluev1.SetRequest{Key: key, Value: []byte("in " + fx.Target.Namespace)})
		Expect(err).NotTo(HaveOccurred(), "Set in %q", fx.Target.Namespace)
		_, err = b.Get(fx.Ctx(), &keyvaluev1.GetRequest{Key: key})
		Expect(err).To(fixture.HaveCode(codes.NotFound), "Get in %q of a key set only in %q", fx.IsolatedNamespace, fx.Target.Namespace)
		_, err = b.Set(fx.Ctx(), &keyvaluev1.SetRequest{Key: key, Value: []byte("in " + fx.IsolatedNamespace)})
		Expect(err).NotTo(HaveOccurred(), "Set in %q", fx.IsolatedNamespace)
		ga, err := a.Get(fx.Ctx(), &keyvaluev1.GetRequest{Key: key})
		Expect(err).NotTo(HaveOccurred())
		gb, err := b.Get(fx.Ctx(), &keyvaluev1.GetRequest{Key: key})
		Expect(err).NotTo(HaveOccurred())
		Expect(string(ga.GetValue())).To(Equal("in "+fx.Target.Namespace), "value in %q", fx.Target.Namespace)
		Expect(string(gb.GetValue())).To(Equal("in "+fx.IsolatedNamespace), "value in %q", fx.IsolatedNamespace)
	})

	It("fails fast with Unavailable while a SIGKILLed plugin is down, restarts it and serves again", Label("fault:plugin-kill"), func() {
		// The kill and the restart happen on a proxy of the spec's own, so
		// a plugin that does not come back cannot fail the specs that
		// follow. Without one the spec uses the fixture's proxy.
		px := fx.Proxy
		if fx.LaunchProxy != nil {
			px = launchProxy(fx, "start a second proxy for the plugin-kill spec")
		}
		ns := fx.Target.Namespace
		skipIfBuiltin(fx, px, ns, "SIGKILL")
		c := px.Target(ns).KeyValue()
		key := fx.Prefix() + "after-restart"
		DeferCleanup(func() { _, _ = c.Delete(fx.Ctx(), &keyvaluev1.DeleteRequest{Key: key}) })
		pid, err := px.KillPlugin(fx.Ctx(), ns)
		fixture.Harness(err, "SIGKILL the plugin of %q", ns)
		By("calling right after the kill")
		start := time.Now()
		_, err = c.Get(fx.Ctx(), &keyvaluev1.GetRequest{Key: key})
		Expect(err).To(fixture.HaveCode(codes.Unavailable), "Get right after SIGKILL of plugin pid %d", pid)
		Expect(time.Since(start)).To(BeNumerically("<", time.Second), "a call to a namespace whose plugin is down must fail fast")

		By("waiting for the restarted plugin to serve")
		Eventually(func() error {
			_, err := c.Set(fx.Ctx(), &keyvaluev1.SetRequest{Key: key, Value: []byte("v")})
			return err
		}).WithTimeout(fx.Timeouts.Eventually).WithPolling(20*time.Millisecond).Should(Succeed(), "Set after the restart")
		got, err := c.Get(fx.Ctx(), &keyvaluev1.GetRequest{Key: key})
		Expect(err).NotTo(HaveOccurred())
		Expect(got.GetValue()).To(Equal([]byte("v")))
		npid, err := px.PluginPID(fx.Ctx(), ns)
		Expect(err).NotTo(HaveOccurred(), "the restarted plugin in the proxy's /status")
		Expect(npid).NotTo(Equal(pid), "the plugin should run as a new process")
	})

	It("completes in-flight calls when SIGTERMed, refuses new ones and exits 0", Label("fault:proxy-sigterm"), func() {
		if fx.LaunchProxy == nil {
			Skip("the fixture cannot launch another proxy")
		}
		px := launchProxy(fx, "start a second proxy to SIGTERM")
		ctx, cancel := context.WithTimeout(context.Background(), fx.Timeouts.Handshake+fx.Timeouts.Eventually)
		defer cancel()
		ns := fx.Target.Namespace
		c := px.Target(ns).KeyValue()
		key := fx.Prefix() + "drain"
		_, err := c.Set(fx.Ctx(), &keyvaluev1.SetRequest{Key: key, Value: []byte("v")})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { _, _ = fx.Target.KeyValue().Delete(fx.Ctx(), &keyvaluev1.DeleteRequest{Key: key}) })

		skipIfBuiltin(fx, px, ns, "SIGSTOP")
		By("freezing the plugin so that a call stays in flight")
		pid, err := px.SignalPlugin(ctx, ns, syscall.SIGSTOP)
		fixture.Harness(err, "SIGSTOP the plugin of %q", ns)
		fixture.DeferHarness("resume the SIGSTOPped plugin (pid %d)", func(context.Context) error {
			if err := syscall.Kill(pid, syscall.SIGCONT); err != nil && !errors.Is(err, syscall.ESRCH) {
				return err
			}
			return nil // resumed, or gone with its proxy
		}, pid)
		type result struct {
			resp *keyvaluev1.GetResponse
			err  error
		}
		done := make(chan result, 1)
		go func() {
			resp, err := c.Get(ctx, &keyvaluev1.GetRequest{Key: key})
			done <- result{resp, err}
		}()
		Eventually(func() (int64, error) {
			select {
			case r := <-done:
				st, _ := px.Status(ctx)
				state, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
				StopTrying(fmt.Sprintf("the call ended before it was seen in flight (plugin pid %d stopped): %v\nstatus: %+v\nstat: %s", pid, r.err, st, state)).Now()
			default:
			}
			s, err := px.Status(ctx)
			return s.InFlight, err
		}).WithTimeout(fx.Timeouts.Eventually).WithPolling(5 * time.Millisecond).Should(BeNumerically(">=", 1))

		By("sending SIGTERM while the call is in flight")
		Expect(px.Terminate()).To(Succeed())
		Eventually(func() (bool, error) {
			s, err := px.Status(ctx)
			return s.Draining, err
		}).WithTimeout(fx.Timeouts.Eventually).WithPolling(5 * time.Millisecond).Should(BeTrue())
		select {
		case r := <-done:
			Fail(fmt.Sprintf("the call in flight ended before the frozen plugin was resumed: %v", r.err))
		case <-time.After(50 * time.Millisecond):
		}

		By("checking that a new connection is refused while draining")
		fresh, err := target.Dial(px.Addr)
		Expect(err).NotTo(HaveOccurred())
		defer fresh.Close()
		_, err = target.Target{Via: target.Proxy, Namespace: ns, Conn: fresh}.KeyValue().Get(fx.Ctx(), &keyvaluev1.GetRequest{Key: key})
		Expect(err).To(fixture.HaveCode(codes.Unavailable), "a call on a new connection to a draining proxy")

		By("resuming the plugin: the in-flight call completes")
		Expect(syscall.Kill(pid, syscall.SIGCONT)).To(Succeed())
		var r result
		Eventually(done).WithTimeout(fx.Timeouts.Call).Should(Receive(&r))
		Expect(r.err).NotTo(HaveOccurred(), "the call in flight at SIGTERM")
		Expect(r.resp.GetValue()).To(Equal([]byte("v")))
		Eventually(px.Exited()).WithTimeout(fx.Timeouts.Eventually).Should(BeClosed(), "the proxy exits after draining")
		Expect(px.ExitCode()).To(Equal(0), "exit code after SIGTERM; stderr:\n%s", px.Stderr())
	})
}

// registerPubSub adds the specs that need PubSub: isolation by topic,
// recovery of a SIGKILLed plugin, a client that goes away, and SIGTERM with
// a subscription open.
func registerPubSub(get func() *fixture.Fixture) {
	var fx *fixture.Fixture
	BeforeEach(func() { fx = get() })
	sh := pubSubShape

	It("fails fast with Unavailable while a SIGKILLed plugin is down, restarts it and serves again", Label("fault:plugin-kill"), func() {
		// The kill and the restart happen on a proxy of the spec's own, so
		// a plugin that does not come back cannot fail the specs that
		// follow. Without one the spec uses the fixture's proxy.
		px := fx.Proxy
		if fx.LaunchProxy != nil {
			px = launchProxy(fx, "start a second proxy for the plugin-kill spec")
		}
		ns := fx.Target.Namespace
		skipIfBuiltin(fx, px, ns, "SIGKILL")
		t := px.Target(ns)
		pid, err := px.KillPlugin(fx.Ctx(), ns)
		fixture.Harness(err, "SIGKILL the plugin of %q", ns)
		By("calling right after the kill")
		start := time.Now()
		err = sh.call(fx.Ctx(), t, fx.Prefix())
		Expect(err).To(fixture.HaveCode(codes.Unavailable), "%s call right after SIGKILL of plugin pid %d", sh.name, pid)
		Expect(time.Since(start)).To(BeNumerically("<", time.Second), "a call to a namespace whose plugin is down must fail fast")

		By("waiting for the restarted plugin to serve")
		Eventually(func() error {
			if err := sh.call(fx.Ctx(), t, fx.Prefix()); !sh.answered(err) {
				return err
			}
			return nil
		}).WithTimeout(fx.Timeouts.Eventually).WithPolling(20*time.Millisecond).Should(Succeed(), "a %s call after the restart", sh.name)
		npid, err := px.PluginPID(fx.Ctx(), ns)
		Expect(err).NotTo(HaveOccurred(), "the restarted plugin in the proxy's /status")
		Expect(npid).NotTo(Equal(pid), "the plugin should run as a new process")
	})
	registerStreams(get)
}

// skipIfBuiltin skips a spec that signals the plugin process of ns when the
// proxy serves ns with a builtin driver: it runs in the proxy's process, so
// there is no plugin process to signal (a builtin's restart after failed
// health checks is covered by reference/proxy's tests).
func skipIfBuiltin(fx *fixture.Fixture, px *hproxy.Proxy, ns, signal string) {
	GinkgoHelper()
	builtin, err := px.PluginBuiltin(fx.Ctx(), ns)
	fixture.Harness(err, "read the proxy's /status for the plugin of %q", ns)
	if builtin {
		Skip(fmt.Sprintf("the plugin of %q is a builtin driver in the proxy's process: there is no plugin process to %s", ns, signal))
	}
}
