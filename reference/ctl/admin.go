package ctl

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	adminv1 "github.com/prism-suite/prism/proto/prism/admin/v1"
)

const adminUsage = `prismctl admin talks to the reference proxy's admin API (prism.admin.v1).

Usage:
  prismctl admin namespace create -f ns.yaml
  prismctl admin namespace update -f ns.yaml [--revision N]
  prismctl admin namespace delete NAME [--revision N]
  prismctl admin namespace get NAME
  prismctl admin namespace list
  prismctl admin namespace status
  prismctl admin plugin drain ID
  prismctl admin plugin restart ID

  ns.yaml holds one namespace in the shape of an entry of the proxy config's
  namespaces list (name, pattern, plugin or slots, registry). update without
  --revision updates the revision it reads first; a change made in between
  makes it fail with Aborted (read again and retry).

Flags (anywhere on the line):
  --admin-addr ADDR  admin API address (default $PRISM_ADMIN_ADDR or 127.0.0.1:7072)
  --token TOKEN      bearer token with the admin role
  --token-file PATH  file holding the token (without --token and --token-file: $PRISM_TOKEN, else prismctl login's token)
  -f PATH            the namespace file (create, update)
  --revision N       the revision a change is based on
  --timeout D        deadline of each call (default 30s)

Exit codes: 0 success; 1 the call failed (the gRPC code is printed); 2 bad usage.
`

// adminToken returns the bearer token for admin calls: --token, else the
// content of --token-file, else what [TokenSource] finds ($PRISM_TOKEN, then
// the refreshing token file of prismctl login). An admin call never goes
// out without a token.
func adminToken(ctx context.Context, token, tokenFile string) (string, error) {
	if token == "" && tokenFile != "" {
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			return "", fmt.Errorf("read --token-file: %w", err)
		}
		if token = strings.TrimSpace(string(b)); token == "" {
			return "", fmt.Errorf("--token-file %s is empty", tokenFile)
		}
	}
	ts, err := TokenSource(ctx, token)
	if err != nil {
		return "", err
	}
	if ts == nil {
		return "", errors.New("no token: give --token, --token-file or $PRISM_TOKEN, or run prismctl login (a token with the admin role)")
	}
	t, err := ts.Token()
	if err != nil {
		return "", err
	}
	return t.AccessToken, nil
}

// runAdmin is prismctl admin; args follow "admin".
func runAdmin(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("prismctl admin", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	addr := fs.String("admin-addr", envOr("PRISM_ADMIN_ADDR", "127.0.0.1:7072"), "")
	token := fs.String("token", "", "")
	tokenFile := fs.String("token-file", "", "")
	file := fs.String("f", "", "")
	revision := fs.Int64("revision", 0, "")
	timeout := fs.Duration("timeout", 30*time.Second, "")
	help := fs.Bool("help", false, "")
	fs.BoolVar(help, "h", false, "")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		fmt.Fprintf(stderr, "prismctl admin: %v\n\n%s", err, adminUsage)
		return ExitUsage
	}
	if *help || len(pos) < 2 {
		fmt.Fprint(stderr, adminUsage)
		if *help {
			return ExitOK
		}
		return ExitUsage
	}
	usage := func(form string) int {
		fmt.Fprintf(stderr, "prismctl: usage: prismctl admin %s\n", form)
		return ExitUsage
	}
	cmd := pos[0] + " " + pos[1]
	var spec string
	switch cmd {
	case "namespace create", "namespace update":
		if *file == "" || len(pos) != 2 {
			return usage(cmd + " -f ns.yaml")
		}
		b, err := os.ReadFile(*file)
		if err != nil {
			fmt.Fprintf(stderr, "prismctl admin: read -f: %v\n", err)
			return ExitUsage
		}
		spec = string(b)
	case "namespace delete", "namespace get", "plugin drain", "plugin restart":
		if len(pos) != 3 {
			return usage(cmd + " NAME")
		}
	case "namespace list", "namespace status":
		if len(pos) != 2 {
			return usage(cmd)
		}
	default:
		fmt.Fprintf(stderr, "prismctl admin: unknown command %q\n\n%s", strings.Join(pos, " "), adminUsage)
		return ExitUsage
	}
	conn, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintf(stderr, "prismctl admin: %v\n", err)
		return ExitFailed
	}
	defer conn.Close()
	ac := adminv1.NewAdminClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	tok, err := adminToken(ctx, *token, *tokenFile)
	if err != nil {
		fmt.Fprintf(stderr, "prismctl admin: %v\n", err)
		return ExitUsage
	}
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
	fail := func(err error) int {
		st := status.Convert(err)
		fmt.Fprintf(stderr, "prismctl admin: %s: %s\n", st.Code(), st.Message())
		return ExitFailed
	}
	switch cmd {
	case "namespace create":
		r, err := ac.CreateNamespace(ctx, &adminv1.CreateNamespaceRequest{Spec: spec})
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "created %s revision %d\n", r.GetNamespace().GetName(), r.GetNamespace().GetRevision())
	case "namespace update":
		rev := *revision
		if rev == 0 {
			name, err := specName(spec)
			if err != nil {
				fmt.Fprintf(stderr, "prismctl admin: -f: %v\n", err)
				return ExitUsage
			}
			g, err := ac.GetNamespace(ctx, &adminv1.GetNamespaceRequest{Name: name})
			if err != nil {
				return fail(err)
			}
			rev = g.GetNamespace().GetRevision()
		}
		r, err := ac.UpdateNamespace(ctx, &adminv1.UpdateNamespaceRequest{Spec: spec, Revision: rev})
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "updated %s revision %d\n", r.GetNamespace().GetName(), r.GetNamespace().GetRevision())
	case "namespace delete":
		if _, err := ac.DeleteNamespace(ctx, &adminv1.DeleteNamespaceRequest{Name: pos[2], Revision: *revision}); err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "deleted %s\n", pos[2])
	case "namespace get":
		r, err := ac.GetNamespace(ctx, &adminv1.GetNamespaceRequest{Name: pos[2]})
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "# source %s, revision %d\n%s", r.GetNamespace().GetSource(), r.GetNamespace().GetRevision(), r.GetNamespace().GetSpec())
	case "namespace list":
		r, err := ac.ListNamespaces(ctx, &adminv1.ListNamespacesRequest{})
		if err != nil {
			return fail(err)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tSOURCE\tREVISION")
		for _, ns := range r.GetNamespaces() {
			fmt.Fprintf(tw, "%s\t%s\t%d\n", ns.GetName(), ns.GetSource(), ns.GetRevision())
		}
		_ = tw.Flush()
	case "namespace status":
		r, err := ac.Status(ctx, &adminv1.StatusRequest{})
		if err != nil {
			return fail(err)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAMESPACE\tSOURCE\tREVISION\tSERVING\tPLUGINS")
		for _, ns := range r.GetNamespaces() {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%v\t%s\n", ns.GetName(), ns.GetSource(), ns.GetRevision(), ns.GetServing(), strings.Join(ns.GetPlugins(), ","))
		}
		fmt.Fprintln(tw, "\nPLUGIN\tMODE\tSTATE\tHEALTH\tPID\tRESTARTS\tNAMESPACES")
		for _, pl := range r.GetPlugins() {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\n", pl.GetId(), pl.GetMode(), pl.GetState(), pl.GetHealth(), pl.GetPid(), pl.GetRestarts(), strings.Join(pl.GetNamespaces(), ","))
		}
		_ = tw.Flush()
	case "plugin drain":
		if _, err := ac.DrainPlugin(ctx, &adminv1.DrainPluginRequest{Id: pos[2]}); err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "drained %s\n", pos[2])
	case "plugin restart":
		if _, err := ac.RestartPlugin(ctx, &adminv1.RestartPluginRequest{Id: pos[2]}); err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "restarted %s\n", pos[2])
	}
	return ExitOK
}

// specName reads the name of the namespace in spec (YAML).
func specName(spec string) (string, error) {
	var ns struct {
		Name string `yaml:"name"`
	}
	if err := yaml.Unmarshal([]byte(spec), &ns); err != nil {
		return "", err
	}
	if ns.Name == "" {
		return "", errors.New("the namespace has no name")
	}
	return ns.Name, nil
}
