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

	"github.com/prism-suite/prism/harness/plugin"
	"github.com/prism-suite/prism/harness/target"
	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
	lifecyclev1 "github.com/prism-suite/prism/proto/prism/lifecycle/v1"
)

// Options configure a benchmark run.
type Options struct {
	// Memstore is the memstore plugin binary.
	Memstore string
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
	return Options{Memstore: "bin/prism-memstore", Concurrency: []int{1, 64}, Ops: 20000, MaxSeries: 10 * time.Second,
		Spawns: 10, OutDir: "out/bench", Log: os.Stdout}
}

// Report is bench.json.
type Report struct {
	StartTime time.Time `json:"start_time"`
	// SpawnToServing is the plugin launch time (exec → health SERVING), p50 and max.
	SpawnToServingP50 time.Duration `json:"spawn_to_serving_p50_ns"`
	SpawnToServingMax time.Duration `json:"spawn_to_serving_max_ns"`
	Results           []Result      `json:"results"`
}

// Run measures: plugin spawn → SERVING; the one-hop echo; memstore Get/Set
// directly against the plugin; each at every concurrency, with ratios
// against the echo at the same concurrency.
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

	p, err := plugin.Launch(ctx, o.Memstore, plugin.DefaultOptions())
	if err != nil {
		_ = p.Stop(ctx)
		return nil, fmt.Errorf("launch %s: %w", o.Memstore, err)
	}
	defer p.Stop(ctx)
	if _, err := p.Setup(ctx, &lifecyclev1.InitializeRequest{}); err != nil {
		return nil, err
	}

	for _, c := range o.Concurrency {
		logf("concurrency %d: echo", c)
		eg, es := KeyValue(ctx, "echo (one gRPC hop)", "bench:", keyvaluev1.NewKeyValueClient(echoConn), c, o.Ops, o.MaxSeries)
		logf("concurrency %d: memstore plugin", c)
		mg, ms := KeyValue(ctx, "memstore direct", "bench:", keyvaluev1.NewKeyValueClient(p.Conn), c, o.Ops, o.MaxSeries)
		mg.Compare(eg)
		ms.Compare(es)
		rep.Results = append(rep.Results, eg, es, mg, ms)
	}
	logf("\n%s", Table(rep.Results))
	if o.OutDir != "" {
		if err := rep.write(o.OutDir); err != nil {
			return rep, err
		}
		logf("wrote %s", filepath.Join(o.OutDir, "bench.json"))
	}
	return rep, nil
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
	return os.WriteFile(filepath.Join(dir, "bench.md"), []byte(md), 0o644)
}

func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}
