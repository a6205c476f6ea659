#!/usr/bin/env bash
# ci/dev.sh [GROUPS]: `go tool task dev` (not run by CI). Starts prism-dev-idp on
# 127.0.0.1:9400 (user dev@local.prism, password prism-dev, groups GROUPS) and a
# prism-proxy on 127.0.0.1:7070 serving the namespace "default" (memstore, builtin)
# with auth pointing at it, from bin/ (task build), with their logs and config in
# out/dev; prints what to run next; Ctrl-C stops both.
cd "$(dirname "$0")/.."
groups=${1:-prism:default:read,prism:default:write}
set -u
dir="$PWD/out/dev"
mkdir -p "$dir"
rm -f "$dir/idp.json" "$dir/proxy.json"
pids=""
trap 'kill $pids 2>/dev/null; wait; exit 0' INT TERM
# wait_for FILE WHAT PID: poll until FILE exists, the process exits, or 30 s pass.
wait_for() {
  for _ in $(seq 300); do
    [ -s "$1" ] && return 0
    kill -0 "$3" 2>/dev/null || { echo "task dev: $2 exited; see $dir/$2.log" >&2; kill $pids 2>/dev/null; exit 1; }
    sleep 0.1
  done
  echo "task dev: $2 did not start within 30 s; see $dir/$2.log" >&2; kill $pids 2>/dev/null; exit 1
}
# The key is kept in out/dev, so tokens stay valid across restarts of task dev.
bin/prism-dev-idp --listen 127.0.0.1:9400 --key-file "$dir/idp-key.pem" --groups "$groups" \
  --addr-file "$dir/idp.json" 2>"$dir/prism-dev-idp.log" &
pids="$!"
wait_for "$dir/idp.json" prism-dev-idp "$!"
cat >"$dir/proxy.yaml" <<'YAML'
listen: 127.0.0.1:7070
metrics_listen: 127.0.0.1:7071
auth:
  issuer: http://127.0.0.1:9400
  audience: prism-proxy
  grants:
    claim: groups                       # prism-dev-idp puts the user's --groups there
    pattern: "prism:{namespace}:{access}"
namespaces:
  - name: default
    patterns: [keyvalue, pubsub]
    plugin: {builtin: memstore}
YAML
bin/prism-proxy --config "$dir/proxy.yaml" --addr-file "$dir/proxy.json" 2>"$dir/prism-proxy.log" &
pids="$pids $!"
wait_for "$dir/proxy.json" prism-proxy "$!"
echo "prism-dev-idp: http://127.0.0.1:9400 (user dev@local.prism, password prism-dev, groups $groups); log $dir/prism-dev-idp.log"
echo "prism-proxy:   127.0.0.1:7070, namespace default, auth on; config $dir/proxy.yaml, log $dir/prism-proxy.log"
echo
echo "Next, in another shell:"
echo "  bin/prismctl login                      # open the URL it prints, sign in, approve"
echo "  bin/prismctl kv set greeting hello"
echo "  bin/prismctl kv get greeting"
echo "  bin/prismctl logout"
echo
echo "Ctrl-C stops both."
wait
