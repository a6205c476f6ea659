package bench

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/prism-suite/prism/harness/backend"
	"github.com/prism-suite/prism/harness/backend/definition"
	"github.com/prism-suite/prism/harness/plugin"
	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
	lifecyclev1 "github.com/prism-suite/prism/proto/prism/lifecycle/v1"
)

// postgresPoolSize is the connection pool of both the postgres plugin and
// the pgx baseline, so the ratio compares the hops, not the pools.
const postgresPoolSize = 10

// postgresSetup is a PostgreSQL instance from backends/postgres/backend.yaml,
// the postgres plugin on it, and a pgx pool straight to the server.
type postgresSetup struct {
	inst   backend.Instance
	plugin *plugin.Process
	pool   *pgxpool.Pool
}

func (s *postgresSetup) close(ctx context.Context) {
	if s.plugin != nil {
		_ = s.plugin.Stop(ctx)
	}
	if s.pool != nil {
		s.pool.Close()
	}
	_ = s.inst.Close(ctx)
}

// startPostgres starts the instance the way prism-accept does (the backend
// file, provider o.PostgresProvider), launches the plugin (table prism_kv)
// and opens a pgx pool with the plugin's address and credentials.
func startPostgres(ctx context.Context, o Options, logf func(string, ...any)) (*postgresSetup, error) {
	if o.Postgres == "" {
		return nil, nil
	}
	if _, err := os.Stat(o.Postgres); err != nil {
		logf("postgres plugin %s not found: skipping the postgres series", o.Postgres)
		return nil, nil
	}
	def, err := definition.Load(o.PostgresFile)
	if err != nil {
		return nil, err
	}
	bo := backend.DefaultOptions()
	bo.Definition, bo.Provider, bo.Logf = def, o.PostgresProvider, func(string, ...any) {}
	inst, err := backend.Start(ctx, backend.Kind(def.Name), bo)
	if err != nil {
		if inst != nil {
			_ = inst.Close(ctx)
		}
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	info := inst.Info()
	logf("postgres: %s %s at %s", info.Provider, info.ServerVersion, info.Address)
	s := &postgresSetup{inst: inst}
	values, creds := inst.PluginConfig()
	values["pool_size"] = postgresPoolSize
	values["table"] = "prism_kv"
	user := creds["username"]
	if user == "" {
		user = "postgres"
	}
	pc, err := pgxpool.ParseConfig(fmt.Sprintf("postgres://%s/postgres?sslmode=disable&pool_max_conns=%d", info.Address, postgresPoolSize))
	if err != nil {
		s.close(ctx)
		return nil, err
	}
	pc.ConnConfig.User, pc.ConnConfig.Password = user, creds["password"]
	if s.pool, err = pgxpool.NewWithConfig(ctx, pc); err != nil {
		s.close(ctx)
		return nil, fmt.Errorf("pgx pool: %w", err)
	}
	s.plugin, err = plugin.Launch(ctx, o.Postgres, plugin.DefaultOptions())
	if err != nil {
		s.close(ctx)
		return nil, fmt.Errorf("launch %s: %w", o.Postgres, err)
	}
	cfg, err := structpb.NewStruct(values)
	if err != nil {
		s.close(ctx)
		return nil, fmt.Errorf("encode postgres config: %w", err)
	}
	// Setup creates the table the pgx baseline uses too.
	if _, err := s.plugin.Setup(ctx, &lifecyclev1.InitializeRequest{Config: cfg, Credentials: creds}); err != nil {
		s.close(ctx)
		return nil, fmt.Errorf("set up postgres plugin: %w", err)
	}
	return s, nil
}

// PostgresDirect measures the plugin's own statements (an upsert that clears
// the expiry; a read that checks it) sent with pgx straight to the server.
func PostgresDirect(ctx context.Context, name, prefix string, pool *pgxpool.Pool, conc, total int, d time.Duration) (get, set Result) {
	value := make([]byte, ValueSize)
	key := func(i int) []byte { return fmt.Appendf(nil, "%s%04d", prefix, (i%keySpace+keySpace)%keySpace) }
	const upsert = "INSERT INTO public.prism_kv (k, v, expires_at) VALUES ($1, $2, NULL) " +
		"ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v, expires_at = EXCLUDED.expires_at"
	const read = "SELECT v FROM public.prism_kv WHERE k = $1 AND (expires_at IS NULL OR expires_at > clock_timestamp())"
	set = Load(ctx, name+" Set", conc, total, d, func(ctx context.Context, _, i int) error {
		_, err := pool.Exec(ctx, upsert, key(i), value)
		return err
	})
	get = Load(ctx, name+" Get", conc, total, d, func(ctx context.Context, _, i int) error {
		var v []byte
		return pool.QueryRow(ctx, read, key(i)).Scan(&v)
	})
	return get, set
}

// postgresSeries measures pgx direct, then the plugin, at concurrency c;
// the plugin's figures carry the ratio to pgx's.
func postgresSeries(ctx context.Context, s *postgresSetup, c int, o Options) []Result {
	pg, ps := PostgresDirect(ctx, "postgres pgx direct", "bench:", s.pool, c, o.Ops, o.MaxSeries)
	dg, ds := KeyValue(ctx, "postgres plugin direct", "bench:", keyvaluev1.NewKeyValueClient(s.plugin.Conn), c, o.Ops, o.MaxSeries)
	dg.Compare(pg)
	ds.Compare(ps)
	return []Result{pg, ps, dg, ds}
}
