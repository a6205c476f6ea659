package proxy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLimitsFromYAML(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "plugin"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	const ns = "namespaces:\n  - name: a\n    pattern: keyvalue\n    plugin: {binary: plugin}\n"

	c, err := Parse([]byte(ns+"limits:\n  max_in_flight: 10\n  first_message_timeout: 3s\n  service_receive_bytes: {prism.keyvalue.v1.KeyValue: 1000}\n"), dir)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	l := c.Limits
	if l.MaxInFlight != 10 || l.FirstMessageTimeout != 3*time.Second || l.receiveLimit("prism.keyvalue.v1.KeyValue") != 1000 {
		t.Errorf("limits given = %+v", l)
	}
	d := DefaultLimits()
	if l.MaxReceiveBytes != d.MaxReceiveBytes || l.MaxConcurrentStreams != d.MaxConcurrentStreams || l.IdleTimeout != d.IdleTimeout ||
		l.receiveLimit(RegistryService) != d.ServiceReceiveBytes[RegistryService] {
		t.Errorf("limits left out lost their defaults: %+v", l)
	}

	_, err = Parse([]byte(ns+"limits:\n  max_in_flight: 0\n  max_receive_bytes: 1000\n  service_receive_bytes: {prism.pubsub.v1.PubSub: 2000}\n  max_header_bytes: 10\n  idle_timeout: -1s\n"), dir)
	if err == nil {
		t.Fatal("Parse accepted bad limits")
	}
	for _, want := range []string{"limits.max_in_flight", "limits.service_receive_bytes[prism.pubsub.v1.PubSub]",
		"limits.max_header_bytes", "limits.idle_timeout"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %s:\n%v", want, err)
		}
	}
	if _, err := Parse([]byte(ns+"limits:\n  bogus: 1\n"), dir); err == nil || !strings.Contains(err.Error(), `limits: line 6: unknown field "bogus"`) {
		t.Errorf("Parse of an unknown limit: %v", err)
	}
}
