package acceptance_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/prism-suite/prism/harness/oidc"
	hproxy "github.com/prism-suite/prism/harness/proxy"
	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
	"github.com/prism-suite/prism/reference/auth"
	"github.com/prism-suite/prism/reference/client"
	"github.com/prism-suite/prism/reference/registry"
	"github.com/prism-suite/prism/reference/registry/filter"
	"github.com/prism-suite/prism/reference/registry/registrymutant"
)

// The shipped prism-proxy (built without tags) must hold no switch that
// turns a check off: the tests below set the variables that switch the
// defects on in a prism_mutants build and show that the shipped proxy still
// refuses an unsigned token and still delivers only to the identities a
// filter selects. Each runs the same check against a prism_mutants build
// too, which must fail it: so the variable reaches the proxy in this setup,
// and the check can tell a broken proxy from a sound one.

// authMutantEnv and the registry's are the variables a prism_mutants build
// reads. They are spelled out here because the shipped build does not even
// hold their names.
const authMutantEnv = "PRISM_AUTH_MUTANT"

// proxyBuilds returns the shipped prism-proxy (no tags), a prism_mutants
// one and prism-memstore.
func proxyBuilds(t *testing.T) (shipped, mutants, memstore string) {
	t.Helper()
	bin := buildCommands(t)
	dir := buildMutantCommands(t)
	return filepath.Join(bin, "prism-proxy"), filepath.Join(dir, "prism-proxy"), filepath.Join(bin, "prism-memstore")
}

// TestShippedProxyHoldsNoMutantSwitch checks that the shipped prism-proxy
// binary does not contain the names of the variables that switch a defect
// on (so it cannot read them), and that a prism_mutants build does.
func TestShippedProxyHoldsNoMutantSwitch(t *testing.T) {
	if testing.Short() {
		t.Skip("builds prism-proxy twice")
	}
	shipped, mutants, _ := proxyBuilds(t)
	for _, c := range []struct {
		bin  string
		want bool
	}{{shipped, false}, {mutants, true}} {
		b, err := os.ReadFile(c.bin)
		if err != nil {
			t.Fatalf("read prism-proxy: %v", err)
		}
		for _, name := range []string{authMutantEnv, registrymutant.Env} {
			if got := bytes.Contains(b, []byte(name)); got != c.want {
				t.Errorf("%s holds %q: got %t, want %t", c.bin, name, got, c.want)
			}
		}
	}
}

// TestShippedProxyRefusesAlgNone starts prism-proxy with auth on and
// PRISM_AUTH_MUTANT=alg-none in its environment, and sends an unsigned
// token (alg none) granting write to the namespace: the shipped proxy
// answers Unauthenticated, and a signed token with the same claims works.
func TestShippedProxyRefusesAlgNone(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts prism-proxy")
	}
	shipped, mutants, memstore := proxyBuilds(t)
	iss, err := oidc.Start(oidc.DefaultOptions())
	if err != nil {
		t.Fatalf("start issuer: %v", err)
	}
	defer iss.Close()
	for _, c := range []struct {
		name, bin string
		want      codes.Code
	}{
		{"shipped", shipped, codes.Unauthenticated},
		{"prism_mutants build", mutants, codes.OK}, // the variable reaches the proxy: the check is not vacuous
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			ac := auth.DefaultConfig()
			ac.Issuer, ac.Audience = iss.URL(), iss.Audience()
			o := hproxy.DefaultOptions()
			o.Binary, o.Auth, o.Env = c.bin, &ac, []string{authMutantEnv + "=alg-none"}
			p, err := hproxy.Start(ctx, o, hproxy.Namespace{Name: "a", Plugin: memstore})
			if p != nil {
				defer func() { _ = p.Stop(context.Background()) }()
			}
			if err != nil {
				t.Fatalf("start prism-proxy: %v", err)
			}
			if err := p.WaitServing(ctx, "a"); err != nil {
				t.Fatalf("wait for namespace a: %v", err)
			}
			kv := p.Target("a").KeyValue()
			set := func(tok string) error {
				_, err := kv.Set(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok),
					&keyvaluev1.SetRequest{Key: "k", Value: []byte("v")})
				return err
			}
			claims := iss.Claims("mallory", "prism:a:write")
			if err := set(iss.MustMint(claims)); err != nil {
				t.Fatalf("Set with a signed write token: %v", err)
			}
			err = set(iss.MustMint(claims, oidc.WithAlg("none"), oidc.Unsigned()))
			if got := status.Code(err); got != c.want {
				t.Errorf("Set with an unsigned (alg none) write token: got %v (%v), want %v", got, err, c.want)
			}
		})
	}
}

// TestShippedRegistryDeliversOnlyToSelected starts prism-proxy with a
// registry namespace on memstore slots once per registry mutant, with
// PRISM_REGISTRY_MUTANT naming it, and multicasts to filters: the shipped
// proxy delivers each multicast exactly once to each identity its filter
// selects that has a live receiver, and to nothing else.
func TestShippedRegistryDeliversOnlyToSelected(t *testing.T) {
	if testing.Short() {
		t.Skip("builds prism-proxy and starts it once per registry mutant")
	}
	shipped, mutants, memstore := proxyBuilds(t)
	for _, m := range registrymutant.All() {
		t.Run(m.Name, func(t *testing.T) {
			if err := checkDelivery(t, shipped, memstore, m.Name); err != nil {
				t.Errorf("shipped prism-proxy with %s=%s: %v", registrymutant.Env, m.Name, err)
			}
		})
	}
	// The variable reaches the proxy, and the check sees each defect of
	// selection or delivery: a prism_mutants build with one fails it.
	for _, name := range []string{registrymutant.FilterIgnoresClause, registrymutant.NeMissingWrong,
		registrymutant.MulticastTwice, registrymutant.DeliveredNoReceiver} {
		t.Run("prism_mutants build/"+name, func(t *testing.T) {
			err := checkDelivery(t, mutants, memstore, name)
			if err == nil {
				t.Fatalf("a prism_mutants prism-proxy with %s=%s passed the delivery check; want it to fail", registrymutant.Env, name)
			}
			t.Logf("a prism_mutants prism-proxy with %s=%s fails the check, as it must: %v", registrymutant.Env, name, err)
		})
	}
}

// checkDelivery starts prism-proxy bin with registry mutant name in its
// environment and returns how its deliveries differ from what the filters
// select (nil: they do not). It fails t only when the proxy or a call does
// not work at all.
func checkDelivery(t *testing.T, bin, memstore, name string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	o := hproxy.DefaultOptions()
	o.Binary, o.Env = bin, []string{registrymutant.Env + "=" + name}
	slot := hproxy.Slot{Plugin: memstore}
	p, err := hproxy.Start(ctx, o, hproxy.Namespace{Name: "devices", Patterns: []string{"registry"},
		Slots: map[string]hproxy.Slot{"registry": slot, "messaging": slot}, Registry: &registry.Config{}})
	if p != nil {
		defer func() { _ = p.Stop(context.Background()) }()
	}
	if err != nil {
		t.Fatalf("start prism-proxy: %v", err)
	}
	if err := p.WaitServing(ctx, "devices"); err != nil {
		t.Fatalf("wait for namespace devices: %v\n%s", err, p.Stderr())
	}
	c, err := client.New(p.Addr, client.WithNamespace("devices"))
	if err != nil {
		t.Fatalf("dial prism-proxy: %v", err)
	}
	defer c.Close()
	reg := c.Registry()

	// sensor-9 is selected by the first filter but has no receiver.
	identities := map[string]map[string]any{
		"sensor-1": {"type": "sensor", "floor": 1},
		"sensor-2": {"type": "sensor", "floor": 2},
		"lamp-1":   {"type": "lamp", "floor": 1},
		"bare":     {},
		"sensor-9": {"type": "sensor", "floor": 1},
	}
	for id, md := range identities {
		if _, _, err := reg.Register(ctx, client.Registration{Identity: id, Metadata: md, TTL: time.Minute}); err != nil {
			t.Fatalf("register: %v", err)
		}
	}
	inboxes := map[string]*client.Inbox{}
	for _, id := range []string{"sensor-1", "sensor-2", "lamp-1", "bare"} {
		in, err := reg.Receive(ctx, id)
		if err != nil {
			t.Fatalf("open inbox: %v", err)
		}
		defer in.Close()
		inboxes[id] = in
	}

	var problems []error
	multicasts := []struct {
		filter, payload string
		delivered       []string
		failed          int64
	}{
		{`type = "sensor" and floor = 1`, "m1", []string{"sensor-1"}, 1},
		{`floor != 2`, "m2", []string{"sensor-1", "lamp-1", "bare"}, 1},
		// Last, to every identity: what an inbox holds before it was not sent to it.
		{``, "end", []string{"sensor-1", "sensor-2", "lamp-1", "bare"}, 1},
	}
	want := map[string][]string{}
	for _, mc := range multicasts {
		f, err := filter.Parse(mc.filter) // "" is nil: every identity
		if err != nil {
			t.Fatalf("parse filter %q: %v", mc.filter, err)
		}
		resp, err := reg.Multicast(ctx, f, []byte(mc.payload), client.MulticastOptions{Timeout: 10 * time.Second})
		if err != nil {
			t.Fatalf("multicast %q: %v", mc.filter, err)
		}
		if d, fl := resp.GetDeliveredCount(), resp.GetFailedCount(); d != int64(len(mc.delivered)) || fl != mc.failed {
			problems = append(problems, fmt.Errorf("multicast to %q: delivered %d, failed %d; want delivered %d (%s), failed %d (sensor-9, no receiver)",
				mc.filter, d, fl, len(mc.delivered), strings.Join(mc.delivered, ", "), mc.failed))
		}
		for _, id := range mc.delivered {
			want[id] = append(want[id], mc.payload)
		}
	}
	for id, in := range inboxes {
		var got []string
		for {
			msg, err := in.Next()
			if err != nil {
				t.Fatalf("inbox of %s: %v (received %v)", id, err, got)
			}
			got = append(got, string(msg.GetPayload()))
			if string(msg.GetPayload()) == "end" {
				break
			}
		}
		if strings.Join(got, " ") != strings.Join(want[id], " ") {
			problems = append(problems, fmt.Errorf("inbox of %s: got %v, want %v", id, got, want[id]))
		}
	}
	return errors.Join(problems...)
}
