package acceptance

import "testing"

func TestRedactSecrets(t *testing.T) {
	got := redactSecrets(`{"msg":"auth","password":"s3cret-pw"} token=tok123 pw=s3cret-pw`, []string{"s3cret-pw", "tok123", "", "ab"})
	want := `{"msg":"auth","password":"[REDACTED]"} token=[REDACTED] pw=[REDACTED]`
	if got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}
