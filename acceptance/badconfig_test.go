package acceptance

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadBadConfigs(t *testing.T) {
	write := func(t *testing.T, body string) string {
		p := filepath.Join(t.TempDir(), "bad.yaml")
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	got, err := LoadBadConfigs(write(t, "- name: negative capacity\n  config: {max_keys: -1}\n  field: max_keys\n- name: wrong type\n  config: {\"ttl\": 5}\n  field: ttl\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Name != "negative capacity" || got[0].Field != "max_keys" || got[0].Config["max_keys"] != -1 || got[1].Field != "ttl" {
		t.Fatalf("got %+v", got)
	}
	for _, tc := range []struct{ name, body, says string }{
		{"unknown key", "- name: a\n  config: {}\n  field: x\n  feild: y\n", "feild"},
		{"no field", "- name: a\n  config: {x: 1}\n", "field is missing"},
		{"no config", "- name: a\n  field: x\n", "config is missing"},
		{"no name", "- config: {x: 1}\n  field: x\n", "name is missing"},
		{"empty file", "", "empty file"},
		{"empty list", "[]\n", "list is empty"},
		{"not a list", "name: a\n", "cannot unmarshal"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := write(t, tc.body)
			_, err := LoadBadConfigs(p)
			if err == nil || !strings.Contains(err.Error(), tc.says) || !strings.Contains(err.Error(), p) {
				t.Fatalf("error %v, want one naming %s and saying %q", err, p, tc.says)
			}
		})
	}
	if _, err := LoadBadConfigs(filepath.Join(t.TempDir(), "absent.yaml")); err == nil || !strings.Contains(err.Error(), "--bad-config") {
		t.Fatalf("a missing file: %v", err)
	}
}
