package auth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/prism-suite/prism/harness/backend"
	"github.com/prism-suite/prism/harness/plugin"
	"github.com/prism-suite/prism/harness/target"
	lifecyclev1 "github.com/prism-suite/prism/proto/prism/lifecycle/v1"
	"github.com/prism-suite/prism/suites/fixture"
)

// users returns the backend's user manager, or skips the spec with the
// reason it has none.
func (s *session) users() backend.Users {
	GinkgoHelper()
	if s.a.Users == nil {
		reason := "the backend instance cannot manage users"
		if s.a.UsersErr != nil {
			reason = s.a.UsersErr.Error()
		}
		Skip(reason)
	}
	if s.fx.Launch == nil {
		Skip("the fixture cannot launch another process of the plugin")
	}
	return s.a.Users
}

// scope returns a scope (a namespace's data) unique to this spec, with a
// suffix.
func (s *session) scope(suffix string) string {
	sum := sha256.Sum256([]byte(s.prefix))
	return "auth-" + hex.EncodeToString(sum[:4]) + suffix
}

// newUser creates a backend user confined to scope.
func (s *session) newUser(name, scope string) backend.Credentials {
	GinkgoHelper()
	c, err := s.users().AddUser(s.fx.Ctx(), name, scope)
	fixture.Harness(err, "add backend user %q for scope %q", name, scope)
	return c
}

// launched is a process of the plugin under test and how it was configured.
type launched struct {
	proc *plugin.Process
	init *lifecyclev1.InitializeRequest
}

// launch starts another process of the plugin configured for scope (its
// config confined to the scope's data) with creds, and sends Initialize;
// it returns Initialize's error. The process stops when the spec ends.
func (s *session) launch(scope string, creds map[string]string) (*launched, error) {
	GinkgoHelper()
	ctx, cancel := context.WithTimeout(context.Background(), s.fx.Timeouts.Handshake+s.fx.Timeouts.Call)
	defer cancel()
	proc, init, err := s.fx.Launch(ctx)
	DeferCleanup(func() { _ = proc.Stop(context.Background()) })
	// Launching the plugin is the plugin's business: a miss is a failure.
	Expect(err).NotTo(HaveOccurred(), "launch another process of the plugin")
	values := init.GetConfig().AsMap()
	for k, v := range s.users().ScopeConfig(scope) {
		values[k] = v
	}
	cfg, err := structpb.NewStruct(values)
	fixture.Harness(err, "encode the plugin config for scope %q", scope)
	init.Config, init.Credentials = cfg, creds
	l := &launched{proc: proc, init: init}
	_, err = proc.Lifecycle.Initialize(s.fx.Ctx(), init)
	return l, err
}

// mustServe launches the plugin for scope with creds, initializes and
// starts it, and returns a direct target to it.
func (s *session) mustServe(scope string, creds map[string]string) (*launched, target.Target) {
	GinkgoHelper()
	l, err := s.launch(scope, creds)
	Expect(err).NotTo(HaveOccurred(), "Initialize with valid credentials")
	_, err = l.proc.Lifecycle.Start(s.fx.Ctx(), &lifecyclev1.StartRequest{})
	Expect(err).NotTo(HaveOccurred(), "Start")
	return l, target.Target{Via: target.Direct, Namespace: l.init.GetNamespace(), Conn: l.proc.Conn}
}

// credentialWords are what a message about a credential problem names.
var credentialWords = regexp.MustCompile(`(?i)credential|password|token|user`)

// expectInitRefused asserts that Initialize failed with one of codes, naming
// the problem, without showing any secret.
func expectInitRefused(err error, secrets []string, want ...codes.Code) {
	GinkgoHelper()
	Expect(err).To(HaveOccurred(), "Initialize must fail")
	st := status.Convert(err)
	Expect(want).To(ContainElement(st.Code()), "Initialize: got %s (%q), want one of %v", st.Code(), st.Message(), want)
	Expect(st.Message()).To(MatchRegexp(credentialWords.String()), "the message must name the credential problem")
	for _, sec := range secrets {
		if len(sec) >= 3 {
			Expect(st.Message()).NotTo(ContainSubstring(sec), "the message shows a secret")
		}
	}
}

func secretsOf(m map[string]string) []string {
	var out []string
	for k, v := range m {
		if k != "username" && k != "user" {
			out = append(out, v)
		}
	}
	return out
}

func describeCredentials(s func() *session) {
	Describe("Backend credentials", credsLabel, func() {
		It("initializes with valid credentials and serves data calls", func() {
			scope := s().scope("-valid")
			c := s().newUser("prism-"+scope, scope)
			_, t := s().mustServe(scope, s().users().PluginCredentials(c))
			Expect(s().callVia(t, Write).err).NotTo(HaveOccurred(), "a write with the scope's user")
			Expect(s().callVia(t, Read).err).NotTo(HaveOccurred(), "a read with the scope's user")
		})

		It("fails Initialize with Unauthenticated for credentials the backend rejects, without showing them", func() {
			scope := s().scope("-invalid")
			c := s().newUser("prism-"+scope, scope)
			c.Password, c.Token = "wr0ng-"+c.Password, "wr0ng-"+c.Token
			creds := s().users().PluginCredentials(c)
			_, err := s().launch(scope, creds)
			expectInitRefused(err, secretsOf(creds), codes.Unauthenticated)
		})

		It("fails Initialize with Unauthenticated when the backend requires credentials and none are given", func() {
			scope := s().scope("-missing")
			_, err := s().launch(scope, nil)
			expectInitRefused(err, nil, codes.Unauthenticated, codes.FailedPrecondition)
		})

		It("fails Initialize for empty credentials: Unauthenticated, or InvalidArgument naming the credential", func() {
			scope := s().scope("-empty")
			c := s().newUser("prism-"+scope, scope)
			creds := s().users().PluginCredentials(c)
			for k := range creds {
				if k != "username" && k != "user" {
					creds[k] = ""
				}
			}
			_, err := s().launch(scope, creds)
			expectInitRefused(err, []string{c.Password, c.Token}, codes.Unauthenticated, codes.InvalidArgument, codes.FailedPrecondition)
		})

		It("refuses data calls (Unauthenticated, PermissionDenied or Unavailable, never stale data) and reports unhealthy once its backend user is revoked mid-run, and recovers when it is restored", func() {
			u := s().users()
			scope := s().scope("-revoked")
			c := s().newUser("prism-"+scope, scope)
			l, t := s().mustServe(scope, u.PluginCredentials(c))
			Expect(s().callVia(t, Write).err).NotTo(HaveOccurred(), "a write before the revocation")
			Expect(s().callVia(t, Read).err).NotTo(HaveOccurred(), "a read before the revocation")
			health := func() lifecyclev1.HealthCheckResponse_Status {
				ctx, cancel := context.WithTimeout(context.Background(), s().fx.Timeouts.Call)
				defer cancel()
				resp, err := l.proc.Lifecycle.HealthCheck(ctx, &lifecyclev1.HealthCheckRequest{})
				if err != nil {
					return lifecyclev1.HealthCheckResponse_STATUS_UNSPECIFIED
				}
				return resp.GetStatus()
			}
			refused := []codes.Code{codes.Unauthenticated, codes.PermissionDenied, codes.Unavailable}

			By("revoking the plugin's backend user and dropping its connections")
			fixture.Harness(u.Suspend(s().fx.Ctx(), c.Username), "switch backend user %q off", c.Username)
			DeferCleanup(func() { _ = u.Restore(context.Background(), c.Username) })
			// The backend refuses the user from now on: every call must be
			// refused at once, a read included (its key holds data written
			// before, which the plugin must not serve from anywhere).
			for i := range 3 {
				for _, a := range []Access{Read, Write} {
					err := s().callVia(t, a).err
					Expect(err).To(HaveOccurred(), "%s %d after the revocation succeeded", a, i+1)
					Expect(refused).To(ContainElement(status.Code(err)), "%s %d after the revocation: got %s (%q), want one of %v",
						a, i+1, status.Code(err), status.Convert(err).Message(), refused)
				}
			}
			Eventually(health).WithTimeout(s().fx.Timeouts.Eventually).WithPolling(50*time.Millisecond).Should(
				BeElementOf(lifecyclev1.HealthCheckResponse_STATUS_DEGRADED, lifecyclev1.HealthCheckResponse_STATUS_UNHEALTHY),
				"HealthCheck while the backend refuses the plugin's user")

			By("restoring the user: the plugin recovers by itself")
			fixture.Harness(u.Restore(s().fx.Ctx(), c.Username), "switch backend user %q on", c.Username)
			Eventually(func() error { return s().callVia(t, Write).err }).WithTimeout(s().fx.Timeouts.Eventually).
				WithPolling(50*time.Millisecond).Should(Succeed(), "a write after the user is restored")
			Expect(s().callVia(t, Read).err).NotTo(HaveOccurred(), "a read after the user is restored")
			Eventually(health).WithTimeout(s().fx.Timeouts.Eventually).WithPolling(50*time.Millisecond).Should(
				Equal(lifecyclev1.HealthCheckResponse_STATUS_HEALTHY), "HealthCheck after the user is restored")
		})

		It("confines a namespace's backend user to its namespace: no writes to another's data, no administrative commands", func() {
			scope, other := s().scope("-mine"), s().scope("-other")
			c := s().newUser("prism-"+scope, scope)
			s().newUser("prism-"+other, other)
			ctx, cancel := context.WithTimeout(context.Background(), s().fx.Timeouts.Eventually)
			defer cancel()
			write, admin := s().users().TryOutside(ctx, c, other)
			Expect(write).To(HaveOccurred(), "the backend let %s's user write into %s's data", scope, other)
			Expect(admin).To(HaveOccurred(), "the backend let %s's user run an administrative command (FLUSHALL, deleting another's stream)", scope)
			if s().keyValue() {
				By("pointing a plugin with the scope's user at the other scope's data")
				l, err := s().launch(other, s().users().PluginCredentials(c))
				if err == nil {
					_, err = l.proc.Lifecycle.Start(s().fx.Ctx(), &lifecyclev1.StartRequest{})
					Expect(err).NotTo(HaveOccurred())
					err = s().callVia(target.Target{Via: target.Direct, Namespace: l.init.GetNamespace(), Conn: l.proc.Conn}, Write).err
				}
				Expect(err).To(HaveOccurred(), "a plugin with %s's user wrote into %s's data", scope, other)
				Expect(status.Code(err)).To(BeElementOf(codes.PermissionDenied, codes.Unauthenticated),
					"the backend's refusal must come through as PermissionDenied (or Unauthenticated): %v", err)
			}
		})
	})
}

// load runs calls on a target from many goroutines until stopped.
type load struct {
	stop    atomic.Bool
	ops     atomic.Int64
	fails   atomic.Int64
	first   atomic.Value
	wg      sync.WaitGroup
	started time.Time
}

// startLoad runs workers goroutines that write and read through t.
func (s *session) startLoad(t target.Target, workers int) *load {
	l := &load{started: time.Now()}
	for range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			defer GinkgoRecover()
			for !l.stop.Load() {
				for _, a := range []Access{Write, Read} {
					if a == Read && !s.keyValue() {
						continue
					}
					err := s.callVia(t, a).err
					l.ops.Add(1)
					if err != nil {
						l.fails.Add(1)
						l.first.CompareAndSwap(nil, fmt.Sprintf("%s: %v", a, err))
					}
				}
			}
		}()
	}
	return l
}

// more waits until n more calls have been made.
func (l *load) more(n int64, within time.Duration) {
	GinkgoHelper()
	target := l.ops.Load() + n
	Eventually(l.ops.Load).WithTimeout(within).WithPolling(5*time.Millisecond).Should(BeNumerically(">=", target),
		"calls made under load")
}

// end stops the load and asserts that no call failed.
func (l *load) end() {
	GinkgoHelper()
	l.stop.Store(true)
	l.wg.Wait()
	Expect(l.fails.Load()).To(BeZero(), "%d of %d calls failed in %v; first: %v", l.fails.Load(), l.ops.Load(),
		time.Since(l.started).Round(time.Millisecond), l.first.Load())
}

func describeRotation(s func() *session) {
	Describe("Credential rotation", rotationLabel, func() {
		rotate := func(l *launched, creds map[string]string) error {
			ctx, cancel := context.WithTimeout(context.Background(), s().fx.Timeouts.Eventually)
			defer cancel()
			_, err := l.proc.Lifecycle.RotateCredentials(ctx, &lifecyclev1.RotateCredentialsRequest{Credentials: creds})
			return err
		}

		It("rotates credentials under load without a failed call: both work during the roll, the old are refused after", func() {
			u := s().users()
			scope := s().scope("-rotate")
			old := s().newUser("prism-"+scope, scope)
			l, t := s().mustServe(scope, u.PluginCredentials(old))
			load := s().startLoad(t, 20)
			DeferCleanup(func() { load.stop.Store(true); load.wg.Wait() })
			load.more(100, s().fx.Timeouts.Eventually)

			By("adding new credentials: old and new both work during the roll")
			next, err := u.AddCredentials(s().fx.Ctx(), old.Username)
			fixture.Harness(err, "add credentials to backend user %q", old.Username)
			Expect(u.Authenticate(s().fx.Ctx(), old)).To(Succeed(), "the old credentials during the roll")
			Expect(u.Authenticate(s().fx.Ctx(), next)).To(Succeed(), "the new credentials during the roll")

			By("rotating the plugin to the new credentials")
			Expect(rotate(l, u.PluginCredentials(next))).To(Succeed(), "RotateCredentials")
			load.more(100, s().fx.Timeouts.Eventually)

			By("revoking the old credentials")
			fixture.Harness(u.Revoke(s().fx.Ctx(), old), "revoke the old credentials of backend user %q", old.Username)
			load.more(200, s().fx.Timeouts.Eventually)
			load.end()
			Expect(u.Authenticate(s().fx.Ctx(), old)).NotTo(Succeed(), "the old credentials after revocation")
		})

		It("serves 20 concurrent calls right after a rotation (pool_size 10 where the plugin pools connections)", func() {
			u := s().users()
			scope := s().scope("-pool")
			old := s().newUser("prism-"+scope, scope)
			l, t := s().mustServe(scope, u.PluginCredentials(old))
			next, err := u.AddCredentials(s().fx.Ctx(), old.Username)
			fixture.Harness(err, "add credentials to backend user %q", old.Username)
			Expect(rotate(l, u.PluginCredentials(next))).To(Succeed(), "RotateCredentials")
			fixture.Harness(u.Revoke(s().fx.Ctx(), old), "revoke the old credentials of backend user %q", old.Username)
			var wg sync.WaitGroup
			errs := make([]error, 20)
			for i := range errs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs[i] = s().callVia(t, Write).err
				}()
			}
			wg.Wait()
			for i, err := range errs {
				Expect(err).NotTo(HaveOccurred(), "concurrent call %d of 20 after the rotation", i)
			}
		})

		It("keeps the old credentials when RotateCredentials gets ones the backend rejects (Unauthenticated)", func() {
			u := s().users()
			scope := s().scope("-reject")
			c := s().newUser("prism-"+scope, scope)
			l, t := s().mustServe(scope, u.PluginCredentials(c))
			bad := c
			bad.Password, bad.Token = "wr0ng-"+c.Password, "wr0ng-"+c.Token
			creds := u.PluginCredentials(bad)
			err := rotate(l, creds)
			Expect(err).To(fixture.HaveCode(codes.Unauthenticated), "RotateCredentials with rejected credentials")
			for _, sec := range secretsOf(creds) {
				if len(sec) >= 3 {
					Expect(strings.Contains(status.Convert(err).Message(), sec)).To(BeFalse(), "the error shows a secret")
				}
			}
			Expect(s().callVia(t, Write).err).NotTo(HaveOccurred(), "a call after the failed rotation")
		})
	})
}
