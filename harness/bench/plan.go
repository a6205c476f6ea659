package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/prism-suite/prism/harness/backend"
	"github.com/prism-suite/prism/harness/plugin"
	"github.com/prism-suite/prism/harness/target"
	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
	lifecyclev1 "github.com/prism-suite/prism/proto/prism/lifecycle/v1"
)

// Options configure a benchmark run.
type Options struct {
	// Memstore is the memstore plugin binary.
	Memstore string
	// Redis is the redis plugin binary ("" or missing: no redis series).
	Redis string
	// RedisProvider provides the Redis server of the redis series (process:
	// a local redis-server; embedded, miniredis, measures miniredis).
	RedisProvider backend.Provider
	// Proxy is the prism-proxy binary ("": no via-proxy series).
	Proxy string
	// Builtin adds the series of the memstore and redis drivers linked into
	// Proxy as builtins (no plugin process behind the proxy).
	Builtin bool
	// NATS is the nats plugin binary ("" or missing: no nats series), and
	// NATSProvider provides its server (default embedded).
	NATS         string
	NATSProvider backend.Provider
	// Postgres is the postgres plugin binary ("" or missing: no postgres
	// series); PostgresFile its backend file and PostgresProvider the
	// provider (default process) of its server.
	Postgres         string
	PostgresFile     string
	PostgresProvider backend.Provider
	// PubSub runs the PubSub series (publish, batched publish, publish →
	// delivery latency) for every plugin, next to the backends' own clients.
	PubSub bool
	// Registry runs the multicast registry series through Proxy on memstore
	// slots (Enumerate of 1 000, Multicast to 100 and to 10 000).
	Registry bool
	// Auth runs the auth series through Proxy: memstore Get with auth off
	// and on, and token verification on a cache miss (auth.go).
	Auth bool
	// KeyValue runs the KeyValue series (echo, memstore, redis at every
	// Concurrency); false leaves them out (a soak-only run).
	KeyValue bool
	// Soak, when positive, runs the soak series (goal P9) for this long per
	// namespace: SoakClients clients on SoakConns connections through Proxy,
	// memstore and (when Redis is built) redis, judging errors, the RSS of
	// the proxy and plugin processes, and the proxy's goroutines (soak.go).
	Soak time.Duration
	// SoakClients and SoakConns are the soak's clients and the connections
	// they share (the proxy's max_concurrent_streams, 128, bounds the calls
	// of one connection).
	SoakClients, SoakConns int
	// SoakInterval is each soak client's time between calls (0: a closed
	// loop, which measures overload rather than leaks).
	SoakInterval time.Duration
	// Concurrency lists the client concurrencies to measure.
	Concurrency []int
	// Ops is the number of measured ops per series.
	Ops int
	// MaxSeries bounds the time of one series.
	MaxSeries time.Duration
	// Spawns is how many plugin launches the spawn→SERVING figure averages.
	Spawns int
	// OutDir receives bench.json and bench.md ("" writes none).
	OutDir string
	// Log receives progress and the table.
	Log io.Writer
}

// DefaultOptions returns a run that fits in well under a minute here.
func DefaultOptions() Options {
	return Options{Memstore: "bin/prism-memstore", Redis: "bin/prism-redis", RedisProvider: backend.Process, Proxy: "bin/prism-proxy", Builtin: true,
		NATS: "bin/prism-nats", NATSProvider: backend.Embedded,
		Postgres: "bin/prism-postgres", PostgresFile: "backends/postgres/backend.yaml", PostgresProvider: backend.Process, PubSub: true, Registry: true, Auth: true,
		KeyValue: true, SoakClients: 1000, SoakConns: 10, SoakInterval: time.Second,
		Concurrency: []int{1, 64, 1000}, Ops: 20000, MaxSeries: 2 * time.Second, Spawns: 10, OutDir: "out/bench", Log: os.Stdout}
}

// Report is bench.json.
type Report struct {
	StartTime time.Time `json:"start_time"`
	// SpawnToServing is the plugin launch time (exec → health SERVING), p50 and max.
	SpawnToServingP50 time.Duration `json:"spawn_to_serving_p50_ns"`
	SpawnToServingMax time.Duration `json:"spawn_to_serving_max_ns"`
	Results           []Result      `json:"results"`
	// Soak holds the soak series (Options.Soak).
	Soak []SoakResult `json:"soak,omitempty"`
	// Goals compares the figures with the goals of the proxy (issue 5).
	Goals []string `json:"goals,omitempty"`
}

// Run measures: plugin spawn → SERVING; the one-hop echo; memstore Get/Set
// directly against the plugin (ratios against the echo) and through
// prism-proxy (ratios against memstore direct); Redis GET/SET with go-redis
// straight to the server, through the redis plugin and through the proxy
// (ratios against go-redis); PostgreSQL with pgx straight to the server and
// through the postgres plugin (ratios against pgx; the server started from
// backends/postgres/backend.yaml); each at every concurrency.
func Run(ctx context.Context, o Options) (*Report, error) {
	rep := &Report{StartTime: time.Now()}
	logf := func(format string, a ...any) { fmt.Fprintf(o.Log, format+"\n", a...) }

	var spawns []time.Duration
	for range o.Spawns {
		p, err := plugin.Launch(ctx, o.Memstore, plugin.DefaultOptions())
		if err != nil {
			_ = p.Stop(ctx)
			return nil, fmt.Errorf("launch %s: %w", o.Memstore, err)
		}
		spawns = append(spawns, p.ReadyTime)
		_ = p.Stop(ctx)
	}
	rep.SpawnToServingP50, rep.SpawnToServingMax = percentile(spawns, 50), percentile(spawns, 100)
	logf("plugin spawn → SERVING over %d launches: p50 %v, max %v", len(spawns), rep.SpawnToServingP50, rep.SpawnToServingMax)

	echoAddr, stopEcho, err := StartEcho(make([]byte, ValueSize))
	if err != nil {
		return nil, fmt.Errorf("start echo: %w", err)
	}
	defer stopEcho()
	echoConn, err := target.Dial(echoAddr)
	if err != nil {
		return nil, err
	}
	defer echoConn.Close()
	// The same echo in a process of its own: a plugin call crosses a process
	// boundary, so this is the fair one-hop baseline for plugin series.
	echoProcAddr, stopEchoProc, err := StartEchoProcess()
	if err != nil {
		return nil, err
	}
	defer stopEchoProc()
	echoProcConn, err := target.Dial(echoProcAddr)
	if err != nil {
		return nil, err
	}
	defer echoProcConn.Close()

	p, err := plugin.Launch(ctx, o.Memstore, plugin.DefaultOptions())
	if err != nil {
		_ = p.Stop(ctx)
		return nil, fmt.Errorf("launch %s: %w", o.Memstore, err)
	}
	defer p.Stop(ctx)
	if _, err := p.Setup(ctx, &lifecyclev1.InitializeRequest{}); err != nil {
		return nil, err
	}

	rs, err := startRedis(ctx, o, logf)
	if err != nil {
		logf("redis series skipped: %v", err)
	}
	if rs != nil {
		defer rs.close(ctx)
	}
	pgs, err := startPostgres(ctx, o, logf)
	if err != nil {
		logf("postgres series skipped: %v", err)
	}
	if pgs != nil {
		defer pgs.close(ctx)
	}
	px, err := startProxy(ctx, o, rs)
	if err != nil {
		return nil, err
	}
	if px != nil {
		defer px.Stop(ctx)
	}

	for _, c := range o.Concurrency {
		if !o.KeyValue {
			break
		}
		logf("concurrency %d: echo", c)
		eg, es := KeyValue(ctx, "echo (one gRPC hop)", "bench:", keyvaluev1.NewKeyValueClient(echoConn), c, o.Ops, o.MaxSeries)
		logf("concurrency %d: echo in a separate process", c)
		xg, xs := KeyValue(ctx, "echo (one gRPC hop, separate process)", "bench:", keyvaluev1.NewKeyValueClient(echoProcConn), c, o.Ops, o.MaxSeries)
		xg.Compare(eg)
		xs.Compare(es)
		logf("concurrency %d: memstore plugin", c)
		mg, ms := KeyValue(ctx, "memstore direct", "bench:", keyvaluev1.NewKeyValueClient(p.Conn), c, o.Ops, o.MaxSeries)
		mg.Compare(xg)
		ms.Compare(xs)
		rep.Results = append(rep.Results, eg, es, xg, xs, mg, ms)
		if px != nil {
			logf("concurrency %d: memstore via proxy", c)
			pg, ps := KeyValue(ctx, "memstore via proxy", "bench:", px.Target("memstore").KeyValue(), c, o.Ops, o.MaxSeries)
			pg.Compare(mg)
			ps.Compare(ms)
			rep.Results = append(rep.Results, pg, ps)
			ratio := float64(pg.P50) / float64(max(xg.P50, 1))
			rep.Goals = append(rep.Goals, fmt.Sprintf("P1/P3 conc %d: memstore via proxy (process plugin) Get p50 %s = %.2f × in-process echo p50 %s, %.2f × separate-process echo p50 %s (goal ≤ 2×%s); added p50 over the plugin direct %s",
				c, us(pg.P50), float64(pg.P50)/float64(max(eg.P50, 1)), us(eg.P50), ratio, us(xg.P50), goalAt(c == 1, ratio <= 2), us(pg.P50-mg.P50)))
			if o.Builtin {
				logf("concurrency %d: memstore builtin via proxy", c)
				bg, bs := KeyValue(ctx, "memstore builtin via proxy", "bench:", px.Target("memstore-builtin").KeyValue(), c, o.Ops, o.MaxSeries)
				bg.Compare(xg)
				bs.Compare(xs)
				rep.Results = append(rep.Results, bg, bs)
				if c == 1 {
					ratio := float64(bg.P50) / float64(max(xg.P50, 1))
					rep.Goals = append(rep.Goals, fmt.Sprintf("P1 conc 1: memstore builtin via proxy Get p50 %s = %.2f × separate-process echo p50 %s (goal ≤ 1.3×: %s); process plugin via proxy p50 %s",
						us(bg.P50), ratio, us(xg.P50), met(ratio <= 1.3), us(pg.P50)))
				}
			}
		}
		if rs != nil {
			logf("concurrency %d: redis", c)
			rg, rset := RedisDirect(ctx, "redis go-redis direct", "bench:", rs.rdb, c, o.Ops, o.MaxSeries)
			dg, ds := KeyValue(ctx, "redis plugin direct", "bench:", keyvaluev1.NewKeyValueClient(rs.plugin.Conn), c, o.Ops, o.MaxSeries)
			dg.Compare(rg)
			ds.Compare(rset)
			rep.Results = append(rep.Results, rg, rset, dg, ds)
			if px != nil {
				xg, xs := KeyValue(ctx, "redis via proxy", "bench:", px.Target("redis").KeyValue(), c, o.Ops, o.MaxSeries)
				xg.Compare(rg)
				xs.Compare(rset)
				rep.Results = append(rep.Results, xg, xs)
				pct := 100 * xg.OpsPerSec / max(rg.OpsPerSec, 1)
				rep.Goals = append(rep.Goals, fmt.Sprintf("P2 conc %d: redis via proxy (process plugin) Get %.0f ops/s = %.0f%% of go-redis %.0f ops/s (goal ≥ 25%% at 64%s); added p50 over the plugin direct %s",
					c, xg.OpsPerSec, pct, rg.OpsPerSec, goalAt(c == 64, pct >= 25), us(xg.P50-dg.P50)))
				if o.Builtin {
					bg, bs := KeyValue(ctx, "redis builtin via proxy", "bench:", px.Target("redis-builtin").KeyValue(), c, o.Ops, o.MaxSeries)
					bg.Compare(rg)
					bs.Compare(rset)
					rep.Results = append(rep.Results, bg, bs)
					if c == 64 {
						pct := 100 * bg.OpsPerSec / max(rg.OpsPerSec, 1)
						rep.Goals = append(rep.Goals, fmt.Sprintf("P2 conc 64: redis builtin via proxy Get %.0f ops/s = %.0f%% of go-redis direct %.0f ops/s (goal ≥ 50%%: %s); process plugin via proxy %.0f%%",
							bg.OpsPerSec, pct, rg.OpsPerSec, met(pct >= 50), 100*xg.OpsPerSec/max(rg.OpsPerSec, 1)))
					}
					added := bg.P50 - rg.P50
					rep.Goals = append(rep.Goals, fmt.Sprintf("P3 conc %d: redis builtin via proxy Get p50 %s, added p50 over go-redis direct %s (goal ≤ 150µs: %s); process plugin via proxy added %s",
						c, us(bg.P50), us(added), met(added <= 150*time.Microsecond), us(xg.P50-rg.P50)))
				}
			}
		}
	}
	for _, c := range o.Concurrency {
		if pgs != nil {
			logf("concurrency %d: postgres", c)
			rep.Results = append(rep.Results, postgresSeries(ctx, pgs, c, o)...)
		}
	}
	if o.PubSub {
		prs, goals := pubSubSeries(ctx, o, p, rs, logf)
		rep.Results = append(rep.Results, prs...)
		rep.Goals = append(rep.Goals, goals...)
	}
	if o.Registry {
		rr, goals, err := registrySeries(ctx, o, baselineOf(rep.Results, "memstore via proxy Get", 1), logf)
		if err != nil {
			logf("registry series: %v", err)
		}
		rep.Results = append(rep.Results, rr...)
		rep.Goals = append(rep.Goals, goals...)
	}
	if o.Auth && o.Proxy != "" {
		ar, goals, err := authSeries(ctx, o, logf)
		if err != nil {
			logf("auth series: %v", err)
		}
		rep.Results = append(rep.Results, ar...)
		rep.Goals = append(rep.Goals, goals...)
	}
	if o.Soak > 0 && px != nil {
		nss := []string{"memstore"}
		if rs != nil {
			nss = append(nss, "redis")
		}
		for _, ns := range nss {
			logf("soak: %d clients × %v on %d connections through the proxy to %s", o.SoakClients, o.Soak, o.SoakConns, ns)
			sr := Soak(ctx, px, ns, o.SoakClients, o.SoakConns, o.SoakInterval, o.Soak)
			rep.Soak = append(rep.Soak, sr)
			rep.Goals = append(rep.Goals, sr.Goal())
		}
	} else {
		rep.Goals = append(rep.Goals, "P9 soak: not run (-soak=0; go tool task soak runs it alone, about 2.5 minutes)")
	}
	rep.Goals = append(rep.Goals, "P7 suite wall time: not a prism-bench series; time `go tool task accept BACKEND=all INSTANCE=embedded` (goal ≤ 30 s) and a clean-clone .ci/run (goal ≤ 6 min): README, Performance")
	logf("\n%s", Table(rep.Results))
	for _, g := range rep.Goals {
		logf("%s", g)
	}
	if o.OutDir != "" {
		if err := rep.write(o.OutDir); err != nil {
			return rep, err
		}
		logf("wrote %s", filepath.Join(o.OutDir, "bench.json"))
	}
	return rep, nil
}

// goalAt is ": met" or ": NOT MET" where a goal applies (at its
// concurrency), else "".
func goalAt(applies, ok bool) string {
	if !applies {
		return ""
	}
	return ": " + met(ok)
}

// met says whether a goal is met: a figure, never a gate.
func met(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT MET"
}

func (r *Report) write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("write bench: %w", err)
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("write bench: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bench.json"), b, 0o644); err != nil {
		return fmt.Errorf("write bench: %w", err)
	}
	md := fmt.Sprintf("Plugin spawn → SERVING: p50 %v, max %v\n\n%s", r.SpawnToServingP50, r.SpawnToServingMax, Table(r.Results))
	for _, g := range r.Goals {
		md += "\n- " + g
	}
	return os.WriteFile(filepath.Join(dir, "bench.md"), []byte(md), 0o644)
}

// percentile returns the p-th percentile of ds, leaving ds as it is.
func percentile(ds []time.Duration, p int) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return sortedPercentile(s, p)
}

// sortedPercentile returns the p-th percentile of an ascending slice (0 when empty).
func sortedPercentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, len(sorted)*p/100)]
}
