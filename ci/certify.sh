#!/usr/bin/env bash
# ci/certify.sh [RUN ...]: `task accept` runs, JOBS at a time, one matrix of all.
#
# Each RUN is the arguments of one `task accept` (e.g. 'BACKEND=redis VIA=both';
# quotes inside are honoured), so what a run does is said in one place, the
# Taskfile's accept task. Without RUNs: every certification of `task certify`,
# longest first. `task accept BACKEND=all` passes one RUN per backend.
#
# Each run writes its output to out/accept/logs/<n>.log, and the whole log of a
# run is printed in one piece when it ends (never two runs' lines interleaved),
# after a line saying its exit code and time. Every run runs, whatever the
# others do. The reports the runs wrote are merged by prism-report into one
# matrix (out/accept/report.html). The exit code is the worst of the runs' and
# of the merge's (1 > 2 > 64 > 0; a run killed by a signal counts as 2).
#
# A RUN that starts with "robustness " is a `task robustness` run instead
# (its report is in out/robustness/, not in the matrix; its exit code counts).
#
# Environment: TASK_EXE (the task binary; the Taskfile passes its own),
# CERTIFY_JOBS (runs at once, default 3: a run waits on its plugin, TTLs and
# deliveries much of its time, so on two cores three at once keep both busy),
# CERTIFY_ROBUSTNESS=1 (task test: after the default runs, short robustness
# runs on the redis and nats clusters, beside the cluster certifications).
set -uo pipefail
cd "$(dirname "$0")/.."

task=${TASK_EXE:-go tool task}
jobs=${CERTIFY_JOBS:-3}
case "$jobs" in '' | *[!0-9]* | 0) echo "ci/certify.sh: CERTIFY_JOBS=$jobs is not a positive number" >&2; exit 64 ;; esac

# task certify's runs, longest first (as measured in a clean-clone .ci/run on a 2-core machine), the clusters last.
certify=(
	# The Python plugin (backends/python-memstore: Debian's python3-grpcio and python3-protobuf)
	'BACKEND=memstore PLUGIN=backends/python-memstore/plugin.py VIA=both REPORT_DIR=out/accept/python-memstore -- --bad-config backends/python-memstore/bad-config.yaml'
	'BACKEND=redis VIA=both'
	# PostgreSQL is certified only through backends/postgres/backend.yaml (container when Docker answers, else process).
	'BACKEND=postgres VIA=both'
	'BACKEND=memstore VIA=both'
	# The same drivers linked into prism-proxy as builtins (no plugin process behind the proxy).
	'BACKEND=redis VIA=builtin'
	'BACKEND=nats VIA=both'
	'PATTERN=registry SLOTS="memstore+memstore redis+nats"'
	'BACKEND=memstore VIA=builtin'
	'BACKEND=nats VIA=builtin'
	'BACKEND=postgres SUITE=auth'
	'BACKEND=nats SUITE=auth'
	'BACKEND=redis SUITE=auth'
	# The auth suite with prism-dev-idp as the issuer (tokens from its device flow; about 10 s)
	'BACKEND=memstore SUITE=auth REPORT_DIR=out/accept/memstore-auth-dev-idp -- --issuer dev-idp'
	# The proxy's admin API (suites/admin): two proxies sharing an admin store, namespaces on its memstore builtin.
	'BACKEND=memstore SUITE=admin'
	# Redis Cluster (3+3) and NATS cluster (3 nodes) with the node-fault specs (harness/cluster; container, else
	# process), last: starting nine nodes and killing them is a burst of load, which must not fall on the runs above
	# whose specs measure serving under load (a redis builtin's 1000-client spec timed out a 1 s read once when the
	# clusters started beside it).
	'BACKEND=redis TOPOLOGY=cluster VIA=direct'
	'BACKEND=nats TOPOLOGY=cluster VIA=direct'
)
# Each of them in one process (PROCS=1): they already run JOBS at a time.
if (($#)); then runs=("$@"); else runs=("${certify[@]/#/PROCS=1 }"); fi
if [ "${CERTIFY_ROBUSTNESS:-}" = 1 ]; then
	# About 35 s each: the leader of the workload's key / stream killed, and a node partitioned away (containers
	# only; as processes a node is paused instead). Single-node runs, the broken plugin and memstore are in go test
	# (acceptance's TestRobustness*).
	faults=kill-leader,partition
	docker version >/dev/null 2>&1 || faults=kill-leader,pause
	for b in redis nats; do
		runs+=("robustness BACKEND=$b TOPOLOGY=cluster NEMESIS=$faults DURATION=20s")
	done
fi

logs=out/accept/logs
rm -rf "$logs"
mkdir -p "$logs"
lock="$logs/.print"
: >"$lock"
begin=$(date +%s)

# label RUN is how a run is named in lines: the task and its arguments.
label() { case "$1" in robustness\ *) echo "$1" ;; *) echo "accept $1" ;; esac; }

# one N ARGS runs task accept ARGS into logs/N.log, records its exit code in
# logs/N.code and prints the log whole under a lock.
one() {
	local n=$1 args=$2 t0 code=0 name=accept
	t0=$(date +%s)
	case "$args" in robustness\ *) name=robustness args=${args#robustness } ;; esac
	eval "set -- $args"
	# -x: task's own exit code for a failed command is 201; the run's code is what counts.
	"$task" -x "$name" "$@" >"$logs/$n.log" 2>&1 || code=$?
	echo "$code" >"$logs/$n.code"
	{
		flock 9
		echo "==> [$(($(date +%s) - begin))s] task $name $args: exit $code after $(($(date +%s) - t0))s"
		sed 's/^/    /' "$logs/$n.log"
	} 9>>"$lock"
}

running=0
n=0
for args in "${runs[@]}"; do
	n=$((n + 1))
	if ((running >= jobs)); then
		wait -n
		running=$((running - 1))
	fi
	{
		flock 9
		echo "==> [$(($(date +%s) - begin))s] started: task $(label "$args")"
	} 9>>"$lock"
	one "$n" "$args" &
	running=$((running + 1))
done
wait

rc=0
# worst keeps the worst code in rc: 1 (a failure) > 2 (a harness error) > 64 (a selection error) > 0; any other
# code (a run killed by a signal, an interrupted one) counts as a harness error.
worst() {
	for c in "$@"; do
		case "$c" in 0 | 1 | 2 | 64) ;; *) c=2 ;; esac
		case "$c:$rc" in 0:* | *:1) ;; 1:*) rc=1 ;; 2:*) rc=2 ;; *:2) ;; 64:*) rc=64 ;; esac
	done
}
for i in $(seq 1 "$n"); do
	code=$(cat "$logs/$i.code" 2>/dev/null || echo 2) # a run that left no code did not finish: a harness error
	worst "$code"
	[ "$code" = 0 ] || echo "==> task $(label "${runs[$((i - 1))]}") exited $code"
done
echo "==> every run ($n in $(($(date +%s) - begin))s, $jobs at a time):"
# The reports written by these runs (a run that failed before writing one is
# counted by its exit code above).
mapfile -t reports < <(find out/accept -mindepth 2 -maxdepth 2 -name report.json -newer "$lock" | sort)
code=0
if ((${#reports[@]})); then
	bin/prism-report -o out/accept "${reports[@]}" || code=$?
else
	echo "no run wrote a report"
	code=2
fi
worst "$code"
echo "ci/certify.sh: exit $rc (the worst of $n runs and the merge)"
exit $rc
