package bench

import (
	"context"
	"fmt"
	"sync"

	"google.golang.org/grpc/metadata"

	"github.com/prism-suite/prism/harness/oidc"
	hproxy "github.com/prism-suite/prism/harness/proxy"
	"github.com/prism-suite/prism/reference/auth"
)

// authConcurrency are the concurrencies of the auth on/off comparison.
var authConcurrency = []int{1, 64}

// authMisses is how many distinct tokens the cache-miss series verifies.
const authMisses = 2000

// authSeries measures what auth costs: memstore Get through two proxies
// started alike, one with auth off and one with auth on (one token reused by
// every call, as clients do: the verified-token cache answers), back to back
// at each concurrency, with the throughput ratio against auth off (goal
// ≥ 95%); through a third proxy whose token cache is off, so that every call
// verifies its token; and Authorizer.Verify in this process on distinct
// tokens (every one a cache miss: signature and claims), for the
// verification p99.
func authSeries(ctx context.Context, o Options, logf func(string, ...any)) ([]Result, []string, error) {
	iss, err := oidc.Start(oidc.DefaultOptions())
	if err != nil {
		return nil, nil, fmt.Errorf("start issuer: %w", err)
	}
	defer iss.Close()
	on := auth.DefaultConfig()
	on.Issuer, on.Audience = iss.URL(), iss.Audience()
	uncached := on
	uncached.CacheSize = 0
	var pxs [3]*hproxy.Proxy
	for i, ac := range []*auth.Config{nil, &on, &uncached} {
		po := proxyOptions(o)
		po.Auth = ac
		px, err := startServing(ctx, po, hproxy.Namespace{Name: "memstore", Plugin: o.Memstore})
		if err != nil {
			return nil, nil, fmt.Errorf("start proxy (auth %v): %w", ac != nil, err)
		}
		defer px.Stop(ctx)
		pxs[i] = px
	}
	tok := iss.MustMint(iss.Claims("bench", "prism:memstore:read", "prism:memstore:write"))
	var out []Result
	var goals []string
	for _, c := range authConcurrency {
		logf("concurrency %d: memstore via proxy, auth off and on", c)
		// off, on, on, off: drift of the machine's load over the four
		// series cancels out of the ratio of the sums.
		get := func(name string, px *hproxy.Proxy, ctx context.Context) Result {
			g, _ := KeyValue(ctx, name, "bench-auth:", px.Target("memstore").KeyValue(), c, o.Ops, o.MaxSeries)
			return g
		}
		off1 := get("memstore via proxy, auth off", pxs[0], ctx)
		on1 := get("memstore via proxy, auth on", pxs[1], bearerCtx(ctx, tok))
		on2 := get("memstore via proxy, auth on", pxs[1], bearerCtx(ctx, tok))
		off2 := get("memstore via proxy, auth off", pxs[0], ctx)
		missG := get("memstore via proxy, auth on, no token cache", pxs[2], bearerCtx(ctx, tok))
		offG, onG := better(off1, off2), better(on1, on2)
		onG.Compare(offG)
		missG.Compare(offG)
		out = append(out, offG, onG, missG)
		ratio := (on1.OpsPerSec + on2.OpsPerSec) / max(off1.OpsPerSec+off2.OpsPerSec, 1)
		goals = append(goals, fmt.Sprintf("P6 conc %d: memstore via proxy Get with auth on %.0f ops/s = %.1f%% of auth off %.0f ops/s (goal ≥ 95%%; "+
			"two series each, interleaved); p99 %s vs %s; with the token cache off (every call verifies its token) %.0f ops/s, p99 %s",
			c, (on1.OpsPerSec+on2.OpsPerSec)/2, 100*ratio, (off1.OpsPerSec+off2.OpsPerSec)/2, us(onG.P99), us(offG.P99), missG.OpsPerSec, us(missG.P99)))
	}

	logf("auth: verifying %d distinct tokens (cache misses)", authMisses)
	toks, err := mintMany(iss, authMisses)
	if err != nil {
		return out, goals, err
	}
	a, err := auth.New(uncached)
	if err != nil {
		return out, goals, err
	}
	defer a.Close()
	if err := a.Refresh(ctx); err != nil {
		return out, goals, err
	}
	miss := Load(ctx, "auth Verify, cache miss (RS256)", 1, authMisses, o.MaxSeries*5, func(ctx context.Context, _, i int) error {
		_, err := a.Verify(ctx, toks[(i%authMisses+authMisses)%authMisses])
		return err
	})
	out = append(out, miss)
	goals = append(goals, fmt.Sprintf("auth: token verification on a cache miss (RS256, signature and claims) p50 %s, p99 %s",
		us(miss.P50), us(miss.P99)))
	return out, goals, nil
}

// better returns the series with the higher throughput.
func better(a, b Result) Result {
	if b.OpsPerSec > a.OpsPerSec {
		return b
	}
	return a
}

// bearerCtx returns ctx carrying an authorization: Bearer token.
func bearerCtx(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

// mintMany mints n distinct good tokens (RSA signing is slow: in parallel).
func mintMany(iss *oidc.Issuer, n int) ([]string, error) {
	toks := make([]string, n)
	errs := make([]error, 8)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 8 {
				toks[i], errs[w] = iss.Mint(iss.Claims(fmt.Sprintf("bench-%d", i), "prism:memstore:read"))
				if errs[w] != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("mint tokens: %w", err)
		}
	}
	return toks, nil
}
