package backend

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/prism-suite/prism/harness/backend/definition"
)

// TestDefUsersAddCredentialsUser checks that add_credentials_user names the
// new credentials, that add_credentials gets {new_name}, and that suspend
// and restore of the user also reach the user made for it.
func TestDefUsersAddCredentialsUser(t *testing.T) {
	for _, tc := range []struct {
		tmpl, want string
		suspended  []string
	}{
		{"", "alice", []string{"off alice"}},
		{"{name}-next", "alice-next", []string{"off alice", "off alice-next"}},
	} {
		def := &definition.Definition{Name: "x", Users: &definition.Users{
			AddCredentials:     []string{"add", "{name}", "{new_name}", "{secret}"},
			AddCredentialsUser: tc.tmpl,
			Suspend:            []string{"off", "{name}"},
			Restore:            []string{"on", "{name}"},
		}}
		var ran []string
		run := func(_ context.Context, cmd []string) (int, string, error) {
			ran = append(ran, strings.Join(cmd, " "))
			return 0, "", nil
		}
		u, err := definedUsers(def, &Credentials{Username: "admin", Password: "pw"}, func() string { return "127.0.0.1:1" }, run)
		if err != nil {
			t.Fatal(err)
		}
		c, err := u.AddCredentials(context.Background(), "alice")
		if err != nil {
			t.Fatal(err)
		}
		if c.Username != tc.want || c.Password == "" {
			t.Errorf("%q: got %+v, want user %q with a password", tc.tmpl, c, tc.want)
		}
		if want := "add alice " + tc.want + " " + c.Password; len(ran) != 1 || ran[0] != want {
			t.Errorf("%q: ran %q, want %q", tc.tmpl, ran, want)
		}
		ran = nil
		if err := u.Suspend(context.Background(), "alice"); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(ran, tc.suspended) {
			t.Errorf("%q: suspend ran %q, want %q", tc.tmpl, ran, tc.suspended)
		}
		ran = nil
		if err := u.Restore(context.Background(), "alice"); err != nil {
			t.Fatal(err)
		}
		if want := strings.Join(tc.suspended, ","); strings.ReplaceAll(strings.Join(ran, ","), "on ", "off ") != want {
			t.Errorf("%q: restore ran %q", tc.tmpl, ran)
		}
	}
}
