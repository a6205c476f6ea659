package proxy_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	registryv1 "github.com/prism-suite/prism/proto/prism/registry/v1"
	"github.com/prism-suite/prism/reference/proxy"
	"github.com/prism-suite/prism/reference/registry"
)

func registryNamespace(name string, cfg *registry.Config) proxy.Namespace {
	return proxy.Namespace{Name: name, Pattern: proxy.Registry, Plugin: &proxy.PluginSpec{Binary: memstore}, Registry: cfg}
}

// TestRegistryPattern serves the registry from the proxy itself, with the
// proxy's routing errors, and keeps its state in the registry slot.
func TestRegistryPattern(t *testing.T) {
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(registryNamespace("devices", &registry.Config{MaxIdentities: 1}), kvNamespace("kv", ""),
		proxy.Namespace{Name: "bare", Pattern: proxy.Registry, Slots: map[string]*proxy.PluginSpec{
			"registry": {Binary: memstore}, "messaging": {Binary: bin, Args: []string{bareArg}}}})
	_, conn := start(t, cfg)
	rc := registryv1.NewRegistryClient(conn)
	reg := func(ns, id string) error {
		ctx, cancel := nsCtx(ns)
		defer cancel()
		_, err := rc.Register(ctx, &registryv1.RegisterRequest{Identity: id, Ttl: durationpb.New(time.Minute)})
		return err
	}
	wantCode(t, "Register without a namespace", reg("", "x"), codes.InvalidArgument)
	wantCode(t, "Register in an unknown namespace", reg("nope", "x"), codes.NotFound)
	wantCode(t, "Register in a keyvalue namespace", reg("kv", "x"), codes.Unimplemented)
	wantCode(t, "Register", reg("devices", "sensor-1"), codes.OK)
	wantCode(t, "Register beyond the quota", reg("devices", "sensor-2"), codes.ResourceExhausted)

	ctx, cancel := nsCtx("devices")
	defer cancel()
	resp, err := rc.Enumerate(ctx, &registryv1.EnumerateRequest{})
	if err != nil || len(resp.GetIdentities()) != 1 || resp.GetIdentities()[0].GetIdentity() != "sensor-1" {
		t.Fatalf("Enumerate: %v, %v", resp, err)
	}
	ctx, cancel = nsCtx("bare")
	defer cancel()
	_, err = rc.Multicast(ctx, &registryv1.MulticastRequest{})
	wantCode(t, "Multicast in a namespace whose messaging plugin declares no pubsub.basic", err, codes.FailedPrecondition)
}

func TestRegistryConfigErrorsNameTheField(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "plugin")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ yaml, want string }{
		{"namespaces:\n  - name: kv\n    pattern: keyvalue\n    plugin: {binary: plugin}\n    registry: {max_identities: 3}\n",
			"namespaces[0] (kv).registry: only a namespace with pattern registry"},
		{"namespaces:\n  - name: d\n    pattern: registry\n    plugin: {binary: plugin}\n    registry: {schema: {fields: {floor: {type: integer}}}}\n",
			`namespaces[0] (d).registry.schema.fields.floor.type: "integer" is not one of`},
		{"namespaces:\n  - name: d\n    pattern: registry\n    plugin: {binary: plugin}\n    registry: {presence_ttl: 1ms, max_identities: -1}\n",
			"namespaces[0] (d).registry.presence_ttl"},
		{"namespaces:\n  - name: d\n    pattern: registry\n    plugin: {binary: plugin}\n    registry: {quota: 3}\n",
			`field quota not found`},
		{"namespaces:\n  - name: d\n    pattern: registry\n    slots: {registry: {binary: plugin}}\n",
			"namespaces[0] (d).slots.messaging: is required by pattern registry"},
	} {
		_, err := proxy.Parse([]byte(c.yaml), dir)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("config\n%s: got %v, want an error containing %q", c.yaml, err, c.want)
		}
	}
	cfg, err := proxy.Parse([]byte("namespaces:\n  - name: d\n    pattern: registry\n    plugin: {binary: plugin}\n"+
		"    registry: {presence_ttl: 3s, max_identities: 10, schema: {closed: true, fields: {type: {type: string, required: true, enum: [a, b]}}}}\n"), dir)
	if err != nil {
		t.Fatal(err)
	}
	r := cfg.Namespaces[0].Registry
	if r.PresenceTTL != 3*time.Second || r.MaxIdentities != 10 || !r.Schema.Closed || r.Schema.Fields["type"].Enum[1] != "b" {
		t.Fatalf("decoded registry block: %+v", r)
	}
}
