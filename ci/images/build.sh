#!/usr/bin/env bash
# build.sh builds the offline backend images used by the harness's container
# provider on machines whose Docker engine cannot pull (see README.md):
#
#   prism-offline/redis:7  Debian's redis-server and its libraries, FROM scratch
#   prism-offline/nats:2   a static nats-server built from the Go module cache, FROM scratch
#
# It prints one tag per line on stdout (progress goes to stderr). An image whose
# label prism.inputs matches the hash of its inputs is not rebuilt.
# Environment: PRISM_REDIS_IMAGE / PRISM_NATS_IMAGE override the tags.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
redis_tag=${PRISM_REDIS_IMAGE:-prism-offline/redis:7}
nats_tag=${PRISM_NATS_IMAGE:-prism-offline/nats:2}
# Bump when the way the images are built changes.
recipe=2

log() { echo "build.sh: $*" >&2; }
# elapsed START prints the seconds since START (date +%s%N) with one decimal.
elapsed() { local ms=$((($(date +%s%N) - $1) / 1000000)); printf '%d.%d s' $((ms / 1000)) $((ms % 1000 / 100)); }

command -v docker >/dev/null || { log "docker not found"; exit 1; }
docker version --format '{{.Server.APIVersion}}' >/dev/null || { log "docker daemon does not answer"; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# current_hash TAG prints the prism.inputs label of TAG, or nothing.
current_hash() {
	docker image inspect --format '{{index .Config.Labels "prism.inputs"}}' "$1" 2>/dev/null || true
}

# build_image TAG CONTEXT: classic builder (no BuildKit: it would pull a frontend).
build_image() {
	DOCKER_BUILDKIT=0 docker build --quiet -t "$1" "$2" >/dev/null 2>"$work/build.err" || {
		cat "$work/build.err" >&2
		return 1
	}
}

# --- redis ------------------------------------------------------------------
redis_bin=$(command -v redis-server || true)
if [[ -z "$redis_bin" ]]; then
	if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
		log "installing redis-server with apt-get"
		apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server >&2
		redis_bin=$(command -v redis-server)
	else
		log "redis-server not found; install Debian's redis-server (apt-get install redis-server)"
		exit 1
	fi
fi
# /usr/bin/redis-server is a symlink to redis-check-rdb; Redis picks its mode
# from its file name, so the copy must be named redis-server.
redis_real=$(readlink -f "$redis_bin")
mapfile -t redis_libs < <(ldd "$redis_real" | awk '/=>/ { if ($3 ~ /^\//) print $3; next } $1 ~ /^\// { print $1 }')

redis_dockerfile='FROM scratch
COPY rootfs/ /
WORKDIR /data
EXPOSE 6379
LABEL prism.inputs="@HASH@"
ENTRYPOINT ["/usr/bin/redis-server", "/etc/redis/redis.conf"]'
# Options the container needs whatever the harness appends: reachable through
# the published port (protected mode would refuse the bridge's address).
redis_conf='bind 0.0.0.0
protected-mode no
dir /data'

redis_hash=$( {
	echo "recipe $recipe"
	echo "$redis_dockerfile"
	echo "$redis_conf"
	sha256sum "$redis_real"
	for l in "${redis_libs[@]}"; do sha256sum "$(readlink -f "$l")"; done
} | sha256sum | cut -c1-32)

start=$(date +%s%N)
if [[ $(current_hash "$redis_tag") == "$redis_hash" ]]; then
	log "$redis_tag is up to date"
else
	log "building $redis_tag from $redis_real ($(redis_real_version=$("$redis_bin" --version); echo "${redis_real_version%% sha=*}"))"
	ctx="$work/redis"
	mkdir -p "$ctx/rootfs/usr/bin" "$ctx/rootfs/etc/redis" "$ctx/rootfs/data" "$ctx/rootfs/tmp"
	cp -L "$redis_real" "$ctx/rootfs/usr/bin/redis-server"
	for l in "${redis_libs[@]}"; do
		mkdir -p "$ctx/rootfs$(dirname "$l")"
		cp -L "$l" "$ctx/rootfs$l"
	done
	echo "$redis_conf" >"$ctx/rootfs/etc/redis/redis.conf"
	echo "${redis_dockerfile//@HASH@/$redis_hash}" >"$ctx/Dockerfile"
	build_image "$redis_tag" "$ctx"
	log "built $redis_tag in $(elapsed "$start")"
fi

# --- nats -------------------------------------------------------------------
command -v go >/dev/null || { log "go not found"; exit 1; }
nats_module=github.com/nats-io/nats-server/v2
nats_version=$(cd "$root" && go list -m -f '{{.Version}}' "$nats_module")
nats_dockerfile='FROM scratch
COPY nats-server /nats-server
EXPOSE 4222 6222 8222
LABEL prism.inputs="@HASH@"
ENTRYPOINT ["/nats-server"]'
nats_hash=$( {
	echo "recipe $recipe"
	echo "$nats_dockerfile"
	echo "$nats_module $nats_version"
	go env GOVERSION GOARCH
} | sha256sum | cut -c1-32)

start=$(date +%s%N)
if [[ $(current_hash "$nats_tag") == "$nats_hash" ]]; then
	log "$nats_tag is up to date"
else
	log "building $nats_tag from $nats_module $nats_version"
	ctx="$work/nats"
	mkdir -p "$ctx"
	(cd "$root" && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$ctx/nats-server" "$nats_module")
	echo "${nats_dockerfile//@HASH@/$nats_hash}" >"$ctx/Dockerfile"
	build_image "$nats_tag" "$ctx"
	log "built $nats_tag in $(elapsed "$start")"
fi

echo "$redis_tag"
echo "$nats_tag"
