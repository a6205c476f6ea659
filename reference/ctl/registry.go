package ctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	registryv1 "github.com/prism-suite/prism/proto/prism/registry/v1"
	"github.com/prism-suite/prism/reference/client"
	"github.com/prism-suite/prism/reference/registry/filter"
)

// registryFlags are the flags of the registry commands.
type registryFlags struct {
	ttl         time.Duration
	replace     bool
	values      bool
	pageSize    int
	count       int
	meta        []string
	atLeastOnce bool
	ack         bool
	timeout     time.Duration
}

// metaValue reads a --meta value as a literal of the filter's text form
// (1, 1.5, true, "text", ["a", "b"]); anything else is a string.
func metaValue(v string) *registryv1.Value {
	f, err := filter.Parse("x = " + v)
	if c := f.GetCondition(); err == nil && c != nil && c.GetValue() != nil {
		return c.GetValue()
	}
	return &registryv1.Value{Kind: &registryv1.Value_StringValue{StringValue: v}}
}

func formatMetadata(md map[string]*registryv1.Value) string {
	keys := make([]string, 0, len(md))
	for k := range md {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		// Format renders a condition; keep its value part.
		text := filter.Format(&registryv1.Filter{Node: &registryv1.Filter_Condition{Condition: &registryv1.Condition{
			Field: "x", Op: registryv1.Condition_OP_EQ, Value: md[k]}}})
		_, v, _ := strings.Cut(text, " = ")
		parts[i] = k + "=" + v
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// runRegistry runs `prismctl registry ...`; pos starts with "registry".
func runRegistry(ctx context.Context, c *client.Client, pos []string, o registryFlags, stdout, stderr io.Writer) int {
	fail := func(err error) int {
		fmt.Fprintf(stderr, "prismctl: %s: %v\n", client.Code(err), err)
		return ExitFailed
	}
	wrong := func(form string) int {
		fmt.Fprintf(stderr, "prismctl: usage: prismctl registry %s\n", form)
		return ExitUsage
	}
	parseFilter := func(text string) (*registryv1.Filter, bool) {
		f, err := filter.Parse(text)
		if err != nil {
			fmt.Fprintf(stderr, "prismctl: filter: %v\n", err)
			return nil, false
		}
		return f, true
	}
	r := c.Registry()
	sub := ""
	if len(pos) > 1 {
		sub = pos[1]
	}
	switch sub {
	case "register":
		if len(pos) != 3 {
			return wrong("register IDENTITY [--ttl D] [--replace] [--meta k=v]...")
		}
		md := map[string]any{}
		for _, kv := range o.meta {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				fmt.Fprintf(stderr, "prismctl: --meta %q is not k=v\n", kv)
				return ExitUsage
			}
			md[k] = metaValue(v)
		}
		ttl := o.ttl
		if ttl <= 0 {
			ttl = 30 * time.Second
		}
		_, exp, err := r.Register(ctx, client.Registration{Identity: pos[2], Metadata: md, TTL: ttl, Replace: o.replace})
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "registered %s until %s\n", pos[2], exp.Format(time.RFC3339Nano))
	case "unregister":
		if len(pos) != 3 {
			return wrong("unregister IDENTITY")
		}
		existed, err := r.Unregister(ctx, pos[2])
		if err != nil {
			return fail(err)
		}
		if existed {
			fmt.Fprintf(stdout, "unregistered %s\n", pos[2])
		} else {
			fmt.Fprintf(stdout, "%s was not registered\n", pos[2])
		}
	case "enumerate":
		if len(pos) > 3 {
			return wrong("enumerate [FILTER] [--values] [--page-size N]")
		}
		text := ""
		if len(pos) == 3 {
			text = pos[2]
		}
		f, ok := parseFilter(text)
		if !ok {
			return ExitUsage
		}
		for id, err := range r.Enumerate(ctx, f, client.EnumerateOptions{PageSize: o.pageSize, Metadata: o.values}) {
			if err != nil {
				return fail(err)
			}
			if o.values {
				fmt.Fprintf(stdout, "%s\t%s\texpires %s\n", id.GetIdentity(), formatMetadata(id.GetMetadata()),
					id.GetExpiresAt().AsTime().Format(time.RFC3339Nano))
			} else {
				fmt.Fprintln(stdout, id.GetIdentity())
			}
		}
	case "multicast":
		if len(pos) != 4 {
			return wrong("multicast FILTER PAYLOAD [--meta k=v]... [--at-least-once]")
		}
		f, ok := parseFilter(pos[2])
		if !ok {
			return ExitUsage
		}
		md := map[string]string{}
		for _, kv := range o.meta {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				fmt.Fprintf(stderr, "prismctl: --meta %q is not k=v\n", kv)
				return ExitUsage
			}
			md[k] = v
		}
		resp, err := r.Multicast(ctx, f, []byte(pos[3]), client.MulticastOptions{Metadata: md, AtLeastOnce: o.atLeastOnce, Timeout: o.timeout})
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "multicast %s: %d targets, %d delivered, %d failed\n", resp.GetMulticastId(), resp.GetTargetCount(),
			resp.GetDeliveredCount(), resp.GetFailedCount())
		for _, st := range resp.GetStatuses() {
			if st.GetStatus() != registryv1.TargetStatus_STATUS_DELIVERED {
				fmt.Fprintf(stdout, "%s\t%s\t%s\n", st.GetIdentity(), strings.TrimPrefix(st.GetStatus().String(), "STATUS_"), st.GetError())
			}
		}
		if resp.GetFailedCount() > 0 {
			return ExitMissing
		}
	case "receive":
		if len(pos) != 3 {
			return wrong("receive IDENTITY [--count N] [--ack]")
		}
		inbox, err := r.Receive(ctx, pos[2])
		if err != nil {
			return fail(err)
		}
		defer inbox.Close()
		for n := 0; o.count <= 0 || n < o.count; n++ {
			m, err := inbox.Next()
			if err != nil {
				if ctx.Err() != nil || errors.Is(err, io.EOF) {
					return ExitOK
				}
				return fail(err)
			}
			fmt.Fprintf(stdout, "%s\n", m.GetPayload())
			if o.ack {
				if err := inbox.Ack(m.GetMessageId()); err != nil {
					return fail(err)
				}
			}
		}
	default:
		fmt.Fprintf(stderr, "prismctl: unknown command %q\n\n%s", strings.Join(pos, " "), usage)
		return ExitUsage
	}
	return ExitOK
}
